"""The dispatcher's tick: start due campaigns and lists, release due messages inside each
recipient's window, and finish what is done.

A tick reads only due rows: every queued message carries `eligible_at`, the earliest instant it
needs looking at, indexed for queued messages. Those outside their window are moved to their
next window, so a tick costs the same with ten thousand or ten million messages queued.
"""

import contextlib
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection, models, transaction
from django.db.models import Count, F, Q, QuerySet, Value
from django.db.models.functions import Coalesce, Substr
from django.utils import timezone

from campaigns.models import Campaign, Channel, Status
from campaigns.services import activity_record, campaign_start
from delivery import windows
from delivery.aggregates import grouped_while_unchanged
from delivery.clock import Clock
from delivery.lookups import ids_condition
from delivery.models import Message, MessageStatus
from delivery.ready import (
    Drainers,
    Entry,
    RedisReadyQueue,
    drain_seconds,
    get_ready_queue,
    pace_of,
)
from delivery.services import suppressed_addresses
from recipients.models import ListStatus, RecipientList

log = logging.getLogger(__name__)


def lease() -> timedelta:
    """The hand-over lease: a message handed to the provider whose result is not recorded within
    this becomes "unknown". Long enough for the slowest provider call."""
    return timedelta(seconds=settings.DISPATCH_LEASE_SECONDS)


def claim_lease(messages_per_second: float | None = None) -> timedelta:
    """The claim lease: a claim not handed over within this goes back to the queue, so a dead
    worker's claims wait about a minute, not the hand-over lease.

    A live worker hands a tick's claims over within a tick or two, or, for a sender slower than
    one message a tick, within one interval between its messages: that interval is added.
    """
    seconds = float(settings.DISPATCH_CLAIM_LEASE_SECONDS)
    if messages_per_second:
        seconds += max(tick_seconds(), 1 / messages_per_second)
    return timedelta(seconds=seconds)


# Statuses in which a message may still change on its own: a list with none of them is done.
PENDING = (MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.SENT)
FAILED = (MessageStatus.FAILED, MessageStatus.UNDELIVERED, MessageStatus.BOUNCED)
# Largest batch handed to one task: SendGrid takes 1,000 personalizations per request.
MAX_BATCH = {Channel.SMS: 200, Channel.EMAIL: 1000}

SendBatch = Callable[[list[int]], object]
# A unit of a tick's work: (Campaign, id) or (RecipientList, id).
Unit = tuple[type[models.Model], int]


@dataclass
class TickReport:
    now: datetime
    started: list[str] = field(default_factory=list)
    released: dict[str, int] = field(default_factory=dict)
    rescheduled: int = 0
    opted_out: int = 0
    expired: int = 0
    assumed_delivered: int = 0
    finished: list[str] = field(default_factory=list)
    # The units that failed this tick, with their first error, and those that worked.
    errors: dict[Unit | None, Exception] = field(default_factory=dict)
    worked: set[Unit] = field(default_factory=set)

    def fail(self, unit: Unit | None, error: Exception) -> None:
        self.errors.setdefault(unit, error)

    def lines(self) -> list[str]:
        out = [f"Tick at {self.now.isoformat()}"]
        out += [f"  started {name}" for name in self.started]
        out += [f"  {name}: released {n}" for name, n in self.released.items()]
        if not self.released:
            out.append("  nothing released")
        out += [f"  finished {name}" for name in self.finished]
        for label in ("rescheduled", "opted_out", "expired", "assumed_delivered"):
            if getattr(self, label):
                out.append(f"  {label.replace('_', ' ')}: {getattr(self, label)}")
        out += [f"  error in {_unit_name(unit)}: {describe(e)}" for unit, e in self.errors.items()]
        return out


def tick_seconds() -> float:
    return float(getattr(settings, "DISPATCH_TICK_SECONDS", 2))


