"""Messages that ended "unknown": said on every page, looked up at Twilio, retried on request."""

import time
from datetime import UTC, datetime

import pytest
from django.utils import timezone

from campaigns.models import ActivityEntry, Campaign, Channel, Status
from campaigns.services import campaign_run
from delivery.dispatch import dispatch_tick
from delivery.models import Message, MessageStatus
from delivery.providers.base import OutboundSms
from delivery.providers.twilio_sms import TwilioSmsProvider
from delivery.reconciliation import NOT_FOUND
from delivery.sandbox import SandboxConfig, SandboxProvider, generate_sendgrid_keypair
from delivery.sending import send_batch
from tests.conftest import client_for
from tests.factories import CampaignFactory, MessageFactory, RecipientListFactory, SmsSenderFactory

ALL_WEEK = {str(d): ["00:00", "23:59"] for d in range(7)}
ACCOUNT_SID = "AC" + "e5" * 16
SENDER = "+15005550001"


@pytest.fixture
def local_sandbox():
    """A sandbox of its own, without callbacks: what it says of a message is only what its
    Messages list answers."""
    private_pem, _ = generate_sendgrid_keypair()
    sandbox = SandboxProvider(
        twilio_auth_token="lookup-token",
        twilio_account_sid=ACCOUNT_SID,
        sendgrid_private_key_pem=private_pem,
        sendgrid_webhook_url="http://127.0.0.1:9/",
        twilio_inbound_url="http://127.0.0.1:9/",
        config=SandboxConfig(callbacks=False, delivered_ratio=1.0, callback_delay=0),
    ).start()
    yield sandbox
    sandbox.stop()


def sms(message_id: int, to: str, body: str = "Your appointment is tomorrow.") -> OutboundSms:
    return OutboundSms(message_id, to, SENDER, body, f"http://127.0.0.1:9/status/{message_id}/")


def test_twilios_messages_list_finds_a_message_by_recipient_sender_day_and_body(local_sandbox):
    provider = TwilioSmsProvider(ACCOUNT_SID, "lookup-token", local_sandbox.url, timeout=5)
    [delivered] = provider.send([sms(1, "+12125550101")])
    # One whose stages are a minute apart: still queued at Twilio, so it has no DateSent yet.
    local_sandbox.configure(callback_delay=60)
    [queued] = provider.send([sms(2, "+12125550102")])
    today = [datetime.now(UTC).date()]
    [found] = provider.lookup(
        to="+12125550101", sender=SENDER, body="Your appointment is tomorrow.", sent_on=today
    )
    assert (found.provider_id, found.status) == (delivered.provider_id, "delivered")
    [waiting] = provider.lookup(
        to="+12125550102", sender=SENDER, body="Your appointment is tomorrow.", sent_on=today
    )
    assert (waiting.provider_id, waiting.status) == (queued.provider_id, "queued")
    for other in (
        {"to": "+12125550199", "sender": SENDER, "body": "Your appointment is tomorrow."},
        {"to": "+12125550101", "sender": "+15005550009", "body": "Your appointment is tomorrow."},
        {"to": "+12125550101", "sender": SENDER, "body": "Another text."},
    ):
        assert provider.lookup(**other, sent_on=today) == []
    provider.close()


@pytest.fixture
def unconfirmed_campaign(tenants, sandbox, settings):
    """An SMS campaign that sent two messages Twilio accepted without our hearing back (every
    answer slower than the timeout), and a third that never reached it."""
    settings.PROVIDER_TIMEOUT_SECONDS = 0.5
    settings.CELERY_TASK_ALWAYS_EAGER = True
    sandbox.configure(fault_mode="slow", slow_seconds=1.5, callbacks=False, delivered_ratio=1.0)
    tenants.org.quiet_hours = False
    tenants.org.save()
    campaign = CampaignFactory(
        org=tenants.org,
        schedule=ALL_WEEK,
        name="Reminders",
        sender=SmsSenderFactory(org=tenants.org, rate_limit=10),
    )
    recipient_list = RecipientListFactory(campaign=campaign, start_at=timezone.now())
    accepted = [
        MessageFactory(recipient_list=recipient_list, contact__address=f"+121255501{i:02d}")
        for i in range(2)
    ]
    lost = MessageFactory(recipient_list=recipient_list, contact__address="+12125550199")
    Message.objects.filter(pk=lost.pk).update(
        status=MessageStatus.UNKNOWN, handed_at=timezone.now(), attempts=1
    )
    campaign_run(campaign=campaign, user=tenants.admin)
    dispatch_tick(timezone.now(), send=lambda ids: send_batch(ids))
    assert set(Message.objects.values_list("status", flat=True)) == {MessageStatus.UNKNOWN}
    deadline = time.monotonic() + 20
    while sum(r["status"] == 201 for r in sandbox.received) < 2:
        assert time.monotonic() < deadline, "the sandbox never accepted the slow requests"
        time.sleep(0.05)
    sandbox.configure(fault_mode=None)
    dispatch_tick(timezone.now(), send=lambda ids: send_batch(ids))
    campaign.refresh_from_db()
    assert campaign.status == Status.COMPLETE
    return campaign, accepted, lost


