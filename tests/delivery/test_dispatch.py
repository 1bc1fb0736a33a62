"""The dispatcher's rules, one tick at a time at chosen instants (batches collected, not sent)."""

import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.models import ActionNotAllowed, ActivityEntry, Campaign, Channel, Status
from campaigns.services import (
    campaign_pause,
    campaign_resume,
    campaign_retry,
    campaign_run,
    campaign_schedule,
    campaign_stop,
)
from delivery.dispatch import CLAIM_AHEAD_TICKS, claim, dispatch_tick, expire_leases
from delivery.models import Message, MessageStatus, Suppression
from delivery.selectors import lists_progress
from delivery.sending import hand_over
from delivery.services import suppression_add
from recipients.models import ListStatus, RecipientList
from recipients.services import recipient_list_stop
from tests.factories import (
    CampaignFactory,
    MessageFactory,
    OrganizationFactory,
    RecipientListFactory,
)

ALL_WEEK = {str(d): ["00:00", "23:59"] for d in range(7)}
WEEKDAYS_9_17 = {str(d): ["09:00", "17:00"] for d in range(5)}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


class Collect:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __call__(self, ids: list[int]) -> None:
        self.batches.append(ids)

    @property
    def ids(self) -> set[int]:
        return {i for batch in self.batches for i in batch}


@pytest.fixture
def campaign(tenants):
    campaign = CampaignFactory(org=tenants.org, schedule=WEEKDAYS_9_17, status=Status.IN_PROGRESS)
    return campaign


def make_list(campaign, *, start, end=None, **kw):
    return RecipientListFactory(
        campaign=campaign, start_at=start, end_at=end, status=ListStatus.SCHEDULED, **kw
    )


def queue(recipient_list, tz, *, address=None, n=1):
    return [
        MessageFactory(
            recipient_list=recipient_list,
            timezone=tz,
            eligible_at=recipient_list.start_at,
            **({"address": address, "contact__address": address} if address else {}),
        )
        for _ in range(n)
    ]


def tick(now, **kw):
    sent = Collect()
    report = dispatch_tick(now, send=sent, **kw)
    return sent, report


def status_of(message):
    message.refresh_from_db()
    return message.status


# ---------------------------------------------------------------- the window


@pytest.mark.parametrize(
    ("tz", "now", "released"),
    [
        # Monday 2026-03-02: 09:00 New York is 14:00 UTC.
        ("America/New_York", utc(2026, 3, 2, 13, 59), False),
        ("America/New_York", utc(2026, 3, 2, 14, 0), True),
        ("America/New_York", utc(2026, 3, 2, 21, 59), True),
        ("America/New_York", utc(2026, 3, 2, 22, 0), False),
        # Kathmandu is UTC+5:45: 09:00 local is 03:15 UTC.
        ("Asia/Kathmandu", utc(2026, 3, 2, 3, 14), False),
        ("Asia/Kathmandu", utc(2026, 3, 2, 3, 15), True),
        # Chatham in March is UTC+13:45: Monday 09:00 local is Sunday 19:15 UTC.
        ("Pacific/Chatham", utc(2026, 3, 1, 19, 15), True),
        ("Pacific/Chatham", utc(2026, 3, 1, 19, 14), False),
        # Saturday is Closed, whatever the hour.
        ("Europe/London", utc(2026, 3, 7, 12, 0), False),
    ],
)
def test_it_releases_only_inside_the_recipients_window(campaign, tz, now, released):
    campaign.org.quiet_hours = False
    campaign.org.save()
    recipient_list = make_list(campaign, start=utc(2026, 2, 1))
    [message] = queue(recipient_list, tz)
    sent, _ = tick(now)
    assert (message.pk in sent.ids) is released
    assert status_of(message) == (MessageStatus.SENDING if released else MessageStatus.QUEUED)


def test_it_follows_dst_in_new_york(campaign):
    campaign.org.quiet_hours = False
    campaign.org.save()
    recipient_list = make_list(campaign, start=utc(2026, 3, 1))
    [message] = queue(recipient_list, "America/New_York")
    # Monday 2026-03-09, the day after spring-forward: 09:00 EDT is 13:00 UTC.
    sent, _ = tick(utc(2026, 3, 9, 13, 0))
    assert message.pk in sent.ids