def dispatch_tick(now: datetime | None = None, *, send: SendBatch | None = None) -> TickReport:
    """Runs one tick at `now`; claims go to the ready queue and the sending tasks (or, given
    `send`, to it in batches).

    Every campaign's and every list's work is a unit of its own (see `_unit`): one that fails —
    a row the database driver cannot read, a schedule that does not parse — is rolled back,
    logged and marked as erroring on its row, and the tick goes on with the others.
    """
    # The batches' clock shows the tick's instant, so a tick at a chosen `now` sends that day.
    clock = Clock.at(now)
    now = now or timezone.now()
    report = TickReport(now=now)
    due = Campaign.objects.filter(status=Status.SCHEDULED, run_at__lte=now).order_by("run_at")
    for campaign_id in _ids(due):
        with _unit(report, Campaign, campaign_id):
            _start_scheduled(campaign_id, now, report)
    with _unit(report):
        report.expired = expire_leases(now)
    with _unit(report):
        report.assumed_delivered = assume_delivered(now)
    running = Campaign.objects.filter(status__in=[Status.IN_PROGRESS, Status.PAUSED])
    for campaign_id in _ids(running):
        _run(campaign_id, now, send, report, clock)
    if send is None:
        transaction.on_commit(senders_top_up)
    finishing = Campaign.objects.filter(status__in=[Status.IN_PROGRESS, Status.ACTIVE_RETRIES])
    for campaign_id in _ids(finishing):
        with _unit(report, Campaign, campaign_id):
            campaign = _campaign(campaign_id)
            if campaign_finish_if_done(campaign, now):
                report.finished.append(campaign.name)
    record_tick_errors(report)
    return report


def _enqueue(campaign: Campaign, ids: list[int], clock: Clock) -> None:
    """Claims go to their sender's ready queue once committed (delivery/ready.py)."""
    pace = pace_of(campaign)
    entries = [Entry(campaign.pk, pk, clock.offset_seconds) for pk in ids]
    transaction.on_commit(lambda: get_ready_queue().push(pace, entries))


def senders_top_up() -> None:
    """Keeps `SEND_TASKS` sending tasks running while messages wait in the ready queue."""
    from delivery.tasks import send_ready

    queue = get_ready_queue()
    if not queue.waiting():
        return
    if not isinstance(queue, RedisReadyQueue):
        send_ready.delay()  # the embedded run: drained here, inline
        return
    seconds = drain_seconds()
    for token in Drainers(queue.client).wanted(settings.SEND_TASKS, expires=seconds):
        # A task not started within a drain's length is discarded: the next tick starts others.
        send_ready.apply_async((token,), expires=seconds)


def _ids(queryset: QuerySet) -> list[int]:
    # Only ids: one row whose other columns cannot be read must not take the others with it.
    return list(queryset.values_list("pk", flat=True))


def _campaign(campaign_id: int) -> Campaign:
    return Campaign.objects.select_related("sender", "org").get(pk=campaign_id)


def _run(
    campaign_id: int, now: datetime, send: SendBatch | None, report: TickReport, clock: Clock
) -> None:
    """A running campaign's tick: its lists moved, then (In Progress) its due messages released."""
    campaign = None
    with _unit(report, Campaign, campaign_id):
        campaign = _campaign(campaign_id)
    if campaign is None:
        return
    _move_lists(campaign, now, report)
    if campaign.status != Status.IN_PROGRESS:
        return
    claimed: list[int] = []
    with _unit(report, Campaign, campaign_id):
        claimed = _claim_due(campaign, now, report)
    # Outside the unit's transaction: a crash while sending must find the claims committed.
    with _unit(report, Campaign, campaign_id, atomic=False):
        if send is None:
            if claimed:
                _enqueue(campaign, claimed, clock)
        else:
            size = max(1, min(MAX_BATCH[campaign.channel], len(claimed)))
            for start in range(0, len(claimed), size):
                send(claimed[start : start + size])
    if claimed:
        report.released[campaign.name] = len(claimed)


# ---------------------------------------------------------------- one unit, and its errors


@contextlib.contextmanager
def _unit(
    report: TickReport,
    model: type[models.Model] | None = None,
    pk: int | None = None,
    *,
    atomic: bool = True,
) -> Iterator[None]:
    """Runs the block as one unit of the tick: in its own transaction (a savepoint inside one),
    so a failure rolls back only its own work; the error is kept for `record_tick_errors` and
    the tick goes on. A unit without a model is the whole tick's (leases, assumed delivery)."""
    unit = (model, pk) if model is not None and pk is not None else None
    try:
        with transaction.atomic() if atomic else contextlib.nullcontext():
            yield
    except Exception as error:
        if isinstance(error, DatabaseError) and not connection.is_usable():
            raise  # the database itself is gone: the whole tick fails, no campaign is to blame
        report.fail(unit, error)
    else:
        if unit is not None:
            report.worked.add(unit)


def describe(error: Exception) -> str:
    """An error as stored on its campaign or list, for operators (the page says it in words)."""
    return f"{type(error).__name__}: {error}"[:500]


def _unit_name(unit: Unit | None) -> str:
    if unit is None:
        return "the tick"
    model, pk = unit
    return f"{model._meta.verbose_name} {pk}"


