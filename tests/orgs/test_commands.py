import pytest
from django.core.management import CommandError, call_command

from orgs.models import Membership, Organization, Role
from tests.conftest import client_for


def test_createorg_creates_the_organization_and_its_administrator(db, capsys):
    call_command("createorg", "acme", "--name", "Acme", "--admin", "ann", "--password", "pw-1")
    call_command("createorg", "acme", "--name", "Other", "--admin", "ann")
    org = Organization.objects.get()
    assert org.name == "Acme"
    membership = Membership.objects.get()
    assert (membership.org, membership.user.username, membership.role) == (org, "ann", Role.ADMIN)
    assert membership.user.check_password("pw-1"), "running again must not reset the password"


def test_createorg_prints_a_generated_password_for_a_new_user(db, client, capsys):
    call_command("createorg", "acme", "--admin", "bob")
    password = capsys.readouterr().out.split("Generated password: ")[1].strip()
    assert client.login(username="bob", password=password)


def test_createorg_explains_a_bad_timezone(db):
    with pytest.raises(CommandError, match="not an IANA timezone name"):
        call_command("createorg", "acme", "--admin", "ann", "--timezone", "Nowhere/Here")
    assert not Organization.objects.exists()


def test_seed_demo_prints_logins_that_work(db, client, capsys):
    call_command("seed_demo")
    call_command("seed_demo")
    out = capsys.readouterr().out
    assert "demo-admin" in out and "outreach-demo" in out
    assert client.login(username="demo-admin", password="outreach-demo")
    assert Membership.objects.count() == 2
    viewer = Membership.objects.get(user__username="demo-viewer")
    assert viewer.role == Role.VIEWER
    assert client_for(viewer.user).get("/").status_code == 200


def test_embedded_worker_runs_the_beat_schedule(db, settings, capsys):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    call_command("embedded_worker", "--ticks", "1")
    assert "Embedded worker ticking" in capsys.readouterr().out