def test_it_rolls_a_closed_window_over_to_the_next_open_one(campaign):
    campaign.org.quiet_hours = False
    campaign.org.save()
    recipient_list = make_list(campaign, start=utc(2026, 3, 6))
    [message] = queue(recipient_list, "Europe/London")
    # Friday 18:00 London: closed; the next window is Monday 09:00.
    sent, report = tick(utc(2026, 3, 6, 18, 0))
    assert not sent.ids and report.rescheduled == 1
    message.refresh_from_db()
    assert message.eligible_at == utc(2026, 3, 9, 9, 0)
    # Ticks before it do not even look at the message.
    assert tick(utc(2026, 3, 8, 12, 0))[1].rescheduled == 0
    assert message.pk in tick(utc(2026, 3, 9, 9, 0))[0].ids


def test_it_waits_for_the_lists_start(campaign):
    recipient_list = make_list(campaign, start=utc(2026, 3, 3, 15, 0))
    [message] = queue(recipient_list, "America/New_York")
    assert not tick(utc(2026, 3, 3, 14, 59))[0].ids
    recipient_list.refresh_from_db()
    assert recipient_list.status == ListStatus.SCHEDULED
    assert message.pk in tick(utc(2026, 3, 3, 15, 0))[0].ids
    recipient_list.refresh_from_db()
    assert recipient_list.status == ListStatus.IN_PROGRESS


def test_it_marks_unsent_messages_not_contacted_when_the_list_ends(campaign):
    recipient_list = make_list(campaign, start=utc(2026, 3, 6, 12), end=utc(2026, 3, 7, 12))
    [message] = queue(recipient_list, "America/New_York")
    tick(utc(2026, 3, 6, 23, 0))  # after hours on Friday; next window is after the end
    tick(utc(2026, 3, 7, 12, 0))
    assert status_of(message) == MessageStatus.NOT_CONTACTED
    recipient_list.refresh_from_db()
    assert recipient_list.status == ListStatus.COMPLETED


def test_it_applies_legal_quiet_hours_to_us_numbers(campaign):
    campaign.schedule = ALL_WEEK
    campaign.save()
    recipient_list = make_list(campaign, start=utc(2026, 3, 1))
    [new_york] = queue(recipient_list, "America/New_York", address="+12125550100")
    [florida] = queue(recipient_list, "America/New_York", address="+13055550100")
    [london] = queue(recipient_list, "America/New_York", address="+447911123456")
    # 20:30 in New York (EST, UTC-5): past Florida's 20:00, inside the general 21:00.
    sent, _ = tick(utc(2026, 3, 3, 1, 30))
    assert new_york.pk in sent.ids and london.pk in sent.ids
    assert florida.pk not in sent.ids
    # 07:30: before 8:00 for every US number.
    campaign.org.quiet_hours = True
    [early] = queue(recipient_list, "America/New_York", address="+12125550101")
    assert early.pk not in tick(utc(2026, 3, 3, 12, 30))[0].ids


def test_it_applies_the_crtc_hours_to_canada_and_florida_hours_to_its_new_area_codes(campaign):
    campaign.schedule = ALL_WEEK
    campaign.save()
    campaign.sender.rate_limit = 100
    campaign.sender.save()
    recipient_list = make_list(campaign, start=utc(2026, 3, 1))
    [toronto] = queue(recipient_list, "America/Toronto", address="+14165550100")
    [palm_beach] = queue(recipient_list, "America/New_York", address="+17285550100")
    # Friday 20:30 EST: inside Canada's weekday 21:30, past Florida's 20:00.
    released = tick(utc(2026, 3, 7, 1, 30))[0].ids
    assert toronto.pk in released and palm_beach.pk not in released
    # Saturday 09:30 EST: Florida has opened at 8:00; Canada's weekend opens at 10:00.
    [ottawa] = queue(recipient_list, "America/Toronto", address="+16135550100")
    released = tick(utc(2026, 3, 7, 14, 30))[0].ids
    assert palm_beach.pk in released and ottawa.pk not in released
    assert ottawa.pk in tick(utc(2026, 3, 7, 15))[0].ids