def record_tick_errors(report: TickReport) -> None:
    """Marks the campaigns and lists that failed this tick as erroring, and clears the mark of
    those that worked.

    The error is logged (ERROR, with its traceback) when a unit starts failing or fails
    differently, not on every tick it keeps failing; its row keeps the instant it started.
    """
    for unit, error in report.errors.items():
        if unit is None:
            log.error("Dispatcher tick at %s: %s", report.now, describe(error), exc_info=error)
            continue
        model, pk = unit
        text = describe(error)
        changed = (
            model.objects.filter(pk=pk)
            .exclude(error=text, error_at__isnull=False)
            .update(
                error=text,
                error_at=Coalesce(F("error_at"), Value(report.now, models.DateTimeField())),
            )
        )
        if changed:
            log.error(
                "Dispatcher tick at %s: %s stopped by an error; the others go on: %s",
                report.now,
                _unit_name(unit),
                text,
                exc_info=error,
            )
    for model, pk in report.worked - set(report.errors):
        if model.objects.filter(pk=pk, error_at__isnull=False).update(error="", error_at=None):
            log.info("Dispatcher tick at %s: %s works again", report.now, _unit_name((model, pk)))


# ---------------------------------------------------------------- campaigns and lists


def _start_scheduled(campaign_id: int, now: datetime, report: TickReport) -> None:
    campaign = Campaign.objects.select_related("org").get(pk=campaign_id)
    if campaign_start(campaign, now=now, actor=None):
        report.started.append(campaign.name)


def _move_lists(campaign: Campaign, now: datetime, report: TickReport) -> None:
    """Starts lists whose start has come and ends lists whose end has passed, each on its own."""
    lists = RecipientList.objects.filter(campaign=campaign)
    starting = _ids(lists.filter(status=ListStatus.SCHEDULED, start_at__lte=now))
    ending = _ids(
        lists.filter(status__in=[ListStatus.SCHEDULED, ListStatus.IN_PROGRESS], end_at__lte=now)
    )
    for list_id in starting:
        with _unit(report, RecipientList, list_id):
            RecipientList.objects.filter(pk=list_id, status=ListStatus.SCHEDULED).update(
                status=ListStatus.IN_PROGRESS
            )
    for list_id in ending:
        with _unit(report, RecipientList, list_id):
            Message.objects.filter(recipient_list_id=list_id, status=MessageStatus.QUEUED).update(
                status=MessageStatus.NOT_CONTACTED, final_at=now
            )
            RecipientList.objects.filter(pk=list_id).update(status=ListStatus.COMPLETED)


def campaign_finish_if_done(campaign: Campaign, now: datetime) -> bool:
    """Completes lists with nothing pending, then the campaign when all its lists are done."""
    lists = RecipientList.objects.filter(campaign=campaign, status=ListStatus.IN_PROGRESS)
    for list_id in _ids(lists):
        if not Message.objects.filter(recipient_list_id=list_id, status__in=PENDING).exists():
            RecipientList.objects.filter(pk=list_id).update(status=ListStatus.COMPLETED)
    if RecipientList.objects.filter(
        campaign=campaign, status__in=[ListStatus.SCHEDULED, ListStatus.IN_PROGRESS]
    ).exists():
        return False
    if not RecipientList.objects.filter(campaign=campaign).exists():
        return False
    messages = Message.objects.filter(campaign=campaign)
    if messages.filter(status__in=PENDING).exists():
        return False
    if (
        campaign.channel == Channel.EMAIL
        and messages.filter(status=MessageStatus.DEFERRED).exists()
    ):
        status = Status.ACTIVE_RETRIES
    elif messages.filter(status__in=FAILED).exists():
        status = Status.COMPLETE_WITH_ERRORS
    else:
        status = Status.COMPLETE
    if status == campaign.status:
        return False
    Campaign.objects.filter(pk=campaign.pk).update(
        status=status, finished_at=now, last_activity_at=now
    )
    campaign.status = status
    activity_record(
        org=campaign.org,
        actor=None,
        verb="finished",
        subject=campaign.name,
        campaign=campaign,
        detail=Status(status).label,
    )
    return True


# ---------------------------------------------------------------- leases and assumed delivery


