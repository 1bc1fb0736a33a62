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
from delivery.models import Message, MessageCount, MessageStatus
from delivery.ready import (
    Drainers,
    Entry,
    RedisReadyQueue,
    drain_seconds,
    get_ready_queue,
    pace_of,
)
from delivery.services import suppressed_pairs
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
    _run_all(_ids(running), now, send, report, clock)
    if send is None:
        transaction.on_commit(senders_top_up)
    finishing = Campaign.objects.filter(status__in=[Status.IN_PROGRESS, Status.ACTIVE_RETRIES])
    for campaign_id in _may_finish(_ids(finishing)):
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
    # A task not started within a few drains' length is discarded (a worker that was down): the
    # next tick starts others. Waiting tasks start as running ones end, so they must last that.
    expires = 4 * drain_seconds()
    for token in Drainers(queue.client).wanted(settings.SEND_TASKS, expires=expires):
        send_ready.apply_async((token,), expires=expires)


def _ids(queryset: QuerySet) -> list[int]:
    # Only ids: one row whose other columns cannot be read must not take the others with it.
    return list(queryset.values_list("pk", flat=True))


def _campaign(campaign_id: int) -> Campaign:
    return Campaign.objects.select_related("sender", "org").get(pk=campaign_id)


def _run_all(
    campaign_ids: list[int],
    now: datetime,
    send: SendBatch | None,
    report: TickReport,
    clock: Clock,
) -> None:
    """The running campaigns' tick: each one's lists moved, then the due messages of those In
    Progress claimed, together: a few statements for all the campaigns rather than a few for
    each, so that a tick with hundreds running costs a fraction of the tick interval."""
    campaigns = _read(Campaign.objects.select_related("sender", "org"), campaign_ids, report)
    lists: dict[int, list[RecipientList]] = defaultdict(list)
    open_lists = RecipientList.objects.filter(
        campaign_id__in=list(campaigns), status__in=[ListStatus.SCHEDULED, ListStatus.IN_PROGRESS]
    )
    for recipient_list in _read(RecipientList.objects.all(), _ids(open_lists), report).values():
        lists[recipient_list.campaign_id].append(recipient_list)
    for campaign in campaigns.values():
        _move_lists(lists[campaign.pk], now, report)
        report.worked.add((Campaign, campaign.pk))
    sending = [c for c in campaigns.values() if c.status == Status.IN_PROGRESS]
    claimed = _claim_all(sending, lists, now, report)
    for campaign in sending:
        ids = claimed.get(campaign.pk, [])
        if not ids:
            continue
        # Outside any transaction: a crash while sending must find the claims committed.
        with _unit(report, Campaign, campaign.pk, atomic=False):
            if send is None:
                _enqueue(campaign, ids, clock)
            else:
                size = max(1, min(MAX_BATCH[campaign.channel], len(ids)))
                for start in range(0, len(ids), size):
                    send(ids[start : start + size])
        report.released[campaign.name] = len(ids)


def _read(queryset: QuerySet, ids: list[int], report: TickReport) -> dict[int, models.Model]:
    """The rows with these ids, in one statement; should one of them not be readable, each on
    its own, so that only that one fails (as its unit) and the others are read."""
    try:
        with transaction.atomic():
            return {row.pk: row for row in queryset.filter(pk__any=ids)}
    except Exception as error:
        if isinstance(error, DatabaseError) and not connection.is_usable():
            raise
    found: dict[int, models.Model] = {}
    for pk in ids:
        with _unit(report, queryset.model, pk):
            found[pk] = queryset.get(pk=pk)
    return found


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
    # One statement per model for every unit that worked: only the few still marked change.
    worked: dict[type[models.Model], list[int]] = defaultdict(list)
    for model, pk in report.worked - set(report.errors):
        worked[model].append(pk)
    for model, pks in worked.items():
        marked = model.objects.filter(pk__in=pks, error_at__isnull=False)
        for pk in _ids(marked):
            if model.objects.filter(pk=pk, error_at__isnull=False).update(error="", error_at=None):
                log.info(
                    "Dispatcher tick at %s: %s works again", report.now, _unit_name((model, pk))
                )


# ---------------------------------------------------------------- campaigns and lists


def _start_scheduled(campaign_id: int, now: datetime, report: TickReport) -> None:
    campaign = Campaign.objects.select_related("org").get(pk=campaign_id)
    if campaign_start(campaign, now=now, actor=None):
        report.started.append(campaign.name)