def test_quiet_hours_can_be_turned_off_per_organization(campaign):
    campaign.schedule = ALL_WEEK
    campaign.save()
    campaign.org.quiet_hours = False
    campaign.org.save()
    recipient_list = make_list(campaign, start=utc(2026, 3, 1))
    [florida] = queue(recipient_list, "America/New_York", address="+13055550100")
    assert florida.pk in tick(utc(2026, 3, 3, 2, 30))[0].ids


# ---------------------------------------------------------------- throttle budget, suppression


def test_it_claims_at_most_two_ticks_of_the_senders_rate(campaign, settings):
    # Two: one tick's worth waits in the ready queue, so a late tick leaves no sender idle.
    assert CLAIM_AHEAD_TICKS == 2
    settings.DISPATCH_TICK_SECONDS = 2
    campaign.sender.rate_limit = 5
    campaign.sender.save()
    recipient_list = make_list(campaign, start=utc(2026, 3, 1))
    queue(recipient_list, "UTC", n=30)
    campaign.schedule = ALL_WEEK
    campaign.save()
    sent, _ = tick(utc(2026, 3, 3, 12))
    assert len(sent.ids) == 20
    # Claims not yet handed over count against the next tick's budget.
    assert not tick(utc(2026, 3, 3, 12, 0, 2))[0].ids


def test_it_never_claims_a_suppressed_recipient(campaign):
    campaign.schedule = ALL_WEEK
    campaign.save()
    recipient_list = make_list(campaign, start=utc(2026, 3, 1))
    [message] = queue(recipient_list, "UTC", address="+12125550177")
    Suppression.objects.create(org=campaign.org, address="+12125550177", reason="manual")
    sent, report = tick(utc(2026, 3, 3, 12))
    assert not sent.ids and report.opted_out == 1
    assert status_of(message) == MessageStatus.OPTED_OUT


def test_a_stop_mid_campaign_stops_the_next_message(campaign):
    campaign.schedule = ALL_WEEK
    campaign.save()
    recipient_list = make_list(campaign, start=utc(2026, 3, 1))
    [message] = queue(recipient_list, "UTC", address="+12125550178")
    suppression_add(org=campaign.org, address="+12125550178", reason="stop_reply")
    assert status_of(message) == MessageStatus.OPTED_OUT
    assert not tick(utc(2026, 3, 3, 12))[0].ids


def test_two_ticks_never_claim_the_same_message(campaign):
    campaign.schedule = ALL_WEEK
    campaign.save()
    recipient_list = make_list(campaign, start=utc(2026, 3, 1))
    queue(recipient_list, "UTC", n=20)
    first, _ = tick(utc(2026, 3, 3, 12))
    second, _ = tick(utc(2026, 3, 3, 12))
    assert not first.ids & second.ids


def test_an_expired_claim_is_released_again_only_if_it_was_never_handed_over(campaign):
    recipient_list = make_list(campaign, start=utc(2026, 3, 1))
    never_handed, handed = queue(recipient_list, "UTC", n=2)
    past = utc(2026, 3, 3, 12)
    Message.objects.filter(pk=never_handed.pk).update(status="sending", lease_until=past)
    Message.objects.filter(pk=handed.pk).update(
        status="sending", lease_until=past, handed_at=past - timedelta(minutes=1)
    )
    assert expire_leases(past + timedelta(seconds=1)) == 2
    assert status_of(never_handed) == MessageStatus.QUEUED
    assert status_of(handed) == MessageStatus.UNKNOWN


def test_a_message_handed_over_late_in_its_batch_gets_the_whole_lease_for_its_call(
    campaign, settings
):
    # Claimed with the batch, handed over just before the claim's lease ran out: the provider
    # call must not be declared "unknown" while it is still in flight.
    settings.DISPATCH_LEASE_SECONDS = 60
    settings.DISPATCH_CLAIM_LEASE_SECONDS = 60
    recipient_list = make_list(campaign, start=utc(2026, 3, 1))
    # Handed over only while its list is In Progress, as a tick leaves it before claiming.
    RecipientList.objects.filter(pk=recipient_list.pk).update(status=ListStatus.IN_PROGRESS)
    [message] = queue(recipient_list, "UTC")
    claimed_at = utc(2026, 3, 3, 12)
    assert claim([message.pk], now=claimed_at) == [message.pk]
    assert hand_over([message.pk], now=claimed_at + timedelta(seconds=59)) == {message.pk}
    expire_leases(claimed_at + timedelta(seconds=61))
    assert status_of(message) == MessageStatus.SENDING
    expire_leases(claimed_at + timedelta(seconds=120))
    assert status_of(message) == MessageStatus.UNKNOWN