def expire_leases(now: datetime) -> int:
    """Leases that ran out. A claim never handed over goes back to the queue, or, when its
    campaign or list no longer sends, ends as Stop or the list's end leaves unsent messages; a
    message handed over without a recorded result becomes "unknown"."""
    expired = Message.objects.filter(status=MessageStatus.SENDING, lease_until__lt=now)
    claims = expired.filter(handed_at__isnull=True)
    # The same outcomes as a hand-over refused for these statuses (delivery/sending.py).
    ended = claims.filter(recipient_list__status=ListStatus.COMPLETED).update(
        status=MessageStatus.NOT_CONTACTED, lease_until=None, final_at=now
    )
    stopped = Q(recipient_list__status=ListStatus.STOPPED) | ~Q(
        campaign__status__in=[Status.IN_PROGRESS, Status.PAUSED]
    )
    cancelled = claims.filter(stopped).update(
        status=MessageStatus.CANCELLED, lease_until=None, final_at=now
    )
    requeued = claims.update(status=MessageStatus.QUEUED, lease_until=None, eligible_at=now)
    unknown = expired.filter(handed_at__isnull=False).update(
        status=MessageStatus.UNKNOWN,
        lease_until=None,
        error_message="No result recorded before the lease expired; the provider may have it.",
    )
    return ended + cancelled + requeued + unknown


def assume_delivered(now: datetime) -> int:
    hours = float(getattr(settings, "ASSUMED_DELIVERED_AFTER_HOURS", 24))
    return Message.objects.filter(
        status=MessageStatus.SENT,
        sent_at__lt=now - timedelta(hours=hours),
        campaign__channel=Channel.SMS,
    ).update(status=MessageStatus.ASSUMED_DELIVERED, final_at=now)


# ---------------------------------------------------------------- release


# How many ticks' worth of a sender's rate may wait claimed in the ready queue. More than one: a
# tick that runs late (a busy database, a beat restarting) must not leave the sender idle until
# it comes; the re-check at the moment of sending makes an early claim harmless.
CLAIM_AHEAD_TICKS = 2


def _budget(campaign: Campaign, now: datetime) -> int:
    """How many to claim this tick: the sender's rate over CLAIM_AHEAD_TICKS ticks, less live
    claims still waiting to be handed over (an expired one belongs to a dead worker and is not
    waited for)."""
    per_tick = math.ceil(campaign.sender.messages_per_second * tick_seconds() * CLAIM_AHEAD_TICKS)
    waiting = Message.objects.filter(
        campaign=campaign,
        status=MessageStatus.SENDING,
        handed_at__isnull=True,
        lease_until__gt=now,
    ).count()
    return max(0, per_tick - waiting)


def _open_lists(campaign: Campaign, report: TickReport) -> dict[int, RecipientList]:
    """The campaign's lists in progress, each read on its own: one that cannot be read is a
    failed unit, and the others are released without it."""
    found: dict[int, RecipientList] = {}
    in_progress = RecipientList.objects.filter(campaign=campaign, status=ListStatus.IN_PROGRESS)
    for list_id in _ids(in_progress):
        with _unit(report, RecipientList, list_id):
            found[list_id] = RecipientList.objects.get(pk=list_id)
    return found


def _claim_due(campaign: Campaign, now: datetime, report: TickReport) -> list[int]:
    """Claims the campaign's due messages inside their window, up to its budget; returns them."""
    budget = _budget(campaign, now)
    if not budget:
        return []
    lists = _open_lists(campaign, report)
    if not lists:
        return []
    rules = WindowRules(campaign)
    # Fetch a few more than the budget: some will turn out to be outside their window.
    candidates = _due_candidates(campaign, now, list(lists), budget * 2)
    open_now: list[tuple[int, str]] = []
    later: dict[datetime | None, list[int]] = defaultdict(list)
    for message_id, address, tz, list_id in candidates:
        recipient_list = lists.get(list_id)
        if recipient_list is None:
            continue  # its list failed earlier in this loop
        try:
            when = rules.next_eligible(now, address, tz, recipient_list)
        except Exception as error:
            # A list whose dates (or a recipient's timezone) the window rule cannot read stops
            # that list only.
            report.fail((RecipientList, list_id), error)
            del lists[list_id]
            continue
        if when is not None and when <= now:
            open_now.append((message_id, address))
        else:
            later[when or recipient_list.end_at].append(message_id)
    for when, ids in later.items():
        Message.objects.filter(pk__any=ids, status=MessageStatus.QUEUED).update(
            eligible_at=when or now + timedelta(days=7)
        )
        report.rescheduled += len(ids)
    open_now = open_now[:budget]
    suppressed = suppressed_addresses(
        org_id=campaign.org_id, addresses=[address for _, address in open_now]
    )
    if suppressed:
        ids = [mid for mid, address in open_now if address in suppressed]
        report.opted_out += Message.objects.filter(pk__any=ids, status=MessageStatus.QUEUED).update(
            status=MessageStatus.OPTED_OUT, final_at=now
        )
    return claim(
        [mid for mid, address in open_now if address not in suppressed],
        now=now,
        lease_for=claim_lease(campaign.sender.messages_per_second),
    )