def _move_lists(lists: list[RecipientList], now: datetime, report: TickReport) -> None:
    """Starts lists whose start has come and ends lists whose end has passed, each on its own;
    the objects given follow their rows."""
    for recipient_list in lists:
        start, end = recipient_list.start_at, recipient_list.end_at
        if recipient_list.status == ListStatus.SCHEDULED and start and start <= now:
            with _unit(report, RecipientList, recipient_list.pk):
                RecipientList.objects.filter(
                    pk=recipient_list.pk, status=ListStatus.SCHEDULED
                ).update(status=ListStatus.IN_PROGRESS)
                recipient_list.status = ListStatus.IN_PROGRESS
        if end and end <= now:
            with _unit(report, RecipientList, recipient_list.pk):
                Message.objects.filter(
                    recipient_list_id=recipient_list.pk, status=MessageStatus.QUEUED
                ).update(status=MessageStatus.NOT_CONTACTED, final_at=now)
                RecipientList.objects.filter(pk=recipient_list.pk).update(
                    status=ListStatus.COMPLETED
                )
                recipient_list.status = ListStatus.COMPLETED


def _may_finish(campaign_ids: list[int]) -> list[int]:
    """The campaigns `campaign_finish_if_done` could change: those with no list open, or with a
    list in progress that has nothing pending (read off the status counters, not the messages)."""
    lists = list(
        RecipientList.objects.filter(
            campaign_id__in=campaign_ids,
            status__in=[ListStatus.SCHEDULED, ListStatus.IN_PROGRESS],
        ).values_list("pk", "campaign_id", "status")
    )
    in_progress = [pk for pk, _, status in lists if status == ListStatus.IN_PROGRESS]
    pending = set(
        MessageCount.objects.filter(
            recipient_list_id__in=in_progress, status__in=PENDING, count__gt=0
        ).values_list("recipient_list_id", flat=True)
    )
    with_open = {campaign_id for _, campaign_id, _ in lists}
    idle = {
        campaign_id
        for pk, campaign_id, status in lists
        if status == ListStatus.IN_PROGRESS and pk not in pending
    }
    return [pk for pk in campaign_ids if pk not in with_open or pk in idle]


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


def _per_tick(campaign: Campaign) -> int:
    return math.ceil(campaign.sender.messages_per_second * tick_seconds() * CLAIM_AHEAD_TICKS)


@dataclass
class _Claims:
    """What claiming did, kept apart until its transaction committed."""

    claimed: dict[int, list[int]] = field(default_factory=dict)
    rescheduled: int = 0
    opted_out: int = 0
    errors: dict[Unit, Exception] = field(default_factory=dict)


def _claim_all(
    campaigns: list[Campaign],
    lists: dict[int, list[RecipientList]],
    now: datetime,
    report: TickReport,
) -> dict[int, list[int]]:
    """Claims the due messages of these campaigns inside their windows, up to each one's budget,
    in one transaction; returns the claimed ids per campaign. Should that fail, each campaign is
    claimed on its own, as its unit, so that only the one at fault fails."""
    try:
        return _claims_kept(_claims_in_transaction(campaigns, lists, now), report)
    except Exception as error:
        if isinstance(error, DatabaseError) and not connection.is_usable():
            raise
        if len(campaigns) == 1:
            report.fail((Campaign, campaigns[0].pk), error)
            return {}
    claimed: dict[int, list[int]] = {}
    for campaign in campaigns:
        with _unit(report, Campaign, campaign.pk, atomic=False):
            claimed.update(_claims_kept(_claims_in_transaction([campaign], lists, now), report))
    return claimed


def _claims_in_transaction(
    campaigns: list[Campaign], lists: dict[int, list[RecipientList]], now: datetime
) -> _Claims:
    with transaction.atomic():
        return _claim_together(campaigns, lists, now)


def _claims_kept(done: _Claims, report: TickReport) -> dict[int, list[int]]:
    """Adds a committed claim's outcome to the tick's report; returns its claims."""
    for unit, error in done.errors.items():
        report.fail(unit, error)
    report.rescheduled += done.rescheduled
    report.opted_out += done.opted_out
    return done.claimed


