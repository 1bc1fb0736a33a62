"""CSRF on every form, the Content Security Policy on every page, production cookie flags."""

import re
from html.parser import HTMLParser

import pytest
from django.test import Client

from tests.conftest import client_for
from tests.test_configuration import PRODUCTION, manage
from tests.url_walk import console_routes

ROUTES = console_routes()
# Callers that cannot hold a CSRF token: the providers' signed webhooks, and the one-click
# unsubscribe that mail clients POST (RFC 8058), which carries its own signed token.
CSRF_EXEMPT = {
    "delivery:unsubscribe",
    "delivery:twilio_status",
    "delivery:twilio_inbound",
    "delivery:sendgrid_events",
}
CHECKED = [r for r in ROUTES if r.name not in CSRF_EXEMPT]
PAGES = [r for r in ROUTES if r.access in ("member", "admin")]


def _csrf_client(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def test_only_the_webhooks_and_one_click_unsubscribe_skip_csrf():
    exempt = {r.name for r in ROUTES if getattr(r.view, "csrf_exempt", False)}
    assert exempt == CSRF_EXEMPT


@pytest.mark.parametrize("route", CHECKED, ids=str)
def test_every_post_without_a_csrf_token_is_refused(tenants, route):
    response = _csrf_client(tenants.admin).post(route.url_for(tenants.org))
    assert response.status_code == 403
    assert b"CSRF" in response.content


def test_the_same_post_with_the_forms_token_goes_through(tenants):
    client = _csrf_client(tenants.admin)
    page = client.get("/opt-outs/new/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = client.post(
        "/opt-outs/new/", {"csrfmiddlewaretoken": token, "address": "+12125550199"}
    )
    assert response.status_code == 302


class _InlineCode(HTMLParser):
    """Collects what a no-inline-script policy would block: inline scripts and on* handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_inline_script = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        names = dict(attrs)
        if tag == "script" and not names.get("src") and names.get("type") != "application/json":
            self._in_inline_script = True
        self.found += [f"<{tag} {name}=…>" for name, _ in attrs if name.startswith("on")]
        if any(name == "href" and (v or "").startswith("javascript:") for name, v in attrs):
            self.found.append(f"<{tag} href=javascript:…>")

    def handle_endtag(self, tag: str) -> None:
        self._in_inline_script = False

    def handle_data(self, data: str) -> None:
        if self._in_inline_script and data.strip():
            self.found.append(f"inline <script>: {data.strip()[:60]}")


@pytest.mark.parametrize("route", PAGES, ids=str)
def test_every_page_has_a_strict_policy_and_no_inline_script(tenants, route):
    response = client_for(tenants.admin).get(route.url_for(tenants.org))
    if response.status_code != 200 or not response["Content-Type"].startswith("text/html"):
        return  # redirects, POST-only actions and downloads carry no markup to check
    directives = dict(
        [*part.strip().split(" ", 1), ""][:2]
        for part in response["Content-Security-Policy"].split(";")
    )
    # Scripts fall back to default-src; inline styles are allowed only where email HTML needs them.
    scripts = directives.get("script-src", directives["default-src"])
    assert scripts in ("'self'", "'none'")
    parser = _InlineCode()
    parser.feed(response.content.decode())
    assert parser.found == []


def test_production_cookies_are_secure_http_only_and_same_site():
    shown = manage(
        "shell",
        "--no-imports",
        "-c",
        "from django.conf import settings as s; print(s.SESSION_COOKIE_SECURE, "
        "s.SESSION_COOKIE_HTTPONLY, s.SESSION_COOKIE_SAMESITE, s.CSRF_COOKIE_SECURE, "
        "s.CSRF_COOKIE_HTTPONLY, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS > 0, "
        "s.X_FRAME_OPTIONS)",
        **PRODUCTION,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == ["True", "True", "Lax", "True", "True", "True", "True", "DENY"]


def test_the_session_cookie_a_login_sets_is_http_only(tenants, settings):
    settings.SESSION_COOKIE_SECURE = True  # what production sets (checked above)
    client = Client()
    tenants.admin.set_password("a-long-passphrase")
    tenants.admin.save()
    response = client.post(
        "/accounts/login/", {"username": tenants.admin.username, "password": "a-long-passphrase"}
    )
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["httponly"] and cookie["secure"] and cookie["samesite"] == "Lax"