def _due_candidates(
    campaign: Campaign, now: datetime, list_ids: list[int], limit: int
) -> list[tuple[int, str, str, int]]:
    due = (
        Message.objects.filter(
            campaign=campaign,
            status=MessageStatus.QUEUED,
            eligible_at__lte=now,
            recipient_list_id__in=list_ids,
        )
        .order_by("eligible_at", "id")
        .values_list("id", "address", "timezone", "recipient_list_id")[:limit]
    )
    if connection.features.has_select_for_update_skip_locked:
        # A second dispatcher skips the rows this one is looking at instead of waiting.
        due = due.select_for_update(skip_locked=True, of=("self",))
    return list(due)


def claim(
    message_ids: Iterable[int], *, now: datetime, lease_for: timedelta | None = None
) -> list[int]:
    """Marks queued messages as sending with a claim lease (`claim_lease()` unless given);
    returns those this call claimed."""
    ids = list(message_ids)
    if not ids:
        return []
    table = Message._meta.db_table
    among, among_params = ids_condition("id", ids)
    lease_until = now + (lease_for or claim_lease())
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET status = %s, lease_until = %s, handed_at = NULL"
            f" WHERE {among} AND status = %s RETURNING id",
            [MessageStatus.SENDING, lease_until, *among_params, MessageStatus.QUEUED],
        )
        return sorted(row[0] for row in cursor.fetchall())


class WindowRules:
    """The campaign's hours for each recipient, with legal quiet hours, cached per kind."""

    def __init__(self, campaign: Campaign) -> None:
        self.org_id = campaign.org_id
        self.hours = campaign.weekly_hours
        self.quiet = campaign.channel == Channel.SMS and campaign.org.quiet_hours
        self._hours_cache: dict[object, windows.WeeklyHours] = {}
        self._eligible_cache: dict[tuple, datetime | None] = {}

    def hours_for(self, address: str) -> windows.WeeklyHours:
        if not self.quiet:
            return self.hours
        quiet = windows.quiet_hours_for(address)
        if quiet not in self._hours_cache:
            self._hours_cache[quiet] = (
                self.hours if quiet is None else windows.intersect(self.hours, quiet)
            )
        return self._hours_cache[quiet]

    def next_eligible(
        self, now: datetime, address: str, tz: str, recipient_list: RecipientList
    ) -> datetime | None:
        # A tick asks this for thousands of recipients sharing a handful of answers: one per
        # list, timezone and kind of quiet hours at a given instant.
        quiet = windows.quiet_hours_for(address) if self.quiet else None
        key = (now, quiet, tz, recipient_list.pk)
        if key not in self._eligible_cache:
            self._eligible_cache[key] = windows.next_eligible(
                now,
                self.hours_for(address),
                tz,
                start=recipient_list.start_at,
                end=recipient_list.end_at,
            )
        return self._eligible_cache[key]


def queued_groups(
    campaign: Campaign, *, recipient_list: RecipientList | None = None
) -> list[windows.QueuedGroup]:
    """The campaign's queued messages grouped by timezone and quiet hours, for the forecast."""
    quiet = campaign.channel == Channel.SMS and campaign.org.quiet_hours
    counts: dict[tuple[str, object], int] = defaultdict(int)
    for tz, prefix, n in queued_by_zone_and_prefix(campaign, recipient_list=recipient_list):
        # A made-up subscriber number after the real area code tells the state.
        hours = windows.quiet_hours_for(prefix + "2345678") if quiet else None
        counts[(tz, hours)] += n
    return [windows.QueuedGroup(tz, n, q) for (tz, q), n in counts.items()]


def queued_by_zone_and_prefix(
    campaign: Campaign, *, recipient_list: RecipientList | None = None
) -> list[tuple[str, str, int]]:
    """(timezone, first five characters of the address, count) of the queued messages."""

    def group() -> list[tuple]:
        messages = Message.objects.filter(campaign=campaign, status=MessageStatus.QUEUED)
        if recipient_list is not None:
            messages = messages.filter(recipient_list=recipient_list)
        # Country and area code decide quiet hours.
        return list(
            messages.annotate(prefix=Substr("address", 1, 5))
            .values_list("timezone", "prefix")
            .annotate(n=Count("id"))
            .order_by()
        )

    return grouped_while_unchanged(
        "queued", campaign, [MessageStatus.QUEUED], group, recipient_list=recipient_list
    )
