import pytest
from django.core.management import CommandError, call_command
from django.http import HttpRequest

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
    assert client.login(request=HttpRequest(), username="bob", password=password)


def test_createorg_explains_a_bad_timezone(db):
    with pytest.raises(CommandError, match="not an IANA timezone name"):
        call_command("createorg", "acme", "--admin", "ann", "--timezone", "Nowhere/Here")
    assert not Organization.objects.exists()


def test_seed_demo_prints_logins_that_work(db, client, capsys):
    call_command("seed_demo")
    call_command("seed_demo")
    out = capsys.readouterr().out
    assert "demo-admin" in out and "outreach-demo" in out
    assert client.login(request=HttpRequest(), username="demo-admin", password="outreach-demo")
    assert Membership.objects.count() == 2
    viewer = Membership.objects.get(user__username="demo-viewer")
    assert viewer.role == Role.VIEWER
    assert client_for(viewer.user).get("/").status_code == 200


def test_embedded_worker_runs_the_beat_schedule(tenants, settings, capsys):
    from datetime import timedelta

    from django.utils import timezone

    from campaigns.models import Campaign, Status
    from tests.factories import CampaignFactory, RecipientListFactory

    settings.CELERY_TASK_ALWAYS_EAGER = True
    # A campaign scheduled in the past: the dispatcher's first tick starts it.
    campaign = CampaignFactory(
        org=tenants.org, status=Status.SCHEDULED, run_at=timezone.now() - timedelta(minutes=1)
    )
    RecipientListFactory(campaign=campaign, start_at=timezone.now() + timedelta(days=1))
    call_command("embedded_worker", "--ticks", "1")
    assert "Embedded worker ticking 1 periodic job" in capsys.readouterr().out
    assert Campaign.objects.get(pk=campaign.pk).status == Status.IN_PROGRESS
