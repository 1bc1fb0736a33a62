"""Every login form (console, Django admin) is throttled by django-axes with our two limits.

These run on whichever cache the settings name: Redis in the PostgreSQL run, locmem on SQLite.
"""

import re
import time
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import Client

from tests.factories import TEST_PASSWORD, UserFactory


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def attempt(
    password: str,
    address: str = "203.0.113.5",
    username: str = "acme-admin",
    path: str = "/accounts/login/",
    **headers,
) -> int:
    client = Client(REMOTE_ADDR=address, **headers)
    return client.post(path, {"username": username, "password": password}).status_code


def test_it_locks_a_username_out_at_an_address_after_repeated_failures(tenants, settings):
    settings.AXES_FAILURE_LIMIT = 3
    assert [attempt("wrong") for _ in range(3)] == [200, 200, 429]
    # Even the right password is refused while locked.
    assert attempt(TEST_PASSWORD) == 429
    # Another address is not affected.
    assert attempt(TEST_PASSWORD, address="198.51.100.7") == 302


def test_one_persons_typos_do_not_lock_the_rest_of_the_office_out(tenants, settings):
    # Everyone behind one proxy shares its address.
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(3):
        attempt("wrong", username="acme-admin")
    assert attempt(TEST_PASSWORD, username="acme-admin") == 429
    assert attempt(TEST_PASSWORD, username="acme-viewer") == 302


def test_a_password_spray_across_usernames_locks_the_address(tenants, settings):
    settings.AXES_FAILURE_LIMIT = 3
    settings.LOGIN_MAX_FAILURES_PER_ADDRESS = 4
    # One guess per username stays under the per-username limit; the address ceiling still locks.
    statuses = [attempt("Summer2024!", username=f"user-{n}") for n in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert attempt(TEST_PASSWORD, username="acme-viewer") == 429
    assert attempt(TEST_PASSWORD, username="acme-viewer", address="198.51.100.7") == 302


def test_the_admin_login_is_throttled_by_the_same_rule(tenants, settings):
    settings.AXES_FAILURE_LIMIT = 3
    UserFactory(username="staff", is_staff=True, is_superuser=True)
    statuses = [attempt("wrong", username="staff", path="/admin/login/") for _ in range(3)]
    assert statuses == [200, 200, 429]
    client = Client(REMOTE_ADDR="203.0.113.5")
    response = client.post("/admin/login/", {"username": "staff", "password": TEST_PASSWORD})
    assert response.status_code == 429
    assert b"Too many failed log-in attempts" in response.content
    assert client.get("/admin/").status_code == 302, "the right password must not log in"
    # Failures counted on one form lock the others too.
    assert attempt(TEST_PASSWORD, username="staff") == 429


def test_a_locked_out_attempt_does_not_tell_whether_the_password_was_right(tenants, settings):
    settings.AXES_FAILURE_LIMIT = 2
    for _ in range(2):
        attempt("wrong")

    def answer(password: str) -> tuple[int, str]:
        client = Client(REMOTE_ADDR="203.0.113.5")
        response = client.post("/accounts/login/", {"username": "acme-admin", "password": password})
        body = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", response.content.decode())
        return response.status_code, body

    assert answer(TEST_PASSWORD) == answer("wrong-again")
    assert answer(TEST_PASSWORD)[0] == 429


def test_a_forged_forwarded_for_header_does_not_escape_the_lock(tenants, settings):
    settings.AXES_FAILURE_LIMIT = 2
    for n in range(2):
        attempt("wrong", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
    assert attempt(TEST_PASSWORD, HTTP_X_FORWARDED_FOR="10.0.0.99") == 429


def test_behind_a_trusted_proxy_the_forwarded_client_is_the_key(tenants, settings):
    settings.AXES_FAILURE_LIMIT = 2
    settings.TRUSTED_PROXY_COUNT = 1
    for _ in range(2):
        attempt("wrong", address="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert attempt(TEST_PASSWORD, address="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9") == 429
    assert attempt(TEST_PASSWORD, address="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.10") == 302


def test_the_locked_page_says_why(tenants, settings):
    settings.AXES_FAILURE_LIMIT = 1
    attempt("wrong")
    client = Client(REMOTE_ADDR="203.0.113.5")
    page = client.post("/accounts/login/", {"username": "acme-admin", "password": "x"})
    assert page.status_code == 429
    assert b"Too many failed log-in attempts. Try again in 15 minutes" in page.content
    assert b"Forgot your password?" in page.content


def test_the_lockout_ends_after_the_cool_off(tenants, settings):
    settings.AXES_FAILURE_LIMIT = 2
    settings.AXES_COOLOFF_TIME = timedelta(seconds=2)
    for _ in range(2):
        attempt("wrong")
    assert attempt("wrong") == 429
    # Refused attempts do not extend the lockout, so asking again and again ends too.
    deadline = time.monotonic() + 30
    while (status := attempt(TEST_PASSWORD)) == 429 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status == 302
