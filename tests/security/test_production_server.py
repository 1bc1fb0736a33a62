"""The attacks of the security review, against a production-like server.

gunicorn with DEBUG off, collected static files, PostgreSQL and Redis: what a hostile tenant, a
hostile provider or a password guesser meets in production, not what the test client sees.
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.core.cache import cache
from django.db import connection

from campaigns.models import Campaign, Sender
from delivery.models import Message
from orgs.models import Role
from tests.conftest import free_port
from tests.factories import (
    CampaignFactory,
    ContactFactory,
    MembershipFactory,
    MessageFactory,
    SmsSenderFactory,
    UserFactory,
)

ROOT = Path(__file__).resolve().parent.parent.parent
PASSWORD = "correct horse battery staple"
pytestmark = pytest.mark.services


class ProductionServer:
    """`gunicorn outreach_site.wsgi` with production settings on the test database."""

    def __init__(self, tmp_path: Path, static_root: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        db = connection.settings_dict
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
            "DEBUG": "false",
            "SECRET_KEY": "production-like-test-key-" + "k" * 40,
            "ALLOWED_HOSTS": "127.0.0.1",
            "PUBLIC_BASE_URL": f"https://127.0.0.1:{self.port}",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "REDIS_URL": settings.REDIS_URL,
            "DELIVERY_BACKEND": "sandbox",
            "STATIC_ROOT": str(static_root),
            "MEDIA_ROOT": str(tmp_path / "media"),
            "LOG_LEVEL": "WARNING",
        }
        self.log = (tmp_path / "gunicorn.log").open("wb")
        command = [sys.executable, "-m", "gunicorn", "outreach_site.wsgi", "-w", "1"]
        command += ["--threads", "4", "-b", f"127.0.0.1:{self.port}", "--timeout", "120"]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "gunicorn exited"
            try:
                requests.get(self.url + "/accounts/login/", timeout=5, allow_redirects=False)
                return
            except requests.RequestException:
                time.sleep(0.2)
        raise AssertionError("gunicorn did not answer")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


class Browser:
    """A client that behaves like a browser behind the TLS proxy (cookies, CSRF, Origin)."""

    def __init__(self, server: ProductionServer) -> None:
        self.server = server
        # The cookies are Secure; the proxy in front speaks TLS, so this client sends them.
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {
            "X-Forwarded-Proto": "https",
            "Origin": f"https://127.0.0.1:{self.server.port}",
            "Referer": f"https://127.0.0.1:{self.server.port}/",
            **kwargs.pop("headers", {}),
        }
        response = requests.request(
            method,
            self.server.url + path,
            headers=headers,
            cookies=self.cookies,
            allow_redirects=False,
            timeout=60,
            **kwargs,
        )
        self.cookies.update(response.cookies.get_dict())
        return response

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, data: dict | None = None, **kwargs) -> requests.Response:
        token = self.csrf_token(kwargs.pop("form_page", "/accounts/login/"))
        return self.request(
            "POST", path, data={"csrfmiddlewaretoken": token, **(data or {})}, **kwargs
        )

    def csrf_token(self, page: str) -> str:
        html = self.get(page).text
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
        assert match, f"no CSRF token on {page}"
        return match.group(1)

    def log_in(self, username: str, password: str = PASSWORD, path: str = "/accounts/login/"):
        return self.post(path, {"username": username, "password": password}, form_page=path)


@pytest.fixture(scope="module")
def static_root(tmp_path_factory) -> Path:
    """Collected once: production serves hashed static files from a manifest."""
    root = tmp_path_factory.mktemp("static")
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT,
        env={
            **env,
            "DEBUG": "false",
            "SECRET_KEY": "collect-" + "s" * 50,
            "STATIC_ROOT": str(root),
        },
        check=True,
        timeout=300,
    )
    return root


@pytest.fixture
def server(transactional_db, tmp_path, static_root, on_postgres, redis_url, settings):
    # Production's hashers must verify the passwords made here (the suite uses fast MD5).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    # Lockouts of an earlier run live on in the shared cache (Redis): start clean.
    cache.clear()
    running = ProductionServer(tmp_path, static_root)
    yield running
    running.stop()


@pytest.fixture
def world(server):
    """Two organizations with data; the attacker administers the first."""
    attacker = UserFactory(username="mallory", password=PASSWORD)
    victim = UserFactory(username="victim-admin", password=PASSWORD)
    mine = MembershipFactory(user=attacker, role=Role.ADMIN, org__name="Mallory Ltd").org
    theirs = MembershipFactory(user=victim, role=Role.ADMIN, org__name="Victim Clinics").org
    sender = SmsSenderFactory(org=theirs, phone_number="+14155550100")
    campaign = CampaignFactory(org=theirs, sender=sender, name="Flu shots")
    message = MessageFactory(recipient_list__campaign=campaign)
    contact = ContactFactory(org=theirs)
    return {"mine": mine, "theirs": theirs, "campaign": campaign, "message": message,
            "contact": contact, "sender": sender}  # fmt: skip


def test_a_hostile_tenant_meets_404s_and_changes_nothing(server, world):
    mallory = Browser(server)
    assert mallory.log_in("mallory").status_code == 302
    theirs = world["campaign"]
    for path in (
        f"/campaigns/{theirs.pk}/",
        f"/campaigns/{theirs.pk}/messages/",
        f"/campaigns/{theirs.pk}/edit/",
        f"/senders/{world['sender'].pk}/edit/",
        f"/contacts/{world['contact'].pk}/",
        f"/lists/{world['message'].recipient_list_id}/",
    ):
        assert mallory.get(path).status_code == 404, path
    for path in (f"/campaigns/{theirs.pk}/stop/", f"/campaigns/{theirs.pk}/delete/"):
        assert mallory.post(path, form_page="/campaigns/").status_code == 404, path
    # Their number cannot become Mallory's sender, and the refusal does not name them.
    page = mallory.post(
        "/senders/new/sms/",
        {"label": "Mine", "phone_number": "+14155550100", "rate_limit": 1, "rate_period": "second"},
        form_page="/senders/new/sms/",
    )
    assert page.status_code == 200 and "already registered as a sender" in page.text
    assert "Victim" not in page.text
    assert Campaign.objects.get(pk=theirs.pk).status == theirs.status
    assert Sender.objects.filter(phone_number="+14155550100").count() == 1


HOSTILE_QUERIES = [
    "?after=%C2%B2",
    "?before=%C2%B2",
    "?list=%C2%B2",
    "?q=%00",
    "?page=99999999999999999999999999999",
    "?status=" + "x" * 100_000,
]


def test_hostile_query_strings_are_never_a_server_error(server, world):
    mallory = Browser(server)
    mallory.log_in("mallory")
    mine = CampaignFactory(org=world["mine"])
    for path in (f"/campaigns/{mine.pk}/messages/", "/contacts/", "/campaigns/", "/opt-outs/"):
        for query in HOSTILE_QUERIES:
            assert mallory.get(path + query).status_code < 500, path + query
    for value in ("\u00b2", "abc", "", "9" * 30):
        assert mallory.post("/org/switch/", {"org": value}, form_page="/").status_code < 500
    assert mallory.get("/campaigns/" + "9" * 30 + "/").status_code == 404


def test_a_hostile_provider_is_refused_and_changes_nothing(server, world):
    provider = Browser(server)
    message = world["message"]
    forged = {"AccountSid": settings.TWILIO_ACCOUNT_SID, "MessageStatus": "delivered"}
    status = provider.request(
        "POST",
        f"/webhooks/twilio/status/{message.pk}/",
        data=forged,
        headers={"X-Twilio-Signature": "forged"},
    )
    assert status.status_code == 403
    inbound = provider.request(
        "POST",
        "/webhooks/twilio/inbound/",
        data={"From": "+12125550123", "To": "+14155550100", "Body": "STOP"},
        headers={"X-Twilio-Signature": "forged"},
    )
    assert inbound.status_code == 403
    for timestamp in ("\u00b2\u00b3", "soon", "9" * 30, ""):
        events = provider.request(
            "POST",
            "/webhooks/sendgrid/events/",
            data=b"[]",
            headers={
                "Content-Type": "application/json",
                "X-Twilio-Email-Event-Webhook-Signature": "MEUCIQ==",
                "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
            },
        )
        assert events.status_code == 403, timestamp
    assert Message.objects.get(pk=message.pk).status == message.status


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_a_password_guesser_is_locked_out_of_every_login_form(server, world, path):
    staff = UserFactory(username="operator", password=PASSWORD, is_staff=True, is_superuser=True)
    guesser = Browser(server)
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        guesser.log_in(staff.username, f"wrong-{attempt}", path=path)
    # The right password no longer helps from here …
    locked = guesser.log_in(staff.username, PASSWORD, path=path)
    assert locked.status_code == 429
    assert "sessionid" not in locked.cookies
    # … while a colleague behind the same address still gets in.
    assert Browser(server).log_in("mallory", path="/accounts/login/").status_code == 302