def test_it_assumes_an_old_accepted_sms_delivered(campaign):
    recipient_list = make_list(campaign, start=utc(2026, 3, 1))
    [message] = queue(recipient_list, "UTC")
    Message.objects.filter(pk=message.pk).update(status="sent", sent_at=utc(2026, 3, 2, 12))
    tick(utc(2026, 3, 3, 11, 59))
    assert status_of(message) == MessageStatus.SENT
    tick(utc(2026, 3, 3, 12, 1))
    assert status_of(message) == MessageStatus.ASSUMED_DELIVERED


# ---------------------------------------------------------------- lifecycle


@pytest.fixture
def ready(tenants):
    tenants.org.quiet_hours = False
    tenants.org.save()

    def make(channel=Channel.SMS, **kw):
        campaign = CampaignFactory(org=tenants.org, channel=channel, schedule=ALL_WEEK, **kw)
        make_list(campaign, start=utc(2026, 3, 1))
        return campaign

    return make


def test_run_refuses_a_second_campaign_of_the_same_channel_naming_the_first(tenants, ready):
    first, second = ready(name="Flu shots"), ready(name="Reminders")
    campaign_run(campaign=first, user=tenants.admin)
    with pytest.raises(ActionNotAllowed, match="“Flu shots” is already sending SMS"):
        campaign_run(campaign=second, user=tenants.admin)
    assert Campaign.objects.get(pk=second.pk).status == Status.READY
    # The other channel runs side by side.
    campaign_run(campaign=ready(channel=Channel.EMAIL), user=tenants.admin)


def test_the_database_itself_refuses_two_running_campaigns_per_channel(tenants, ready):
    first, second = ready(), ready()
    Campaign.objects.filter(pk=first.pk).update(status=Status.PAUSED)
    with pytest.raises(IntegrityError):
        Campaign.objects.filter(pk=second.pk).update(status=Status.IN_PROGRESS)


def test_run_needs_a_recipient_list(tenants):
    campaign = CampaignFactory(org=tenants.org)
    with pytest.raises(ActionNotAllowed, match="Add a recipient list"):
        campaign_run(campaign=campaign, user=tenants.admin)


def test_a_scheduled_campaign_waits_for_the_channel_then_starts(tenants, ready):
    holder, waiting = ready(name="Holder"), ready(name="Waiting")
    queue(holder.recipient_lists.get(), "UTC")
    queue(waiting.recipient_lists.get(), "UTC")
    campaign_run(campaign=holder, user=tenants.admin)
    campaign_schedule(campaign=waiting, user=tenants.admin, run_at=utc(2026, 3, 3, 12))
    tick(utc(2026, 3, 3, 12, 5))
    assert Campaign.objects.get(pk=waiting.pk).status == Status.SCHEDULED
    campaign_stop(campaign=Campaign.objects.get(pk=holder.pk), user=tenants.admin)
    _, report = tick(utc(2026, 3, 3, 12, 6))
    assert report.started == ["Waiting"]
    assert Campaign.objects.get(pk=waiting.pk).status == Status.IN_PROGRESS


def test_stop_cancels_only_unsent_messages_and_frees_the_channel(tenants, ready):
    campaign = ready()
    recipient_list = campaign.recipient_lists.get()
    queued, handed = queue(recipient_list, "UTC", n=2)
    Message.objects.filter(pk=handed.pk).update(status="sent")
    campaign_run(campaign=campaign, user=tenants.admin)
    assert campaign_stop(campaign=campaign, user=tenants.admin) == 1
    assert (status_of(queued), status_of(handed)) == ("cancelled", "sent")
    recipient_list.refresh_from_db()
    assert recipient_list.status == ListStatus.STOPPED
    campaign_run(campaign=ready(), user=tenants.admin)  # the channel is free


