"""Password reset: the same answer for known and unknown emails, and hourly limits on both."""

import re

import pytest
from django.core import mail
from django.core.cache import cache
from django.test import Client

THROTTLED = b"Too many password reset requests"


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def tasks_inline(settings):
    # The embedded run's mode: a queued task runs in this process when its transaction commits.
    settings.CELERY_TASK_ALWAYS_EAGER = True


def ask(email: str, address: str = "203.0.113.5") -> int:
    client = Client(REMOTE_ADDR=address)
    return client.post("/accounts/password_reset/", {"email": email}).status_code


def test_it_resets_a_forgotten_password_by_email(
    tenants, client, tasks_inline, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/accounts/password_reset/", {"email": "acme-admin@example.com"})
    assert len(mail.outbox) == 1
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", mail.outbox[0].body).group(1)
    form = client.get(link, follow=True)
    assert form.status_code == 200 and b"Choose a new password" in form.content
    new_password = "a-brand-new-passphrase-42"
    client.post(
        form.request["PATH_INFO"], {"new_password1": new_password, "new_password2": new_password}
    )
    response = client.post("/accounts/login/", {"username": "acme-admin", "password": new_password})
    assert response.status_code == 302


def test_known_and_unknown_emails_get_the_same_answer_and_the_mail_leaves_later(
    tenants, tasks_inline, django_capture_on_commit_callbacks
):
    answers, queued = [], []
    for email in ("acme-admin@example.com", "nobody@example.com"):
        with django_capture_on_commit_callbacks() as callbacks:
            response = Client().post("/accounts/password_reset/", {"email": email}, follow=True)
        answers.append((response.status_code, response.redirect_chain, response.content))
        queued += callbacks
    # The requests only queued the mail: known or not, each did the same work.
    assert not mail.outbox and len(queued) == 2
    assert answers[0] == answers[1]
    for callback in queued:
        callback()
    assert b"If an account uses that address" in answers[0][2]
    assert [m.to for m in mail.outbox] == [["acme-admin@example.com"]]


def test_it_limits_reset_requests_from_one_address(db, settings):
    settings.PASSWORD_RESET_MAX_PER_ADDRESS = 2
    statuses = [ask(f"person{n}@example.com") for n in range(3)]
    assert statuses == [302, 302, 429]
    page = Client(REMOTE_ADDR="203.0.113.5").post(
        "/accounts/password_reset/", {"email": "someone@example.com"}
    )
    assert page.status_code == 429 and THROTTLED in page.content
    assert ask("person0@example.com", address="198.51.100.7") == 302


def test_it_limits_reset_requests_for_one_email_alike_whether_it_is_known(tenants, settings):
    settings.PASSWORD_RESET_MAX_PER_EMAIL = 2
    for email in ("acme-admin@example.com", "nobody@example.com"):
        statuses = [ask(email, address=f"198.51.100.{n}") for n in range(3)]
        assert statuses == [302, 302, 429]
    # The count is per account, however the address is written.
    assert ask("ACME-admin@Example.com ", address="198.51.100.9") == 429
    assert ask("acme-viewer@example.com", address="198.51.100.9") == 302
