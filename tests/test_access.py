"""The tenancy path, checked on every console URL found in the URL configuration."""

import pytest

from tests.conftest import client_for
from tests.url_walk import OBJECT_IDS, PLAIN_PARAMS, console_routes

ROUTES = console_routes()
PROTECTED = [r for r in ROUTES if r.access in ("member", "admin")]
ADMIN_ONLY = [r for r in ROUTES if r.access == "admin"]
WITH_OBJECTS = [r for r in PROTECTED if r.has_objects]


def test_it_finds_the_console_urls():
    names = {r.name for r in ROUTES}
    assert {"dashboard", "switch_org", "org_settings", "org_settings_edit"} <= names


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_it_declares_who_may_use_every_url(route):
    assert route.access in ("member", "admin", "public"), (
        f"{route.name} is not wrapped in member_required, admin_required or public"
    )
    missing = [p for p in route.params if p not in OBJECT_IDS and p not in PLAIN_PARAMS]
    assert not missing, f"{route.name}: add {missing} to tests.url_walk.OBJECT_IDS"


@pytest.mark.parametrize("route", PROTECTED, ids=str)
@pytest.mark.parametrize("method", ["get", "post"])
def test_it_sends_anonymous_visitors_to_login(tenants, route, method):
    response = getattr(client_for(None), method)(route.url_for(tenants.org))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize("route", ADMIN_ONLY, ids=str)
@pytest.mark.parametrize("method", ["get", "post"])
def test_it_refuses_viewers_every_write(tenants, route, method):
    response = getattr(client_for(tenants.viewer), method)(route.url_for(tenants.org))
    assert response.status_code == 403


@pytest.mark.parametrize("route", WITH_OBJECTS, ids=str)
@pytest.mark.parametrize("method", ["get", "post"])
def test_it_hides_other_organizations_objects(tenants, route, method):
    response = getattr(client_for(tenants.other_admin), method)(route.url_for(tenants.org))
    assert response.status_code == 404


@pytest.mark.parametrize("route", PROTECTED, ids=str)
def test_it_tells_users_without_an_organization_why_they_see_nothing(tenants, route):
    response = client_for(tenants.outsider).get(route.url_for(tenants.org))
    assert response.status_code == 403
    assert b"not a member of any organization" in response.content


@pytest.mark.parametrize("route", PROTECTED, ids=str)
def test_it_opens_every_page_for_an_administrator(tenants, route):
    response = client_for(tenants.admin).get(route.url_for(tenants.org))
    # 405: a POST-only action; anything else must be a page or a redirect, never an error.
    assert response.status_code in (200, 302, 405), response.status_code
