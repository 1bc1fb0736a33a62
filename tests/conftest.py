"""Shared fixtures: two organizations with an Administrator and a Viewer each, and an outsider."""

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import pytest
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.test import Client

from orgs.models import Organization, Role
from tests.factories import MembershipFactory, OrganizationFactory, UserFactory

REQUIRE_SERVICES = os.environ.get("OUTREACH_REQUIRE_SERVICES", "").lower() == "true"


@dataclass
class Tenants:
    org: Organization
    admin: AbstractBaseUser
    viewer: AbstractBaseUser
    other_org: Organization
    other_admin: AbstractBaseUser
    other_viewer: AbstractBaseUser
    outsider: AbstractBaseUser


@pytest.fixture
def tenants(db) -> Tenants:
    org = OrganizationFactory(name="Acme Health", slug="acme")
    other = OrganizationFactory(name="Globex Clinics", slug="globex", timezone="Europe/London")
    return Tenants(
        org=org,
        admin=MembershipFactory(org=org, role=Role.ADMIN, user__username="acme-admin").user,
        viewer=MembershipFactory(org=org, role=Role.VIEWER, user__username="acme-viewer").user,
        other_org=other,
        other_admin=MembershipFactory(
            org=other, role=Role.ADMIN, user__username="globex-admin"
        ).user,
        other_viewer=MembershipFactory(
            org=other, role=Role.VIEWER, user__username="globex-viewer"
        ).user,
        outsider=UserFactory(username="outsider"),
    )


def client_for(user: AbstractBaseUser | None) -> Client:
    """A test client signed in as the user (anonymous for None)."""
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def admin_client(tenants) -> Client:
    return client_for(tenants.admin)


@pytest.fixture
def viewer_client(tenants) -> Client:
    return client_for(tenants.viewer)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def need_service(available: bool, what: str) -> None:
    """Skips a test needing a missing service locally; with CI=true a missing service fails."""
    if available:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (CI=true) but not configured or reachable")
    pytest.skip(f"{what} not available")


@pytest.fixture
def redis_url() -> str:
    need_service(bool(settings.REDIS_URL), "Redis (REDIS_URL)")
    return settings.REDIS_URL


@pytest.fixture
def on_postgres(db) -> None:
    need_service(settings.DATABASES["default"]["ENGINE"].endswith("postgresql"), "PostgreSQL")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    # Production-strength hashing costs ~0.3 s per user; tests create many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path) -> None:
    # Error logs and attachments land in a folder of the test's own.
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def sandbox(settings, live_server):
    """The sandbox provider, reached by the real SDKs, posting signed callbacks to a live server."""
    from delivery.sandbox import SandboxConfig, SandboxProvider, generate_sendgrid_keypair

    private_pem, public_key = generate_sendgrid_keypair()
    settings.PUBLIC_BASE_URL = live_server.url
    settings.SENDGRID_WEBHOOK_PUBLIC_KEY = public_key
    provider = SandboxProvider(
        twilio_auth_token=settings.TWILIO_AUTH_TOKEN,
        twilio_account_sid=settings.TWILIO_ACCOUNT_SID,
        sendgrid_private_key_pem=private_pem,
        sendgrid_webhook_url=f"{live_server.url}/webhooks/sendgrid/events/",
        twilio_inbound_url=f"{live_server.url}/webhooks/twilio/inbound/",
        config=SandboxConfig(callback_delay=0, seed=7),
    ).start()
    settings.TWILIO_API_BASE_URL = provider.url
    settings.SENDGRID_API_HOST = provider.url
    yield provider
    provider.stop()


@pytest.fixture
def celery_processes(sandbox, live_server, tmp_path, on_postgres, redis_url):
    """Real `celery worker` / `celery beat` processes on the test database; stopped at the end."""
    from tests.workers import CeleryProcesses

    processes = CeleryProcesses(sandbox=sandbox, live_server_url=live_server.url, tmp_path=tmp_path)
    yield processes
    processes.stop_all()


def assert_provider_kept_rate(arrivals: Iterable[float], rate: float, *, lag: float = 0.0) -> None:
    """No window of one second, sliding, held more arrivals at the provider than the rate.

    `arrivals` are the provider's own timestamps, one per message (an email request's recipients
    each count). Every window [t, t + 1) that starts at an arrival is counted: a window holding
    the most arrivals can always be slid to start at one of them. Exact: the throttle spaces
    slots so that a request starting late, or arriving up to 10 ms later than another, stays
    inside it (delivery/throttle.py, SPAN). `lag` shortens the windows by what the sandbox's own
    timestamps may lag beyond that, where they are taken in a busy process other than the
    sender's (the fault suite's Celery workers; see tests/faults/conftest.py).
    """
    times = sorted(arrivals)
    busiest, end = (0, None), 0
    for start, at in enumerate(times):
        while end < len(times) and times[end] < at + 1 - lag:
            end += 1
        if end - start > busiest[0]:
            busiest = (end - start, at)
    most, since = busiest
    assert most <= rate, f"{most} arrivals in {1 - lag} s from {since} at {rate}/s"