def test_pause_holds_releases_and_resume_continues(tenants, ready):
    campaign = ready()
    [message] = queue(campaign.recipient_lists.get(), "UTC")
    campaign_run(campaign=campaign, user=tenants.admin)
    campaign_pause(campaign=campaign, user=tenants.admin)
    assert not tick(utc(2026, 3, 3, 12))[0].ids
    assert status_of(message) == MessageStatus.QUEUED
    with pytest.raises(ActionNotAllowed):
        campaign_run(campaign=ready(), user=tenants.admin)  # a paused campaign holds the channel
    campaign_resume(campaign=campaign, user=tenants.admin)
    assert message.pk in tick(utc(2026, 3, 3, 12))[0].ids


@pytest.mark.parametrize(
    ("statuses", "channel", "expected"),
    [
        (["delivered", "assumed_delivered"], Channel.SMS, Status.COMPLETE),
        (["delivered", "failed"], Channel.SMS, Status.COMPLETE_WITH_ERRORS),
        (["delivered", "undelivered"], Channel.SMS, Status.COMPLETE_WITH_ERRORS),
        (["delivered", "deferred"], Channel.EMAIL, Status.ACTIVE_RETRIES),
        (["delivered", "opted_out"], Channel.SMS, Status.COMPLETE),
    ],
)
def test_it_completes_a_campaign_by_its_messages(tenants, ready, statuses, channel, expected):
    campaign = ready(channel=channel)
    recipient_list = campaign.recipient_lists.get()
    for message, status in zip(
        queue(recipient_list, "UTC", n=len(statuses)), statuses, strict=True
    ):
        Message.objects.filter(pk=message.pk).update(status=status)
    campaign_run(campaign=campaign, user=tenants.admin)
    _, report = tick(utc(2026, 3, 3, 12))
    assert Campaign.objects.get(pk=campaign.pk).status == expected
    assert report.finished == [campaign.name]
    recipient_list.refresh_from_db()
    assert recipient_list.status == ListStatus.COMPLETED
    sent, total = lists_progress([recipient_list.pk])[recipient_list.pk]
    assert (sent, total) == (len([s for s in statuses if s != "opted_out"]), len(statuses))
    assert ActivityEntry.objects.filter(campaign=campaign, verb="finished").exists()


def test_a_list_with_messages_awaiting_their_status_stays_in_progress(tenants, ready):
    campaign = ready()
    [message] = queue(campaign.recipient_lists.get(), "UTC")
    Message.objects.filter(pk=message.pk).update(status="sent", sent_at=utc(2026, 3, 3, 11))
    campaign_run(campaign=campaign, user=tenants.admin)
    tick(utc(2026, 3, 3, 12))
    assert Campaign.objects.get(pk=campaign.pk).status == Status.IN_PROGRESS


def test_retry_queues_failed_messages_but_never_opted_out_recipients(tenants, ready):
    campaign = ready()
    failed, failed_opted_out, unknown = queue(campaign.recipient_lists.get(), "UTC", n=3)
    Message.objects.filter(pk__in=[failed.pk, failed_opted_out.pk]).update(status="failed")
    Message.objects.filter(pk=unknown.pk).update(status="unknown")
    Suppression.objects.create(org=campaign.org, address=failed_opted_out.address, reason="manual")
    Campaign.objects.filter(pk=campaign.pk).update(status=Status.COMPLETE_WITH_ERRORS)
    campaign.refresh_from_db()
    assert campaign_retry(campaign=campaign, user=tenants.admin) == 1
    assert status_of(failed) == MessageStatus.QUEUED
    assert status_of(failed_opted_out) == MessageStatus.FAILED
    # "unknown" may have arrived: only an explicit retry of that one message resends it.
    assert status_of(unknown) == MessageStatus.UNKNOWN
    assert campaign.status == Status.IN_PROGRESS
    assert failed.pk in tick(timezone.now())[0].ids