# The sandbox posts to a live server, which sees only committed rows.
live = pytest.mark.django_db(transaction=True)


@live
def test_it_says_complete_with_how_many_are_unconfirmed_on_every_page(
    tenants, unconfirmed_campaign
):
    campaign, _, _ = unconfirmed_campaign
    viewer = client_for(tenants.viewer)
    for url in (f"/campaigns/{campaign.pk}/", "/campaigns/", "/"):
        page = viewer.get(url).content.decode()
        assert "Complete — 3 unconfirmed" in page, url
    page = viewer.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "3 messages unconfirmed" in page and "Check with Twilio" not in page
    page = client_for(tenants.admin).get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "Check with Twilio" in page and "Retry unconfirmed" in page


@live
def test_it_looks_unconfirmed_messages_up_at_twilio(tenants, sandbox, unconfirmed_campaign):
    campaign, accepted, lost = unconfirmed_campaign
    admin = client_for(tenants.admin)
    response = admin.post(f"/campaigns/{campaign.pk}/reconcile/", follow=True)
    assert "Twilio is being asked" in response.content.decode()
    found = {m.pk: m for m in Message.objects.filter(pk__in=[m.pk for m in accepted])}
    assert {m.status for m in found.values()} == {MessageStatus.DELIVERED}
    sids = {r["provider_id"] for r in sandbox.received if r["status"] == 201}
    assert {m.provider_id for m in found.values()} == sids
    lost.refresh_from_db()
    assert (lost.status, lost.error_message) == (MessageStatus.UNKNOWN, NOT_FOUND)
    entry = ActivityEntry.objects.get(campaign=campaign, verb__contains="with Twilio")
    assert entry.detail == "3 looked up: 2 delivered, 1 not found at Twilio"
    page = admin.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "Complete — 1 unconfirmed" in page


@live
def test_retry_unconfirmed_asks_first_then_queues_them_inside_the_window(
    tenants, unconfirmed_campaign
):
    campaign, _, _ = unconfirmed_campaign
    url = f"/campaigns/{campaign.pk}/retry-unconfirmed/"
    assert client_for(tenants.viewer).get(url).status_code == 403
    assert client_for(tenants.other_admin).get(url).status_code == 404
    admin = client_for(tenants.admin)
    page = admin.get(url).content.decode()
    assert "3 messages were handed to the provider" in page and "may get them twice" in page
    response = admin.post(url, follow=True)
    assert "3 unconfirmed messages queued again" in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.status == Status.IN_PROGRESS
    assert set(campaign.messages.values_list("status", flat=True)) == {MessageStatus.QUEUED}
    assert campaign.messages.filter(pk__in=dispatch_released(campaign)).count() == 3


def dispatch_released(campaign):
    released: list[int] = []
    dispatch_tick(timezone.now(), send=released.extend)
    return released


def test_an_email_campaign_says_sendgrid_cannot_be_asked(tenants):
    campaign = CampaignFactory(org=tenants.org, channel=Channel.EMAIL, status=Status.COMPLETE)
    MessageFactory(
        recipient_list=RecipientListFactory(campaign=campaign),
        contact__address="ana@example.com",
        status=MessageStatus.UNKNOWN,
    )
    admin = client_for(tenants.admin)
    page = admin.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "Complete — 1 unconfirmed" in page
    assert "SendGrid cannot be asked about one email" in page and "Check with Twilio" not in page
    response = admin.post(f"/campaigns/{campaign.pk}/reconcile/", follow=True)
    assert "SendGrid cannot be asked" in response.content.decode()
    assert Campaign.objects.get(pk=campaign.pk).status == Status.COMPLETE
    other = client_for(tenants.other_admin)
    assert other.post(f"/campaigns/{campaign.pk}/reconcile/").status_code == 404
    assert (
        client_for(tenants.viewer).post(f"/campaigns/{campaign.pk}/reconcile/").status_code == 403
    )