def _claim_together(
    campaigns: list[Campaign], lists: dict[int, list[RecipientList]], now: datetime
) -> _Claims:
    done = _Claims()
    by_pk = {c.pk: c for c in campaigns}
    # Live claims still waiting to be handed over count against the budget (an expired one
    # belongs to a dead worker and is not waited for).
    waiting = dict(
        Message.objects.filter(
            campaign_id__in=list(by_pk),
            status=MessageStatus.SENDING,
            handed_at__isnull=True,
            lease_until__gt=now,
        )
        .values_list("campaign_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    budgets: dict[int, int] = {}
    in_progress: dict[int, dict[int, RecipientList]] = {}
    for campaign in campaigns:
        budget = _per_tick(campaign) - waiting.get(campaign.pk, 0)
        found = {
            rl.pk: rl for rl in lists.get(campaign.pk, []) if rl.status == ListStatus.IN_PROGRESS
        }
        if budget > 0 and found:
            budgets[campaign.pk], in_progress[campaign.pk] = budget, found
    # Fetch a few more than the budget: some will turn out to be outside their window.
    candidates = _due_candidates(
        {pk: (list(in_progress[pk]), 2 * budget) for pk, budget in budgets.items()}, now
    )
    later: dict[datetime | None, list[int]] = defaultdict(list)
    chosen: dict[int, list[tuple[int, str]]] = {}
    for pk, budget in budgets.items():
        campaign, open_lists = by_pk[pk], in_progress[pk]
        try:
            rules = WindowRules(campaign)
        except Exception as error:
            done.errors[(Campaign, pk)] = error
            continue
        open_now: list[tuple[int, str]] = []
        for message_id, address, tz, list_id in candidates.get(pk, []):
            recipient_list = open_lists.get(list_id)
            if recipient_list is None:
                continue  # its list failed earlier in this loop
            try:
                when = rules.next_eligible(now, address, tz, recipient_list)
            except Exception as error:
                # A list whose dates (or a recipient's timezone) the window rule cannot read
                # stops that list only.
                done.errors[(RecipientList, list_id)] = error
                del open_lists[list_id]
                continue
            if when is not None and when <= now:
                open_now.append((message_id, address))
            else:
                later[when or recipient_list.end_at].append(message_id)
        chosen[pk] = open_now[:budget]
    for when, ids in later.items():
        Message.objects.filter(pk__any=ids, status=MessageStatus.QUEUED).update(
            eligible_at=when or now + timedelta(days=7)
        )
        done.rescheduled += len(ids)
    suppressed = suppressed_pairs(
        {(by_pk[pk].org_id, address) for pk, found in chosen.items() for _, address in found}
    )
    stopped = [
        mid
        for pk, found in chosen.items()
        for mid, address in found
        if (by_pk[pk].org_id, address) in suppressed
    ]
    if stopped:
        done.opted_out += Message.objects.filter(
            pk__any=stopped, status=MessageStatus.QUEUED
        ).update(status=MessageStatus.OPTED_OUT, final_at=now)
    # One claim per claim lease (it follows the sender's rate), not one per campaign.
    by_lease: dict[timedelta, list[int]] = defaultdict(list)
    for pk, found in chosen.items():
        lease_for = claim_lease(by_pk[pk].sender.messages_per_second)
        org_id = by_pk[pk].org_id
        by_lease[lease_for] += [mid for mid, a in found if (org_id, a) not in suppressed]
    won: set[int] = set()
    for lease_for, ids in by_lease.items():
        won.update(claim(ids, now=now, lease_for=lease_for))
    for pk, found in chosen.items():
        mine = sorted(mid for mid, _ in found if mid in won)
        if mine:
            done.claimed[pk] = mine
    return done


def _due_candidates(
    wanted: dict[int, tuple[list[int], int]], now: datetime
) -> dict[int, list[tuple[int, str, str, int]]]:
    """Per campaign, its first `limit` queued messages due by `now` in its lists given, in
    (eligible_at, id) order: one statement for every campaign on PostgreSQL.

    Without row locks: ticks never overlap (delivery/tasks.py `tick_lock`), and should two ever
    read the same rows, `claim` gives each message to one of them only.
    """
    found: dict[int, list[tuple[int, str, str, int]]] = defaultdict(list)
    if not wanted:
        return found
    if connection.vendor != "postgresql":
        for pk, (list_ids, limit) in wanted.items():
            found[pk] = list(
                Message.objects.filter(
                    campaign_id=pk,
                    status=MessageStatus.QUEUED,
                    eligible_at__lte=now,
                    recipient_list_id__in=list_ids,
                )
                .order_by("eligible_at", "id")
                .values_list("id", "address", "timezone", "recipient_list_id")[:limit]
            )
        return found
    table = Message._meta.db_table
    pks = list(wanted)
    with connection.cursor() as cursor:
        # Each campaign walks the partial index on (campaign, eligible_at, id) of queued
        # messages and stops at its limit, however many are queued.
        cursor.execute(
            f"SELECT c.id, m.id, m.address, m.timezone, m.recipient_list_id"
            f" FROM unnest(CAST(%s AS bigint[]), CAST(%s AS bigint[])) AS c(id, lim)"
            f" CROSS JOIN LATERAL (SELECT id, address, timezone, recipient_list_id FROM {table}"
            f" WHERE campaign_id = c.id AND status = '{MessageStatus.QUEUED.value}'"
            f" AND eligible_at <= %s AND recipient_list_id = ANY(CAST(%s AS bigint[]))"
            f" ORDER BY eligible_at, id LIMIT c.lim) m",
            [
                pks,
                [wanted[pk][1] for pk in pks],
                now,
                sorted({list_id for list_ids, _ in wanted.values() for list_id in list_ids}),
            ],
        )
        for campaign_id, *row in cursor.fetchall():
            found[campaign_id].append(tuple(row))
    return found


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