def test_retry_one_message_by_id_stays_inside_the_campaign(tenants, ready):
    campaign, other = ready(), ready(channel=Channel.EMAIL)
    [mine] = queue(campaign.recipient_lists.get(), "UTC")
    [theirs] = queue(other.recipient_lists.get(), "UTC")
    Message.objects.update(status="failed")
    Campaign.objects.update(status=Status.COMPLETE_WITH_ERRORS)
    campaign.refresh_from_db()
    with pytest.raises(ActionNotAllowed, match="no failed messages"):
        campaign_retry(campaign=campaign, user=tenants.admin, message_ids=[theirs.pk])
    assert campaign_retry(campaign=campaign, user=tenants.admin, message_ids=[mine.pk]) == 1
    assert status_of(theirs) == MessageStatus.FAILED


# ---------------------------------------------------------------- after a worker crash


@pytest.fixture
def leases(settings):
    """A one-minute claim lease beside the five-minute hand-over lease, as deployed."""
    settings.DISPATCH_CLAIM_LEASE_SECONDS = 60
    settings.DISPATCH_LEASE_SECONDS = 300
    settings.DISPATCH_TICK_SECONDS = 2


def test_it_queues_a_claim_never_handed_over_again_within_about_a_minute(campaign, leases):
    campaign.schedule = ALL_WEEK
    campaign.save()
    [message] = queue(make_list(campaign, start=utc(2026, 3, 1)), "UTC")
    claimed_at = utc(2026, 3, 3, 12)
    assert message.pk in tick(claimed_at)[0].ids
    # Its worker died. The claim lease is a minute plus a tick of its 1/s sender.
    assert not tick(claimed_at + timedelta(seconds=61))[0].ids
    assert status_of(message) == MessageStatus.SENDING
    sent, report = tick(claimed_at + timedelta(seconds=63))
    assert report.expired == 1 and message.pk in sent.ids


def test_stale_claims_never_eat_the_senders_budget(campaign, leases):
    campaign.sender.rate_limit = 5
    campaign.sender.save()
    campaign.schedule = ALL_WEEK
    campaign.save()
    queue(make_list(campaign, start=utc(2026, 3, 1)), "UTC", n=30)
    claimed_at = utc(2026, 3, 3, 12)
    dead = tick(claimed_at)[0].ids
    assert len(dead) == 5 * 2 * CLAIM_AHEAD_TICKS
    # Live claims count against the budget until their lease runs out …
    assert not tick(claimed_at + timedelta(seconds=30))[0].ids
    # … then the dead worker's claims count no more: a whole tick's worth goes again.
    again = tick(claimed_at + timedelta(seconds=63))[0].ids
    assert len(again) == 5 * 2 * CLAIM_AHEAD_TICKS


def test_a_worker_handing_over_after_the_claim_lease_finds_nothing_to_hand_over(campaign, leases):
    recipient_list = make_list(campaign, start=utc(2026, 3, 1))
    RecipientList.objects.filter(pk=recipient_list.pk).update(status=ListStatus.IN_PROGRESS)
    [message] = queue(recipient_list, "UTC")
    claimed_at = utc(2026, 3, 3, 12)
    assert claim([message.pk], now=claimed_at) == [message.pk]
    assert hand_over([message.pk], now=claimed_at + timedelta(seconds=61)) == set()
    # The dispatcher's again: queued, and released once more.
    expire_leases(claimed_at + timedelta(seconds=61))
    assert status_of(message) == MessageStatus.QUEUED


def test_claims_orphaned_by_a_stop_end_cancelled_not_queued_forever(tenants, ready, leases):
    campaign = ready()
    orphans = queue(campaign.recipient_lists.get(), "UTC", n=2)
    campaign_run(campaign=campaign, user=tenants.admin)
    claimed_at = timezone.now()
    assert tick(claimed_at)[0].ids == {m.pk for m in orphans}
    # Their worker dies; then the campaign is stopped, which cancels what is still queued.
    assert campaign_stop(campaign=Campaign.objects.get(pk=campaign.pk), user=tenants.admin) == 0
    tick(claimed_at + timedelta(minutes=2))
    assert {status_of(m) for m in orphans} == {MessageStatus.CANCELLED}
    pending = [MessageStatus.QUEUED, MessageStatus.SENDING]
    assert not Message.objects.filter(campaign=campaign, status__in=pending).exists()


