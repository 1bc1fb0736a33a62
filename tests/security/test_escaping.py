"""Every page escapes what people typed: names, file names, replies, provider errors."""

import pytest
from django.conf import settings

from campaigns.models import ActivityEntry
from campaigns.services import campaign_run
from delivery.models import InboundMessage, MessageStatus
from delivery.sandbox import render_personalization
from tests import factories
from tests.conftest import client_for
from tests.e2e.test_send_through_sandbox import ALL_WEEK, run_until_done
from tests.url_walk import OBJECT_IDS, console_routes

PAYLOAD = '<script>alert("x")</script><img src=x onerror=alert(1)>'
ESCAPED = "&lt;script&gt;alert("
PAGES = [r for r in console_routes() if r.access in ("member", "admin")]


@pytest.fixture
def hostile(tenants):
    """One object of every kind in the organization, each with the payload in every text field."""
    org = tenants.org
    sender = factories.SmsSenderFactory(org=org, label=PAYLOAD, inbox_name=PAYLOAD)
    template = factories.SmsTemplateFactory(org=org, name=PAYLOAD, body=f"Hi {PAYLOAD}")
    campaign = factories.CampaignFactory(
        org=org, name=PAYLOAD, description=PAYLOAD, sender=sender, template=template
    )
    recipient_list = factories.RecipientListFactory(campaign=campaign, file_name=PAYLOAD)
    contact = factories.ContactFactory(org=org, name=PAYLOAD)
    factories.MessageFactory(
        recipient_list=recipient_list,
        contact=contact,
        variables={"name": PAYLOAD, PAYLOAD: PAYLOAD},
        status=MessageStatus.FAILED,
        error_message=PAYLOAD,
    )
    InboundMessage.objects.create(
        org=org, contact=contact, campaign=campaign, body=PAYLOAD, provider_id="SM-hostile"
    )
    ActivityEntry.objects.create(
        org=org, campaign=campaign, subject=PAYLOAD, verb="edited", detail=PAYLOAD
    )
    ids = {
        "sender_id": sender.pk,
        "template_id": factories.EmailTemplateFactory(org=org, name=PAYLOAD).pk,
        "campaign_id": campaign.pk,
        "list_id": recipient_list.pk,
        "rejected_id": factories.RejectedUploadFactory(
            campaign=campaign, file_name=PAYLOAD, file_errors=[PAYLOAD]
        ).pk,
        "contact_id": contact.pk,
        "suppression_id": factories.SuppressionFactory(org=org, detail=PAYLOAD).pk,
    }
    assert set(ids) == set(OBJECT_IDS), "a new kind of object needs a hostile one here"
    return ids


@pytest.mark.parametrize("route", PAGES, ids=str)
def test_no_page_lets_typed_text_become_markup(tenants, hostile, route, monkeypatch):
    ids = hostile
    for param, value in ids.items():
        monkeypatch.setitem(OBJECT_IDS, param, lambda org, value=value: value)
    response = client_for(tenants.admin).get(route.url_for(tenants.org))
    if not response["Content-Type"].startswith("text/html"):
        # Downloads hold the text as it was typed, so a browser must save them, never render them.
        assert response["Content-Type"].startswith("text/csv")
        assert response["Content-Disposition"].startswith("attachment")
        assert response["X-Content-Type-Options"] == "nosniff"
        return
    assert PAYLOAD.encode() not in response.content
    assert b"<script>alert" not in response.content


@pytest.mark.parametrize(
    "url",
    ["/campaigns/{campaign}/", "/contacts/{contact}/", "/campaigns/{campaign}/messages/"],
)
def test_the_pages_that_show_it_show_it_as_text(tenants, hostile, url):
    ids = hostile
    page = client_for(tenants.admin).get(
        url.format(campaign=ids["campaign_id"], contact=ids["contact_id"])
    )
    assert page.status_code == 200
    assert ESCAPED in page.content.decode()


SENT_TEMPLATE = (
    '<p>Hi {{ name }}</p><p><a href="{{ site }}">Our site</a></p><img src="{{ logo }}" alt="Logo">'
    '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
)
CSV_URLS = [
    "javascript:alert(1)",
    "JAVASCRIPT:alert(1)",
    "java&#x09;script:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "https://acme.example/welcome?a=1",
]


@pytest.mark.django_db(transaction=True)
def test_a_sent_email_links_and_loads_only_http_https_or_mailto(tenants, sandbox):
    # A CSV column can hold anything; the email that reaches the recipient cannot.
    campaign = factories.CampaignFactory(
        org=tenants.org,
        channel="email",
        schedule=ALL_WEEK,
        template=factories.EmailTemplateFactory(org=tenants.org, html_body=SENT_TEMPLATE),
    )
    recipient_list = factories.RecipientListFactory(campaign=campaign)
    sent_to = {
        factories.MessageFactory(
            recipient_list=recipient_list,
            contact__address=f"person{i}@example.com",
            variables={"name": "Ana", "site": url, "logo": url},
        ).pk: url
        for i, url in enumerate(CSV_URLS)
    }
    campaign_run(campaign=campaign, user=tenants.admin)
    run_until_done(campaign, sandbox)

    html = {
        message_id: render_personalization(record["payload"], index)["html"]
        for record in sandbox.received
        for index, message_id in enumerate(record["message_ids"])
    }
    assert set(html) == set(sent_to)
    for message_id, url in sent_to.items():
        if url.startswith("https:"):
            expected = '<a href="https://acme.example/welcome?a=1" rel="noopener noreferrer">'
            assert expected in html[message_id]
            assert '<img src="https://acme.example/welcome?a=1" alt="Logo">' in html[message_id]
        else:
            assert '<a href="#" rel="noopener noreferrer">Our site</a>' in html[message_id]
            assert '<img src="#" alt="Logo">' in html[message_id]
            assert "javascript:" not in html[message_id].lower()
            assert "data:" not in html[message_id]
        assert f'href="{settings.PUBLIC_BASE_URL}/u/' in html[message_id]  # ours still works
