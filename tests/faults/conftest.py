"""Helpers for the fault suite: a running campaign, and the checks every fault test ends with."""

import time
from collections import Counter

import pytest
from django.db.models import Count, Sum
from django.utils import timezone

from campaigns.models import Campaign, Channel, Status
from campaigns.services import campaign_run
from delivery.models import FINAL_STATUSES, Message, MessageCount, MessageStatus
from tests.conftest import assert_provider_kept_rate
from tests.factories import (
    CampaignFactory,
    EmailSenderFactory,
    MessageFactory,
    RecipientListFactory,
    SmsSenderFactory,
)

ALL_WEEK = {str(d): ["00:00", "23:59"] for d in range(7)}
# How much later than its request's start the sandbox's timestamp may be, beyond the throttle's
# own 10 ms, for a worker's request stamped in this busy test process: once in fifteen runs of
# the suite under stress-ng, six requests whose slots spanned 1.025 s were stamped within 1 s.
SANDBOX_LAG = 0.05
SETTLED = FINAL_STATUSES | {MessageStatus.UNKNOWN}


def start_campaign(
    tenants, *, channel: str = Channel.SMS, n: int = 100, rate: int = 50
) -> Campaign:
    tenants.org.quiet_hours = False
    tenants.org.save()
    sender_factory = SmsSenderFactory if channel == Channel.SMS else EmailSenderFactory
    campaign = CampaignFactory(
        org=tenants.org,
        channel=channel,
        schedule=ALL_WEEK,
        sender=sender_factory(org=tenants.org, rate_limit=rate),
    )
    recipient_list = RecipientListFactory(campaign=campaign, start_at=timezone.now())
    for i in range(n):
        address = f"+1212555{i:04d}" if channel == Channel.SMS else f"p{i}@example.com"
        MessageFactory(recipient_list=recipient_list, contact__address=address)
    campaign_run(campaign=campaign, user=tenants.admin)
    return campaign


def wait_until_settled(campaign: Campaign, *, timeout: float = 90) -> None:
    """Waits until no message is queued or sending (and the campaign left In Progress)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = Message.objects.filter(
            campaign=campaign, status__in=[MessageStatus.QUEUED, MessageStatus.SENDING]
        ).exists()
        campaign.refresh_from_db()
        if not pending and campaign.status != Status.IN_PROGRESS:
            return
        time.sleep(0.5)
    counts = dict(
        Message.objects.filter(campaign=campaign).values_list("status").annotate(n=Count("id"))
    )
    pytest.fail(f"not settled after {timeout}s: {campaign.status} {counts}")


def assert_invariants(campaign: Campaign, sandbox, *, rate: float | None = None) -> None:
    """Every fault test ends here: nothing lost, nothing twice, counters exact, throttle kept."""
    statuses = Counter(Message.objects.filter(campaign=campaign).values_list("status", flat=True))
    assert set(statuses) <= SETTLED | {MessageStatus.SENT}, statuses
    ours = set(Message.objects.filter(campaign=campaign).values_list("id", flat=True))
    twice = {mid: n for mid, n in accepted_per_message(sandbox).items() if mid in ours and n > 1}
    assert not twice, f"accepted by the provider more than once: {twice}"
    counted = dict(
        MessageCount.objects.filter(campaign=campaign)
        .values_list("status")
        .annotate(n=Sum("count"))
        .order_by()
    )
    assert {s: n for s, n in counted.items() if n} == dict(statuses)
    if rate is not None:
        arrivals = (record["at"] for record in sandbox.received for _ in record["message_ids"])
        assert_provider_kept_rate(arrivals, rate, lag=SANDBOX_LAG)


def accepted_per_message(sandbox) -> Counter:
    """Requests the provider accepted (or may have: timed out), per message id."""
    counts: Counter = Counter()
    for record in sandbox.received:
        if record["status"] in (0, 201, 202):
            counts.update(record["message_ids"])
    return counts