def test_claims_orphaned_in_a_stopped_list_end_cancelled_and_the_campaign_finishes(
    tenants, ready, leases
):
    campaign = ready()
    stopped = campaign.recipient_lists.get()
    [orphan] = queue(stopped, "UTC")
    [failed] = queue(make_list(campaign, start=utc(2026, 3, 1)), "UTC")
    Message.objects.filter(pk=failed.pk).update(status=MessageStatus.FAILED)
    campaign_run(campaign=campaign, user=tenants.admin)
    claimed_at = timezone.now()
    assert tick(claimed_at)[0].ids == {orphan.pk}
    recipient_list_stop(recipient_list=stopped, user=tenants.admin)
    tick(claimed_at + timedelta(minutes=2))
    assert status_of(orphan) == MessageStatus.CANCELLED
    # Nothing is left queued, so the campaign finishes, and retry and delete behave.
    campaign.refresh_from_db()
    assert campaign.status == Status.COMPLETE_WITH_ERRORS
    assert {"retry", "delete"} <= campaign.allowed_actions
    assert campaign_retry(campaign=campaign, user=tenants.admin) == 1
    assert failed.pk in tick(claimed_at + timedelta(minutes=3))[0].ids


def test_claims_orphaned_past_their_lists_end_are_not_contacted(campaign, leases):
    campaign.schedule = ALL_WEEK
    campaign.save()
    claimed_at = utc(2026, 3, 3, 12)
    recipient_list = make_list(
        campaign, start=utc(2026, 3, 1), end=claimed_at + timedelta(seconds=30)
    )
    [orphan] = queue(recipient_list, "UTC")
    assert orphan.pk in tick(claimed_at)[0].ids
    tick(claimed_at + timedelta(seconds=40))  # the list ends with the claim still out
    tick(claimed_at + timedelta(minutes=2))
    assert status_of(orphan) == MessageStatus.NOT_CONTACTED
    assert Campaign.objects.get(pk=campaign.pk).status == Status.COMPLETE


@pytest.mark.parametrize("now", ["9999-12-31T23:59:00-05:00", "0001-01-01T00:00:00Z"])
def test_the_dispatch_command_refuses_an_instant_outside_the_years_2000_to_2999(db, now):
    with pytest.raises(CommandError, match="Give a date between the years 2000 and 2999"):
        call_command("dispatch", "--once", "--now", now, stdout=io.StringIO())


def test_the_dispatch_command_prints_what_stopped_a_campaign(campaign):
    Campaign.objects.filter(pk=campaign.pk).update(schedule={"0": ["9am", "17:00"]})
    queue(make_list(campaign, start=utc(2026, 3, 1)), "UTC")
    out = io.StringIO()
    call_command("dispatch", "--once", "--now", "2026-03-02T12:00:00Z", stdout=out)
    assert f"error in campaign {campaign.pk}: ValueError" in out.getvalue()


def test_a_tick_costs_the_same_statements_for_two_running_campaigns_or_eight(db):
    """The tick claims for every running campaign together: its statements do not grow with
    the number of campaigns (bench/tick_bench.py times 200)."""

    def statements(n: int, at) -> int:
        for _ in range(n):
            # One organization each: an organization runs one SMS campaign at a time.
            campaign = CampaignFactory(
                org=OrganizationFactory(), schedule=ALL_WEEK, status=Status.IN_PROGRESS
            )
            queue(make_list(campaign, start=utc(2026, 3, 1)), "UTC", n=3)
        dispatch_tick(at, send=lambda ids: None)  # lists start
        Message.objects.filter(status=MessageStatus.SENDING).update(
            status=MessageStatus.QUEUED, lease_until=None
        )
        with CaptureQueriesContext(connection) as captured:
            report = dispatch_tick(at, send=lambda ids: None)
        assert len(report.released) == Campaign.objects.filter(status=Status.IN_PROGRESS).count()
        return len(captured)

    two = statements(2, utc(2026, 3, 3, 12))
    eight = statements(6, utc(2026, 3, 3, 12, 1))
    # SQLite has no LATERAL: there each campaign's due messages are one statement of their own.
    assert eight == two + (0 if connection.vendor == "postgresql" else 6)
