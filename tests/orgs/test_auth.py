import re

from django.core import mail
from django.http import HttpRequest

from tests.factories import TEST_PASSWORD


def test_it_logs_a_member_in_and_out(tenants, client):
    page = client.get("/accounts/login/")
    assert page.status_code == 200 and b"Forgot your password?" in page.content
    response = client.post(
        "/accounts/login/", {"username": "acme-admin", "password": TEST_PASSWORD}, follow=True
    )
    assert response.context["org"] == tenants.org
    response = client.post("/accounts/logout/", follow=True)
    assert response.request["PATH_INFO"] == "/accounts/login/"
    assert client.get("/").status_code == 302


def test_it_says_when_a_login_is_wrong(tenants, client):
    response = client.post("/accounts/login/", {"username": "acme-admin", "password": "nope"})
    assert "didn't match" in response.content.decode()


def test_it_resets_a_forgotten_password_by_email(tenants, client):
    client.post("/accounts/password_reset/", {"email": "acme-admin@example.com"})
    assert len(mail.outbox) == 1
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", mail.outbox[0].body).group(1)
    form = client.get(link, follow=True)
    assert form.status_code == 200 and b"Choose a new password" in form.content
    new_password = "a-brand-new-passphrase-42"
    client.post(
        form.request["PATH_INFO"], {"new_password1": new_password, "new_password2": new_password}
    )
    assert client.login(request=HttpRequest(), username="acme-admin", password=new_password)


def test_it_does_not_reveal_which_emails_have_accounts(db, client):
    response = client.post("/accounts/password_reset/", {"email": "nobody@example.com"})
    assert response.status_code == 302 and not mail.outbox
