"""End to end through the real SDKs: dispatcher → sandbox over HTTP → signed callbacks → final."""

import time
from itertools import pairwise

import pytest
from django.utils import timezone

from campaigns.models import Campaign, Channel, Status
from campaigns.services import campaign_run
from delivery.dispatch import dispatch_tick
from delivery.models import FINAL_STATUSES, Message, MessageStatus, Suppression
from delivery.sending import send_batch
from recipients.models import Contact, ListStatus
from tests.conftest import assert_provider_kept_rate
from tests.factories import (
    CampaignFactory,
    EmailSenderFactory,
    MessageFactory,
    RecipientListFactory,
    SmsSenderFactory,
)

ALL_WEEK = {str(d): ["00:00", "23:59"] for d in range(7)}
pytestmark = pytest.mark.django_db(transaction=True)


def run_until_done(campaign: Campaign, sandbox, *, ticks: int = 30) -> None:
    for _ in range(ticks):
        dispatch_tick(timezone.now(), send=lambda ids: send_batch(ids))
        sandbox.wait_idle(10)
        campaign.refresh_from_db()
        if campaign.status not in (Status.IN_PROGRESS,):
            # Replies come after the final status: done means the sandbox has posted them too.
            assert sandbox.wait_idle(30), "the sandbox still had callbacks to post"
            return
        time.sleep(0.05)


def make_campaign(tenants, channel: str, n: int, *, rate: int = 500) -> Campaign:
    tenants.org.quiet_hours = False
    tenants.org.save()
    sender_factory = SmsSenderFactory if channel == Channel.SMS else EmailSenderFactory
    campaign = CampaignFactory(
        org=tenants.org,
        channel=channel,
        schedule=ALL_WEEK,
        sender=sender_factory(org=tenants.org, rate_limit=rate, rate_period="second"),
    )
    recipient_list = RecipientListFactory(campaign=campaign, start_at=timezone.now())
    for i in range(n):
        address = f"+1212555{i:04d}" if channel == Channel.SMS else f"person{i}@example.com"
        MessageFactory(recipient_list=recipient_list, contact__address=address)
    return campaign


def test_sms_go_out_once_each_and_callbacks_drive_them_to_final(tenants, sandbox):
    # Every message reaches a final status: most delivered, the rest undelivered or failed.
    sandbox.configure(
        stop_reply_ratio=0.0, delivered_ratio=0.8, undelivered_ratio=0.5, failed_ratio=1.0
    )
    campaign = make_campaign(tenants, Channel.SMS, 40)
    campaign_run(campaign=campaign, user=tenants.admin)
    run_until_done(campaign, sandbox)
    per_message = sandbox.requests_per_message()
    ids = set(Message.objects.values_list("id", flat=True))
    assert set(per_message) == ids and set(per_message.values()) == {1}
    statuses = set(Message.objects.values_list("status", flat=True))
    assert statuses <= FINAL_STATUSES, statuses
    assert MessageStatus.DELIVERED in statuses and MessageStatus.UNDELIVERED in statuses
    assert campaign.status == Status.COMPLETE_WITH_ERRORS
    assert campaign.recipient_lists.get().status == ListStatus.COMPLETED
    delivered = Message.objects.filter(status="delivered").first()
    assert delivered.provider_id.startswith("SM") and delivered.sent_at and delivered.delivered_at


def test_emails_go_out_in_batches_with_signed_events(tenants, sandbox):
    sandbox.configure(open_ratio=1.0, delivered_ratio=1.0)
    campaign = make_campaign(tenants, Channel.EMAIL, 30)
    campaign_run(campaign=campaign, user=tenants.admin)
    run_until_done(campaign, sandbox)
    assert set(sandbox.requests_per_message().values()) == {1}
    assert len(sandbox.received) < 30  # batched personalizations, not one request each
    assert set(Message.objects.values_list("status", flat=True)) == {MessageStatus.DELIVERED}
    campaign.refresh_from_db()
    assert campaign.status == Status.COMPLETE
    assert campaign.opened_count == 30
    assert campaign.recipient_lists.get().status == ListStatus.COMPLETED


