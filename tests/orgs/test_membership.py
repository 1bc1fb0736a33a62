from orgs.models import Role
from tests.conftest import client_for
from tests.factories import MembershipFactory, OrganizationFactory


def test_it_shows_the_current_organization_and_role(tenants):
    response = client_for(tenants.viewer).get("/")
    assert response.status_code == 200
    assert b'data-testid="current-org">Acme Health<' in response.content
    assert b"Viewer" in response.content


def test_it_lets_a_member_of_two_organizations_switch(tenants):
    MembershipFactory(user=tenants.admin, org=tenants.other_org, role=Role.VIEWER)
    client = client_for(tenants.admin)
    page = client.get("/").content.decode()
    assert "Switch to…" in page and "Globex Clinics" in page

    response = client.post("/org/switch/", {"org": tenants.other_org.pk}, follow=True)
    assert b"You are now working in Globex Clinics" in response.content
    assert response.context["org"] == tenants.other_org
    # The role follows the organization: a Viewer there.
    assert client.get("/org/settings/edit/").status_code == 403


def test_it_offers_no_switch_to_a_member_of_one_organization(tenants):
    assert b"Switch to" not in client_for(tenants.admin).get("/").content


def test_it_refuses_switching_into_an_organization_the_user_is_not_in(tenants):
    client = client_for(tenants.admin)
    assert client.post("/org/switch/", {"org": tenants.other_org.pk}).status_code == 404
    assert client.get("/").context["org"] == tenants.org


def test_it_falls_back_when_the_chosen_membership_is_revoked(tenants):
    second = MembershipFactory(user=tenants.admin, org=OrganizationFactory(name="Zeta"))
    client = client_for(tenants.admin)
    client.post("/org/switch/", {"org": second.org_id})
    second.delete()
    assert client.get("/").context["org"] == tenants.org


def test_it_lets_an_administrator_edit_the_organization(tenants, admin_client):
    response = admin_client.post(
        "/org/settings/edit/",
        {
            "name": "Acme Health",
            "timezone": "Asia/Kathmandu",
            "default_region": "NP",
            "max_recipients_per_list": 5000,
        },
        follow=True,
    )
    assert b"Organization settings saved." in response.content
    tenants.org.refresh_from_db()
    assert (tenants.org.timezone, tenants.org.default_region) == ("Asia/Kathmandu", "NP")
    assert tenants.org.max_recipients_per_list == 5000


def test_it_explains_a_bad_timezone_or_region(tenants, admin_client):
    response = admin_client.post(
        "/org/settings/edit/",
        {
            "name": "Acme",
            "timezone": "Mars/Olympus",
            "default_region": "XX",
            "max_recipients_per_list": 0,
        },
    )
    page = response.content.decode()
    assert "“Mars/Olympus” is not an IANA timezone name" in page
    assert "“XX” is not a two-letter country code" in page
    assert "greater than or equal to 1" in page
    tenants.org.refresh_from_db()
    assert tenants.org.timezone == "America/New_York"


def test_it_lists_members_and_their_roles(tenants, viewer_client):
    page = viewer_client.get("/org/settings/").content.decode()
    assert "acme-admin" in page and "acme-viewer" in page and "globex-admin" not in page
    assert "Edit settings" not in page
