"""Shared fixtures: two organizations with an Administrator and a Viewer each, and an outsider."""

import os
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
