import csv
import io

import pytest

from delivery.exports import neutralise
from delivery.models import Message
from delivery.selectors import keyset_page
from tests.conftest import client_for
from tests.factories import CampaignFactory, MessageFactory, RecipientListFactory


@pytest.fixture
def campaign(tenants):
    return CampaignFactory(org=tenants.org, name="Flu")


def test_it_filters_by_status_list_error_and_search(campaign, admin_client):
    first, second = RecipientListFactory(campaign=campaign), RecipientListFactory(campaign=campaign)
    ana = MessageFactory(recipient_list=first, contact__name="Ana García", name="Ana García")
    bob = MessageFactory(recipient_list=second, name="Bob", status="failed", error_code="30003")
    url = f"/campaigns/{campaign.pk}/messages/"

    def shown(query: str) -> set[str]:
        page = admin_client.get(url + query).content.decode()
        return {m.address for m in (ana, bob) if m.address in page}

    assert shown("") == {ana.address, bob.address}
    assert shown("?status=failed") == {bob.address}
    assert shown(f"?list={first.pk}") == {ana.address}
    assert shown("?error=30003") == {bob.address}
    assert shown("?q=garc") == {ana.address}
    assert shown("?q=" + bob.address[-4:]) == {bob.address}
    assert f"/contacts/{ana.contact_id}/" in admin_client.get(url).content.decode()


def test_keyset_pages_meet_exactly_at_their_boundaries(campaign):
    recipient_list = RecipientListFactory(campaign=campaign)
    MessageFactory.create_batch(7, recipient_list=recipient_list)
    ids = list(Message.objects.order_by("id").values_list("id", flat=True))
    messages = Message.objects.filter(campaign=campaign)
    first = keyset_page(messages, size=3)
    assert [m.id for m in first.rows] == ids[:3] and first.prev_before is None
    second = keyset_page(messages, after=str(first.next_after), size=3)
    assert [m.id for m in second.rows] == ids[3:6]
    last = keyset_page(messages, after=str(second.next_after), size=3)
    assert [m.id for m in last.rows] == ids[6:] and last.next_after is None
    back = keyset_page(messages, before=str(last.prev_before), size=3)
    assert [m.id for m in back.rows] == ids[3:6]
    assert keyset_page(messages, before=str(back.prev_before), size=3).prev_before is None
    exact = keyset_page(messages, after=str(ids[3]), size=3)
    assert [m.id for m in exact.rows] == ids[4:7] and exact.next_after is None


def test_the_export_has_every_column_and_neutralises_formulas(campaign, admin_client):
    recipient_list = RecipientListFactory(campaign=campaign, file_name="=evil.csv")
    MessageFactory(
        recipient_list=recipient_list,
        name='=HYPERLINK("http://x")',
        status="delivered",
        sent_at="2026-03-03T14:00:00Z",
        delivered_at="2026-03-03T14:00:05Z",
        timezone="America/New_York",
        provider_id="SM1",
    )
    response = admin_client.get(f"/campaigns/{campaign.pk}/messages.csv")
    assert (
        response["Content-Disposition"]
        == f'attachment; filename="campaign-{campaign.pk}-messages.csv"'
    )
    body = b"".join(response.streaming_content).decode()
    rows = list(csv.reader(io.StringIO(body.lstrip("\ufeff"))))
    assert rows[0] == [
        "recipient",
        "name",
        "timezone",
        "list",
        "status",
        "provider_id",
        "error_code",
        "error_message",
        "sent_at_utc",
        "sent_at_local",
        "delivered_at_utc",
        "delivered_at_local",
    ]
    row = rows[1]
    assert row[0].startswith("+1")  # E.164 stays exact
    assert row[1] == '\'=HYPERLINK("http://x")' and row[3] == "'=evil.csv"
    assert row[4] == "Delivered"
    assert row[8:10] == ["2026-03-03 14:00:00", "2026-03-03 09:00:00"]


@pytest.mark.parametrize("value", ["=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx"])
def test_it_neutralises_every_formula_start(value):
    assert neutralise(value) == "'" + value


def test_the_campaigns_export_lists_the_organizations_campaigns_only(
    tenants, campaign, admin_client
):
    CampaignFactory(org=tenants.other_org, name="Secret")
    body = b"".join(admin_client.get("/campaigns/export.csv").streaming_content).decode()
    assert "Flu" in body and "Secret" not in body


def test_viewers_export_but_another_organization_gets_404(tenants, campaign):
    assert (
        client_for(tenants.viewer).get(f"/campaigns/{campaign.pk}/messages.csv").status_code == 200
    )
    other = client_for(tenants.other_admin)
    assert other.get(f"/campaigns/{campaign.pk}/messages.csv").status_code == 404
    assert other.get(f"/campaigns/{campaign.pk}/messages/").status_code == 404
