"""The re-check at the moment of sending: a claim that may no longer go never reaches the provider.

A tick claims at one instant; the worker sends at a later one (driven here through the clock the
tick hands its batches, as `dispatch --once --now` does). Whatever changed in between — the
window closed, a Pause, a Stop, a STOP reply — is seen right before the request.
"""

from datetime import UTC, datetime, timedelta

import pytest

from campaigns.models import Channel, Status
from campaigns.services import campaign_pause, campaign_resume, campaign_stop
from delivery.clock import Clock
from delivery.dispatch import claim_lease, dispatch_tick
from delivery.models import Message, MessageStatus
from delivery.sending import send_batch
from delivery.services import suppression_add
from delivery.throttle import LocalThrottle, Slot
from recipients.models import ListStatus
from recipients.services import recipient_list_stop
from tests.factories import CampaignFactory, MessageFactory, RecipientListFactory, SmsSenderFactory

pytestmark = pytest.mark.django_db(transaction=True)

# Tuesday 2026-03-03; the window closes at 15:35:00 in the recipients' zone (UTC).
CLAIMED_AT = datetime(2026, 3, 3, 15, 34, 21, tzinfo=UTC)
UNTIL_1535 = {str(d): ["09:00", "15:35"] for d in range(5)}


@pytest.fixture(autouse=True)
def _callbacks_posted(sandbox):
    # The sandbox's callbacks must have reached the live server before the database is emptied.
    yield
    assert sandbox.wait_idle(30)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def running_campaign(tenants, *, channel: str = Channel.SMS, n: int = 3):
    campaign = CampaignFactory(
        org=tenants.org, channel=channel, schedule=UNTIL_1535, status=Status.IN_PROGRESS
    )
    if channel == Channel.SMS:
        campaign.sender = SmsSenderFactory(org=tenants.org, rate_limit=50)
        campaign.save()
    recipient_list = RecipientListFactory(
        campaign=campaign, start_at=utc(2026, 3, 1), status=ListStatus.SCHEDULED
    )
    for i in range(n):
        address = f"+1212555{i:04d}" if channel == Channel.SMS else f"p{i}@example.com"
        MessageFactory(
            recipient_list=recipient_list,
            timezone="UTC",
            eligible_at=recipient_list.start_at,
            address=address,
            contact__address=address,
        )
    return campaign


def claim_at(now: datetime) -> list[int]:
    batches: list[list[int]] = []
    dispatch_tick(now, send=batches.append)
    return [i for batch in batches for i in batch]


def send_at(ids: list[int], now: datetime, **kw):
    return send_batch(ids, clock=Clock.at(now), throttle=kw.pop("throttle", LocalThrottle()), **kw)


def statuses(campaign) -> set[str]:
    return set(Message.objects.filter(campaign=campaign).values_list("status", flat=True))


@pytest.mark.parametrize("channel", [Channel.SMS, Channel.EMAIL])
def test_it_sends_nothing_after_the_close_and_queues_the_batch_for_the_next_opening(
    tenants, sandbox, channel
):
    campaign = running_campaign(tenants, channel=channel)
    ids = claim_at(CLAIMED_AT)
    assert len(ids) == 3
    # The worker gets to the batch 22 s after the window closed.
    report = send_at(ids, utc(2026, 3, 3, 15, 35, 22))
    assert report.handed == 0 and sandbox.received == []
    messages = Message.objects.filter(campaign=campaign)
    assert statuses(campaign) == {MessageStatus.QUEUED}
    # Wednesday's window opens at 09:00; the claim's lease and hand-over are gone.
    assert {m.eligible_at for m in messages} == {utc(2026, 3, 4, 9)}
    assert {(m.lease_until, m.handed_at, m.attempts) for m in messages} == {(None, None, 0)}
    # And the next opening releases and sends them: on a busy machine a request can miss its
    # slot and wait for a later tick, so ticks go on (bounded) until none is left to send.
    at = utc(2026, 3, 4, 9)
    ids_sent = claim_at(at)
    assert len(ids_sent) == 3
    for _ in range(20):
        send_at(ids_sent, at + timedelta(seconds=1))
        if not Message.objects.filter(campaign=campaign, status__in=["queued", "sending"]).exists():
            break
        at += timedelta(seconds=10)
        ids_sent = claim_at(at)
    assert sorted(sandbox.requests_per_message().values()) == [1, 1, 1]


def test_a_batch_sent_before_the_close_goes(tenants, sandbox):
    running_campaign(tenants)
    ids = claim_at(CLAIMED_AT)
    assert send_at(ids, utc(2026, 3, 3, 15, 34, 30)).handed == 3
    assert set(sandbox.requests_per_message()) == set(ids)


