from datetime import timedelta

from django.utils import timezone

from campaigns.models import Status
from delivery.models import InboundMessage, SendHour
from tests.factories import CampaignFactory, ContactFactory, MessageFactory, SuppressionFactory


def test_the_overview_shows_progress_locks_sends_conversations_and_opt_outs(tenants, admin_client):
    running = CampaignFactory(org=tenants.org, name="Flu shots", status=Status.IN_PROGRESS)
    CampaignFactory(org=tenants.org, name="Later", status=Status.SCHEDULED, run_at=timezone.now())
    MessageFactory(recipient_list__campaign=running, status="delivered")
    MessageFactory(recipient_list__campaign=running)
    SendHour.objects.create(
        campaign=running, hour=timezone.now().replace(minute=0, second=0, microsecond=0), count=7
    )
    contact = ContactFactory(org=tenants.org)
    for n in range(2):
        InboundMessage.objects.create(
            org=tenants.org, contact=contact, campaign=running, body="Thanks!", provider_id=f"SM{n}"
        )
    InboundMessage.objects.create(
        org=tenants.org, contact=contact, body="STOP", kind="opt_out", provider_id="SMstop"
    )
    SuppressionFactory(org=tenants.org, address="+12125550999", reason="stop_reply")
    SuppressionFactory(org=tenants.other_org, address="+12125550888")
    page = admin_client.get("/").content.decode()
    assert "Flu shots" in page and "1/2" in page
    assert "holds the channel" in page and "waiting: " in page and "Later" in page
    assert "<dt>SMS sent</dt><dd>7</dd>" in page
    assert "<strong>1</strong> conversation started by replies" in page
    assert "+12125550999" in page and "+12125550888" not in page


def test_old_replies_do_not_count_as_recent_conversations(tenants, admin_client):
    contact = ContactFactory(org=tenants.org)
    InboundMessage.objects.create(
        org=tenants.org,
        contact=contact,
        body="hi",
        provider_id="SMold",
        received_at=timezone.now() - timedelta(days=40),
    )
    assert "<strong>0</strong> conversations" in admin_client.get("/").content.decode()