def test_a_stop_reply_lands_on_the_suppression_list(tenants, sandbox):
    # Only delivered messages draw replies; a tenth are not, by message id (which other tests move).
    sandbox.configure(stop_reply_ratio=1.0, delivered_ratio=1.0)
    campaign = make_campaign(tenants, Channel.SMS, 3)
    campaign_run(campaign=campaign, user=tenants.admin)
    run_until_done(campaign, sandbox)
    assert Suppression.objects.filter(org=tenants.org, reason="stop_reply").count() == 3


@pytest.mark.parametrize(
    ("channel", "rate", "n"),
    [
        (Channel.SMS, 20, 70),
        # Email counts recipients: requests of 50 each tenth of a second (sending._chunk_size).
        (Channel.EMAIL, 500, 1_600),
    ],
)
def test_it_keeps_the_rate_in_every_sliding_second_at_the_provider(
    tenants, sandbox, channel, rate, n
):
    # Only the requests matter here: no callbacks, and the messages made in bulk.
    sandbox.configure(callbacks=False)
    campaign = make_campaign(tenants, channel, 0, rate=rate)
    recipient_list = campaign.recipient_lists.get()
    addresses = [
        f"+1212555{i:04d}" if channel == Channel.SMS else f"p{i}@example.com" for i in range(n)
    ]
    contacts = Contact.objects.bulk_create(
        Contact(org=tenants.org, address=a, name="Ana", timezone="UTC") for a in addresses
    )
    Message.objects.bulk_create(
        Message(
            org=tenants.org,
            campaign=campaign,
            recipient_list=recipient_list,
            contact=contact,
            address=contact.address,
            name=contact.name,
            timezone="UTC",
            line=line,
        )
        for line, contact in enumerate(contacts, start=2)
    )
    campaign_run(campaign=campaign, user=tenants.admin)
    while dispatch_tick(timezone.now(), send=lambda ids: send_batch(ids)).released:
        pass
    assert set(sandbox.requests_per_message().values()) == {1}
    arrivals = [r["at"] for r in sandbox.received for _ in r["message_ids"]]
    assert len(arrivals) == n
    # Counted at the sandbox's own timestamps, every window [t, t + 1) of them.
    assert_provider_kept_rate(arrivals, rate)


def test_a_slow_provider_is_not_waited_on_message_by_message_yet_the_throttle_holds(
    tenants, sandbox
):
    # Twilio answers in ~150 ms: a worker that waited for each answer before taking the next
    # slot would send a handful a second whatever the sender's rate.
    sandbox.configure(fault_mode="slow", slow_seconds=0.3, delivered_ratio=1.0)
    campaign = make_campaign(tenants, Channel.SMS, 40, rate=20)
    campaign_run(campaign=campaign, user=tenants.admin)
    run_until_done(campaign, sandbox)

    received = sorted(r["at"] for r in sandbox.received)
    assert set(sandbox.requests_per_message().values()) == {1} and len(received) == 40
    # Sent while an earlier request still waited for its answer: none if sent one by one.
    overlapping = sum(1 for before, at in pairwise(received) if at < before + 0.3)
    assert overlapping >= 20, overlapping
    assert_provider_kept_rate(received, 20)
    assert set(Message.objects.values_list("status", flat=True)) == {MessageStatus.DELIVERED}


def test_the_embedded_worker_ticks_and_sends_through_the_ready_queue(tenants, sandbox, settings):
    # The embedded run: no separate worker, the tick's sending task runs in the same process.
    from django.core.management import call_command

    settings.CELERY_TASK_ALWAYS_EAGER = True
    sandbox.configure(stop_reply_ratio=0.0, delivered_ratio=1.0)
    campaign = make_campaign(tenants, Channel.SMS, 4, rate=50)
    campaign_run(campaign=campaign, user=tenants.admin)
    # The first tick starts the list, a later one claims and sends.
    call_command("embedded_worker", "--ticks", "6")
    assert sandbox.wait_idle(30)
    assert set(sandbox.requests_per_message().values()) == {1}
    sent = Message.objects.filter(campaign=campaign, provider_id__gt="")
    assert sent.count() == 4