def test_pause_after_the_claim_sends_nothing_and_resume_releases_the_batch(tenants, sandbox):
    campaign = running_campaign(tenants)
    ids = claim_at(CLAIMED_AT)
    campaign_pause(campaign=campaign, user=tenants.admin)
    assert send_at(ids, utc(2026, 3, 3, 15, 34, 25)).handed == 0
    assert sandbox.received == []
    assert statuses(campaign) == {MessageStatus.QUEUED}
    # Paused: the tick releases nothing.
    assert claim_at(utc(2026, 3, 3, 15, 34, 30)) == []
    campaign.refresh_from_db()
    campaign_resume(campaign=campaign, user=tenants.admin)
    again = claim_at(utc(2026, 3, 3, 15, 34, 40))
    assert sorted(again) == sorted(ids)
    assert send_at(again, utc(2026, 3, 3, 15, 34, 41)).handed == 3
    assert set(sandbox.requests_per_message().values()) == {1}


def test_stop_after_the_claim_cancels_the_batch(tenants, sandbox):
    campaign = running_campaign(tenants)
    ids = claim_at(CLAIMED_AT)
    campaign_stop(campaign=campaign, user=tenants.admin)
    assert send_at(ids, utc(2026, 3, 3, 15, 34, 25)).handed == 0
    assert sandbox.received == []
    assert statuses(campaign) == {MessageStatus.CANCELLED}
    assert not Message.objects.filter(campaign=campaign, final_at__isnull=True).exists()


def test_stopping_the_list_after_the_claim_cancels_its_messages(tenants, sandbox):
    campaign = running_campaign(tenants)
    ids = claim_at(CLAIMED_AT)
    recipient_list_stop(recipient_list=campaign.recipient_lists.get(), user=tenants.admin)
    assert send_at(ids, utc(2026, 3, 3, 15, 34, 25)).handed == 0
    assert sandbox.received == []
    assert statuses(campaign) == {MessageStatus.CANCELLED}


def test_a_list_end_passed_after_the_claim_sends_nothing(tenants, sandbox):
    campaign = running_campaign(tenants)
    ids = claim_at(CLAIMED_AT)
    campaign.recipient_lists.update(end_at=utc(2026, 3, 3, 15, 34, 24))
    assert send_at(ids, utc(2026, 3, 3, 15, 34, 25)).handed == 0
    assert sandbox.received == []
    # Queued until the list's end, which the next tick finds passed.
    claim_at(utc(2026, 3, 3, 15, 34, 26))
    assert statuses(campaign) == {MessageStatus.NOT_CONTACTED}


def test_an_opt_out_after_the_claim_is_not_sent(tenants, sandbox):
    running_campaign(tenants)
    ids = claim_at(CLAIMED_AT)
    suppression_add(org=tenants.org, address="+12125550001", reason="stop_reply")
    assert send_at(ids, utc(2026, 3, 3, 15, 34, 25)).handed == 2
    assert "+12125550001" not in {to for r in sandbox.received for to in r["to"]}
    assert Message.objects.get(address="+12125550001").status == MessageStatus.OPTED_OUT


class MissesItsFirstSlot(LocalThrottle):
    """A worker held up past its first slot's close (a loaded machine): before getting ready for
    it (`closes_after` < 0), or once handed over, as the request would start (0)."""

    def __init__(self, closes_after: float) -> None:
        super().__init__()
        self.closes_after, self.missed = closes_after, False

    def take(self, *args, **kwargs) -> Slot:
        slot = super().take(*args, **kwargs)
        if self.missed:
            return slot
        self.missed = True
        return Slot(slot.opens, slot.opens + self.closes_after)


@pytest.mark.parametrize("closes_after", [-1.0, 0.0])
@pytest.mark.parametrize("channel", [Channel.SMS, Channel.EMAIL])
def test_a_request_that_misses_its_slot_is_not_sent_then_and_goes_once_in_another(
    tenants, sandbox, channel, closes_after
):
    campaign = running_campaign(tenants, channel=channel)
    ids = claim_at(CLAIMED_AT)
    throttle = MissesItsFirstSlot(closes_after)
    report = send_at(ids, utc(2026, 3, 3, 15, 34, 25), throttle=throttle)
    assert report.results["not_sent"] >= 1 and report.handed == 3
    assert set(sandbox.requests_per_message().values()) == {1}
    assert set(Message.objects.filter(campaign=campaign).values_list("attempts", flat=True)) == {1}


class MissesItsFirstSlotThenDies(MissesItsFirstSlot):
    """The first slot closes before its request; the worker dies asking for the next one."""

    def take(self, *args, **kwargs) -> Slot:
        if self.missed:
            raise WorkerDied
        return super().take(*args, **kwargs)


class WorkerDied(Exception):
    pass


def test_messages_handed_back_after_a_missed_slot_carry_a_claim_lease_not_a_hand_over_lease(
    tenants, sandbox
):
    campaign = running_campaign(tenants, channel=Channel.SMS)
    ids = claim_at(CLAIMED_AT)
    sent_at = utc(2026, 3, 3, 15, 34, 25)
    with pytest.raises(WorkerDied):
        send_at(ids, sent_at, throttle=MissesItsFirstSlotThenDies(0.0))
    handed_back = Message.objects.filter(campaign=campaign, status="sending", handed_at=None)
    assert handed_back.exists()
    # Should the worker die here, a dead claim goes back within about a minute, not five.
    latest = sent_at + claim_lease(campaign.sender.messages_per_second) + timedelta(seconds=30)
    assert all(m.lease_until <= latest for m in handed_back)
