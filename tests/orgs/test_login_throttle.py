import pytest
from django.core.cache import cache
from django.test import Client

from tests.factories import TEST_PASSWORD


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


def attempt(password: str, address: str = "203.0.113.5", **headers) -> int:
    client = Client(REMOTE_ADDR=address, **headers)
    return client.post(
        "/accounts/login/", {"username": "acme-admin", "password": password}
    ).status_code


def test_it_locks_an_address_out_after_repeated_failures(tenants, settings):
    settings.LOGIN_MAX_FAILURES = 3
    assert [attempt("wrong") for _ in range(3)] == [200, 200, 200]
    # Even the right password is refused while locked.
    assert attempt(TEST_PASSWORD) == 429
    # Another address is not affected.
    assert attempt(TEST_PASSWORD, address="198.51.100.7") == 302


def test_a_forged_forwarded_for_header_does_not_escape_the_lock(tenants, settings):
    settings.LOGIN_MAX_FAILURES = 2
    for n in range(2):
        attempt("wrong", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
    assert attempt(TEST_PASSWORD, HTTP_X_FORWARDED_FOR="10.0.0.99") == 429


def test_behind_a_trusted_proxy_the_forwarded_client_is_the_key(tenants, settings):
    settings.LOGIN_MAX_FAILURES = 2
    settings.TRUSTED_PROXY_COUNT = 1
    for _ in range(2):
        attempt("wrong", address="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert attempt(TEST_PASSWORD, address="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9") == 429
    assert attempt(TEST_PASSWORD, address="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.10") == 302


def test_the_locked_page_says_why(tenants, settings):
    settings.LOGIN_MAX_FAILURES = 1
    attempt("wrong")
    client = Client(REMOTE_ADDR="203.0.113.5")
    page = client.post("/accounts/login/", {"username": "acme-admin", "password": "x"})
    assert page.status_code == 429 and b"Too many failed log-in attempts" in page.content
