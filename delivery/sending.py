"""Sending claimed messages: hand each batch over, call the provider, record every result.

The order is what makes a message go at most once: claimed (status sending, by the tick), then
handed over (handed_at committed, by one conditional UPDATE that only one caller can win), then
the provider call, then the result. A redelivered task or a second worker finds nothing left to
hand over; a worker killed after the handover leaves "unknown", which the provider's callback
(carrying our id) reconciles.
"""

import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from django.db import connection, transaction
from django.db.models import F, QuerySet

from campaigns.models import Campaign, Channel, MessageTemplate, Status
from campaigns.rendering import UNSUBSCRIBE_VARIABLE, render, render_email_text
from delivery import links
from delivery.clock import Clock
from delivery.dispatch import WindowRules, claim_lease, lease, senders_top_up
from delivery.lookups import ids_condition
from delivery.models import Message, MessageStatus, SendHour, SuppressionReason
from delivery.providers import get_email_provider, get_sms_provider
from delivery.providers.base import (
    REQUESTS_IN_FLIGHT,
    Attachment,
    OutboundEmail,
    OutboundSms,
    ResultKind,
    SendResult,
)
from delivery.ready import (
    Chunk,
    Drainers,
    Entry,
    LocalReadyQueue,
    ReadyQueue,
    RedisReadyQueue,
    SenderPace,
    drain_seconds,
    get_ready_queue,
    pace_of,
)
from delivery.services import suppressed_pairs, suppression_add
from delivery.throttle import Throttle, get_throttle
from delivery.windows import window_end
from recipients.models import ListStatus, RecipientList

# Twilio's ValidityPeriod bounds, in seconds.
VALIDITY_MIN, VALIDITY_MAX = 1, 36_000
# After a 429 without Retry-After, the sender rests this long before trying again.
THROTTLE_BACKOFF_SECONDS = 2.0


@dataclass
class SendReport:
    handed: int = 0
    skipped: int = 0
    results: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def as_dict(self) -> dict:
        return {"handed": self.handed, "skipped": self.skipped, **self.results}


class Claimed(NamedTuple):
    """What sending reads of a claimed message: building model instances cost a fifth of an
    email's time (bench/dispatch_bench.py), and sending needs only these columns."""

    pk: int
    campaign_id: int
    address: str
    name: str
    timezone: str
    variables: dict
    recipient_list_id: int


def send_batch(
    message_ids: Sequence[int],
    *,
    clock: Clock | None = None,
    providers: dict | None = None,
    throttle: Throttle | None = None,
) -> SendReport:
    """Sends the claimed messages among `message_ids` here and now, paced by each sender's
    throttle: they go through a ready queue of their own, drained by the workers' loop (`drain`)
    until it is empty. For `dispatch --once`, tests and benchmarks.

    `clock` is the releasing tick's (see delivery/clock.py): every instant recorded or decided
    on here is read from it.
    """
    offset = (clock or Clock()).offset_seconds
    queue = LocalReadyQueue(throttle or get_throttle())
    rows = Message.objects.filter(
        pk__any=message_ids, status=MessageStatus.SENDING, handed_at__isnull=True
    ).values_list("campaign_id", "pk")
    by_campaign: dict[int, list[int]] = defaultdict(list)
    for campaign_id, pk in rows:
        by_campaign[campaign_id].append(pk)
    campaigns = Campaign.objects.select_related("sender").in_bulk(list(by_campaign))
    for campaign_id, ids in sorted(by_campaign.items()):
        queue.push(
            pace_of(campaigns[campaign_id]),
            [Entry(campaign_id, pk, offset) for pk in sorted(ids)],
        )
    report = drain(queue, providers=providers, until_empty=True)
    report.skipped += len(message_ids) - sum(len(ids) for ids in by_campaign.values())
    return report


def drain_ready(token: str = "") -> SendReport:
    """A sending task's run: takes what may go now from the shared ready queue for a few ticks
    (`drain_seconds`), then makes room for the next task. `token` is its entry among the
    running tasks (delivery/ready.py `Drainers`)."""
    queue = get_ready_queue()
    seconds = drain_seconds()
    drainers = Drainers(queue.client) if token and isinstance(queue, RedisReadyQueue) else None
    if drainers:
        # Counted as running until a little after it should have finished; a killed worker's
        # task then stops counting and the next tick starts another.
        drainers.alive_until(token, time.time() + seconds + 10)
    try:
        return drain(queue, until=time.monotonic() + seconds)
    finally:
        if drainers:
            drainers.gone(token)
            # A successor at once, rather than a worker slot idle until the next tick's top-up.
            senders_top_up()


# A provider whose requests take longer than this, mostly waiting (WAITING_FACTOR times the CPU
# the call spends), is waited on in threads, REQUESTS_IN_FLIGHT at a time: Twilio answers in
# ~150 ms, and waiting for each answer before taking the next slot would hold a sending task near
# 7 SMS a second however many senders have messages ready. A provider that answers at once (the
# local sandbox, ~1 ms) is called inline, where threads would only contend for the GIL.
SLOW_REQUEST_SECONDS = 0.02
WAITING_FACTOR = 4
# Once a slot is about to open, one pop also takes the slots opening within LOOKAHEAD after it,
# of every sender, up to GROUP_REQUESTS requests: they are re-checked and handed over together
# (one set of statements for the group, not per message) shortly before the first opens, then
# each request starts in its own slot; meanwhile another sending task takes the next group. As
# the old per-batch lead did, this bounds how long before its request a message is re-checked
# (a Pause or a STOP in between finds it on its way, like a request in flight).
LOOKAHEAD = 0.1
GROUP_REQUESTS = 64
# How long a sending task with nothing queued anywhere waits for more before it ends, and the
# longest it sleeps at once while the next slot is further away (answers are looked at between).
IDLE_EXIT_SECONDS = 1.0
MAX_IDLE_SLEEP = 0.05

# How long before its slot a group starts getting ready, at least and at most; and how many
# times a message may miss its slot before it waits for the next tick instead.
MIN_LEAD, MAX_LEAD = 0.005, 0.25
MAX_SLOT_MISSES = 3


@dataclass
class _Pace:
    """What this process measures of itself, so each slot is asked for with room for it: how
    long a group takes to get ready (re-check, hand-over, rendering) and one request to start."""

    # Cautious at first (rendering an email takes ~0.1 ms), then measured.
    per_message: float = 0.0003
    per_request: float = 0.002
    slack: float = 1.0
    # Whether the provider's answers are mostly waiting (see SLOW_REQUEST_SECONDS).
    in_threads: bool = False
    # How many messages the last group had: the next is likely of that size.
    group: int = 1

    def lead(self, n: int) -> float:
        """Seconds to ask for between reserving slots for n messages and their opening."""
        return min(MAX_LEAD, max(MIN_LEAD, self.slack * (0.002 + n * self.per_message)))

    def prepared(self, seconds: float, n: int) -> None:
        # A little over the last, decaying: a group ready later than that still has the slot's
        # LATE_LIMIT, and waiting for a lead longer than the work is time this worker idles.
        self.per_message = max(1.1 * seconds / max(1, n), 0.8 * self.per_message)
        self.slack = max(1.0, 0.8 * self.slack)

    def missed(self) -> None:
        self.slack = min(8.0, 2 * self.slack)

    def sent(self, seconds: float, requests: int) -> None:
        if requests:
            self.per_request = max(seconds / requests, 0.8 * self.per_request)

    def spread_per_request(self) -> float:
        """Seconds between two requests' starts, sent one after another (0 in threads)."""
        return 0.0 if self.in_threads else 1.5 * self.per_request


# What this process has measured: a sending task starts where the last one left off.
_pace = _Pace()


@dataclass
class _Context:
    """What sending a campaign's messages needs, read once and again after CONTEXT_SECONDS (an
    edited list end or sender rate is seen within that; statuses are read by the hand-over)."""

    campaign: Campaign
    provider: object
    rules: WindowRules
    lists: dict[int, RecipientList]
    attachments: tuple[Attachment, ...]
    pace: SenderPace
    read_at: float


CONTEXT_SECONDS = 1.0


class _Drain:
    """One run of the sending loop over a ready queue (see `drain`)."""

    def __init__(self, queue: ReadyQueue, providers: dict | None) -> None:
        self.queue = queue
        self.providers = providers or {}
        self.report = SendReport()
        self.contexts: dict[int, _Context] = {}
        self.misses: Counter[int] = Counter()
        self.in_flight: list[tuple[Future, Chunk]] = []
        # The campaign of every message this run has read.
        self.campaign_of: dict[int, int] = {}
        self.pool: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------ the loop

    def run(self, *, until: float | None, until_empty: bool) -> SendReport:
        idle_since: float | None = None
        try:
            while until is None or time.monotonic() < until:
                self.record_answered(block=False)
                room = REQUESTS_IN_FLIGHT - len(self.in_flight)
                if _pace.in_threads and room <= 0:
                    self.record_answered(block=True, first=True)
                    continue
                lead = _pace.lead(_pace.group)
                popped = self.queue.pop(
                    max_requests=min(room, GROUP_REQUESTS) if _pace.in_threads else GROUP_REQUESTS,
                    lead=lead,
                    spread_per_request=_pace.spread_per_request(),
                    lookahead=LOOKAHEAD,
                )
                if popped.chunks:
                    idle_since = None
                    self.take(popped.chunks, lead)
                    continue
                if popped.wait is None and not self.in_flight:
                    if until_empty:
                        break
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since > IDLE_EXIT_SECONDS:
                        break
                wait = MAX_IDLE_SLEEP if popped.wait is None else popped.wait - lead
                wait = min(MAX_IDLE_SLEEP, max(0.001, wait))
                if until is not None:
                    wait = min(wait, max(0.0, until - time.monotonic()))
                if self.in_flight:
                    futures_wait([f for f, _ in self.in_flight], timeout=wait)
                else:
                    time.sleep(wait)
        finally:
            self.record_answered(block=True)
            if self.pool is not None:
                self.pool.shutdown(wait=True)
        return self.report

    # ------------------------------------------------------------ one group of chunks

    def take(self, chunks: list[Chunk], lead: float) -> None:
        """Sends the popped chunks, each inside its slot: re-checked and handed over shortly
        before the slots open (database work stays out of them), then each request started
        within its slot or reported NOT_SENT and handed back for another."""
        ids = [entry.message_id for chunk in chunks for entry in chunk.entries]
        claimed = {
            row[0]: Claimed(*row)
            for row in Message.objects.filter(
                pk__any=ids, status=MessageStatus.SENDING, handed_at__isnull=True
            ).values_list(*Claimed._fields)
        }
        # An entry whose claim is not live any more (handed over by another worker, queued
        # again after its lease) is not this run's to send.
        self.report.skipped += len(ids) - len(claimed)
        self.campaign_of.update((pk, row.campaign_id) for pk, row in claimed.items())
        self.refresh(claimed.values())
        groups = [
            (chunk, [claimed[e.message_id] for e in chunk.entries if e.message_id in claimed])
            for chunk in chunks
        ]
        groups = [(chunk, messages) for chunk, messages in groups if messages]
        if not groups:
            return
        groups[0][0].slot.sleep_until(min(c.slot.opens for c, _ in groups) - lead)
        ready = time.monotonic()
        live = []
        for chunk, messages in groups:
            if chunk.slot.missed():
                # Woken (or answered by Redis) after the slot closed: not worth a hand-over.
                self.try_again(chunk, {m.pk for m in messages})
            else:
                live.append((chunk, messages))
        handed = self.hand_over(live, ready)
        outbound = [(chunk, self.outbound(chunk, ready, messages)) for chunk, messages in handed]
        _pace.group = sum(len(ms) for _, ms in groups)
        _pace.prepared(time.monotonic() - ready, _pace.group)
        if _pace.in_threads:
            self.submit(outbound)
        else:
            self.send_inline(outbound)

    def context(self, campaign_id: int) -> _Context:
        return self.contexts[campaign_id]

    def refresh(self, messages: Iterable[Claimed]) -> None:
        """Reads, in a few statements for the whole group, the campaigns of these messages not
        read yet, read over CONTEXT_SECONDS ago, or read before one of their lists existed."""
        now = time.monotonic()
        stale = {
            m.campaign_id
            for m in messages
            if (found := self.contexts.get(m.campaign_id)) is None
            or now - found.read_at > CONTEXT_SECONDS
            or m.recipient_list_id not in found.lists
        }
        if not stale:
            return
        campaigns = Campaign.objects.select_related("sender", "template", "org").in_bulk(stale)
        lists: dict[int, dict[int, RecipientList]] = defaultdict(dict)
        for recipient_list in RecipientList.objects.filter(campaign_id__in=stale):
            lists[recipient_list.campaign_id][recipient_list.pk] = recipient_list
        for campaign_id, campaign in campaigns.items():
            sms = campaign.channel == Channel.SMS
            self.contexts[campaign_id] = _Context(
                campaign=campaign,
                provider=self.providers.get(campaign.channel)
                or (get_sms_provider() if sms else get_email_provider()),
                rules=WindowRules(campaign),
                lists=lists[campaign_id],
                attachments=() if sms else _attachments(campaign.template),
                pace=pace_of(campaign),
                read_at=now,
            )

    @staticmethod
    def slot_instants(chunk: Chunk, ready: float) -> tuple[datetime, datetime]:
        """The chunk's slot on its tick's clock: the instants between which it may leave."""
        now = Clock.from_seconds(chunk.entries[0].clock_offset).now()
        return (
            now + timedelta(seconds=max(0.0, chunk.slot.opens - ready)),
            now + timedelta(seconds=max(0.0, chunk.slot.closes - ready)),
        )

    def hand_over(
        self, groups: list[tuple[Chunk, list[Claimed]]], ready: float
    ) -> list[tuple[Chunk, list[Claimed]]]:
        """The re-check at the moment of sending, for every chunk of the group at once (see
        `_may_go`); returns the chunks with the messages handed over."""
        items = []
        for chunk, messages in groups:
            opens, closes = self.slot_instants(chunk, ready)
            for message in messages:
                context = self.context(message.campaign_id)
                items.append(_Check(message, context.rules, context.lists, opens, closes))
        handed = _hand_over_if_allowed(items)
        self.report.handed += len(handed)
        kept = [(c, [m for m in ms if m.pk in handed]) for c, ms in groups]
        return [(c, ms) for c, ms in kept if ms]

    def outbound(
        self, chunk: Chunk, ready: float, messages: list[Claimed]
    ) -> list[OutboundSms | OutboundEmail]:
        opens, _ = self.slot_instants(chunk, ready)
        found = []
        for message in messages:
            context = self.context(message.campaign_id)
            found.append(
                _outbound(context.campaign, message, opens, context.rules, context.attachments)
            )
        return found

    # ------------------------------------------------------------ requests

    def send_inline(self, outbound: list[tuple[Chunk, list]]) -> None:
        """Each chunk in turn, in the order their slots open; the group's answers recorded once."""
        results: list[SendResult] = []
        by_chunk: dict[int, Chunk] = {}
        # Timed from each slot's opening: the wait for it is neither work nor answer.
        wall, cpu = 0.0, time.thread_time()
        for chunk, requests in sorted(outbound, key=lambda item: item[0].slot.opens):
            if not requests:
                continue
            provider = self.context(self.campaign_of[requests[0].message_id]).provider
            called = time.monotonic()
            answers = provider.send(
                requests, not_before=chunk.slot.opens, start_by=chunk.slot.closes
            )
            wall += time.monotonic() - max(called, chunk.slot.opens)
            for answer in answers:
                by_chunk[answer.message_id] = chunk
            results += answers
        cpu = time.thread_time() - cpu
        self.record(results, by_chunk)
        went = {r.message_id for r in results if r.kind != ResultKind.NOT_SENT}
        sent = 0
        for _, requests in outbound:
            gone = [r for r in requests if r.message_id in went]
            sent += min(1, len(gone)) if _is_email(requests) else len(gone)
        _pace.sent(wall, sent)
        _pace.in_threads = (
            sent > 0 and wall / sent > SLOW_REQUEST_SECONDS and wall > WAITING_FACTOR * cpu
        )

    def submit(self, outbound: list[tuple[Chunk, list]]) -> None:
        """Every request of the group at once, each in a thread of its own; answers are recorded
        on this thread as they come back."""
        if self.pool is None:
            self.pool = ThreadPoolExecutor(REQUESTS_IN_FLIGHT, thread_name_prefix="send")
        for chunk, requests in outbound:
            if not requests:
                continue
            provider = self.context(self.campaign_of[requests[0].message_id]).provider
            batches = [requests] if _is_email(requests) else [[r] for r in requests]
            for batch in batches:
                future = self.pool.submit(
                    provider.send, batch, not_before=chunk.slot.opens, start_by=chunk.slot.closes
                )
                self.in_flight.append((future, chunk))

    def record_answered(self, *, block: bool, first: bool = False) -> None:
        if not self.in_flight:
            return
        if block:
            futures_wait(
                [f for f, _ in self.in_flight],
                return_when=FIRST_COMPLETED if first else ALL_COMPLETED,
            )
        done = [item for item in self.in_flight if item[0].done()]
        results: list[SendResult] = []
        by_chunk: dict[int, Chunk] = {}
        for item in done:
            self.in_flight.remove(item)
            future, chunk = item
            for answer in future.result():
                by_chunk[answer.message_id] = chunk
                results.append(answer)
        if results:
            # One set of writes for every answer that came back since the last look.
            self.record(results, by_chunk)

    # ------------------------------------------------------------ results

    def record(self, results: list[SendResult], by_chunk: dict[int, Chunk]) -> None:
        unsent: dict[int, tuple[Chunk, list[int]]] = {}
        for result in results:
            if result.kind == ResultKind.NOT_SENT:
                chunk = by_chunk[result.message_id]
                unsent.setdefault(id(chunk), (chunk, []))[1].append(result.message_id)
        if unsent:
            # Their requests never started: handed back first, then another slot.
            for chunk, ids in unsent.values():
                context = self.context(chunk.entries[0].campaign_id)
                now = Clock.from_seconds(chunk.entries[0].clock_offset).now()
                _hand_back_unsent(ids, until=now + claim_lease(context.pace.per_second))
                self.report.handed -= len(ids)
                self.try_again(chunk, set(ids))
        answered = [r for r in results if r.kind != ResultKind.NOT_SENT]
        for result in answered:
            self.report.results[result.kind.value] += 1
        if answered:
            chunk = by_chunk[answered[0].message_id]
            record_results(
                answered,
                campaign_of={
                    r.message_id: self.context(self.campaign_of[r.message_id]).campaign
                    for r in answered
                },
                now=Clock.from_seconds(chunk.entries[0].clock_offset).now(),
                throttle=self.queue.throttle,
            )

    def try_again(self, chunk: Chunk, ids: set[int]) -> None:
        """Claimed and not sent: another slot, or after a few misses the next tick's."""
        self.report.results[ResultKind.NOT_SENT.value] += len(ids)
        self.misses.update(ids)
        gave_up = [pk for pk in ids if self.misses[pk] >= MAX_SLOT_MISSES]
        now = Clock.from_seconds(chunk.entries[0].clock_offset).now()
        _requeue(gave_up, now)
        again = [e for e in chunk.entries if e.message_id in ids and e.message_id not in gave_up]
        if again:
            pace = self.context(again[0].campaign_id).pace
            self.queue.push_front(chunk._replace(entries=again), pace)
        _pace.missed()


def drain(
    queue: ReadyQueue,
    *,
    until: float | None = None,
    providers: dict | None = None,
    until_empty: bool = False,
) -> SendReport:
    """The sending loop: pops what may go now from `queue` and sends it, until the monotonic
    `until` (or, with `until_empty`, until nothing is queued or in flight).

    It sleeps only when no sender's slot opens before the next look, so one loop serves every
    sender with messages ready; when it is not enough, more loops run in other worker slots.
    """
    return _Drain(queue, providers).run(until=until, until_empty=until_empty)


def _is_email(requests: list) -> bool:
    return isinstance(requests[0], OutboundEmail)


class _Check(NamedTuple):
    """A message to re-check at the moment of sending, with its slot on its tick's clock."""

    message: Claimed
    rules: WindowRules
    lists: dict[int, RecipientList]
    opens: datetime
    closes: datetime


def _outbound(
    campaign: Campaign,
    message: Claimed,
    now: datetime,
    rules: WindowRules,
    attachments: tuple[Attachment, ...],
) -> OutboundSms | OutboundEmail:
    if campaign.channel == Channel.SMS:
        return _sms(campaign, message, now, rules)
    return _email(campaign, message, attachments)


def _hand_over_if_allowed(checks: list[_Check]) -> set[int]:
    """The re-check at the moment of sending: hands over and returns the messages that may still
    go at every instant of their slot (`opens` to `closes`), and puts the others back.

    A claim can wait past its window's close, a STOP, a Pause or a Stop. Its window and its
    list's dates are asked of the dispatcher's own rule; opt-outs of the suppression list; the
    campaign's and the list's status of the hand-over's UPDATE itself.
    """
    may_go: list[_Check] = []
    later: dict[datetime, list[int]] = defaultdict(list)
    for check in checks:
        message = check.message
        recipient_list = check.lists[message.recipient_list_id]
        first, last = (
            check.rules.next_eligible(at, message.address, message.timezone, recipient_list)
            for at in (check.opens, check.closes)
        )
        if first is not None and first <= check.opens and last is not None and last <= check.closes:
            may_go.append(check)
        else:
            # Where the tick would have put it: its next opening, else its list's end.
            later[last or recipient_list.end_at or check.closes + timedelta(days=7)].append(
                message.pk
            )
    for eligible_at, ids in later.items():
        _requeue(ids, eligible_at)
    kept = _drop_suppressed(may_go)
    if not kept:
        return set()
    now = min(check.opens for check in kept)
    handed = hand_over([check.message.pk for check in kept], now=now)
    if refused := [check.message.pk for check in kept if check.message.pk not in handed]:
        _hand_back_refused(refused, now=now)
    return handed


def _drop_suppressed(checks: list[_Check]) -> list[_Check]:
    """A STOP that arrived after the claim still stops the message."""
    suppressed = suppressed_pairs({(c.rules.org_id, c.message.address) for c in checks})
    if not suppressed:
        return checks
    stopped = [c for c in checks if (c.rules.org_id, c.message.address) in suppressed]
    Message.objects.filter(
        pk__any=[c.message.pk for c in stopped], status=MessageStatus.SENDING
    ).update(
        status=MessageStatus.OPTED_OUT, final_at=min(c.opens for c in stopped), lease_until=None
    )
    return [c for c in checks if (c.rules.org_id, c.message.address) not in suppressed]


def hand_over(message_ids: Iterable[int], *, now: datetime) -> set[int]:
    """Commits handed_at on claimed messages not yet handed over whose campaign and list are
    still In Progress; returns those this call won.

    The statuses are read by the UPDATE itself, so a Pause or Stop committed before it is seen,
    and one committed after it finds the messages already on their way. The lease starts again
    here: a message handed over late in a long batch has the whole lease for its provider call,
    rather than being declared "unknown" while the call is in flight.
    """
    ids = list(message_ids)
    if not ids:
        return set()
    table = Message._meta.db_table
    among, among_params = ids_condition("id", ids)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET handed_at = %s, lease_until = %s, attempts = attempts + 1"
            # Only a live claim: past its claim lease a claim is the dispatcher's again, which
            # no longer counts it against the sender's budget and queues it once more.
            f" WHERE {among} AND status = %s AND handed_at IS NULL AND lease_until > %s"
            f" AND EXISTS (SELECT 1 FROM {Campaign._meta.db_table} c"
            f" WHERE c.id = {table}.campaign_id AND c.status = %s)"
            f" AND EXISTS (SELECT 1 FROM {RecipientList._meta.db_table} l"
            f" WHERE l.id = {table}.recipient_list_id AND l.status = %s)"
            f" RETURNING id",
            [
                now,
                now + lease(),
                *among_params,
                MessageStatus.SENDING,
                now,
                Status.IN_PROGRESS,
                ListStatus.IN_PROGRESS,
            ],
        )
        return {row[0] for row in cursor.fetchall()}


# Claimed, not handed over: only these may be put back.
def _claimed() -> QuerySet[Message]:
    return Message.objects.filter(status=MessageStatus.SENDING, handed_at__isnull=True)


def _requeue(message_ids: list[int], eligible_at: datetime) -> None:
    """Claims that may not go now queue again, looked at next at `eligible_at`."""
    if message_ids:
        _claimed().filter(pk__any=message_ids).update(
            status=MessageStatus.QUEUED, eligible_at=eligible_at, lease_until=None
        )


def _hand_back_refused(message_ids: list[int], *, now: datetime) -> None:
    """Claims the hand-over refused, by their campaign's and list's status: queued again while
    paused (Resume releases them), cancelled once stopped (as Stop does with queued messages),
    not contacted once the list has ended."""
    outcome: dict[str, list[int]] = defaultdict(list)
    rows = (
        _claimed()
        .filter(pk__any=message_ids)
        .values_list("pk", "campaign__status", "recipient_list__status")
    )
    for pk, campaign_status, list_status in rows:
        if list_status == ListStatus.COMPLETED:
            outcome[MessageStatus.NOT_CONTACTED].append(pk)
        elif list_status == ListStatus.STOPPED or campaign_status not in (
            Status.IN_PROGRESS,
            Status.PAUSED,
        ):
            outcome[MessageStatus.CANCELLED].append(pk)
        else:
            outcome[MessageStatus.QUEUED].append(pk)
    _requeue(outcome.pop(MessageStatus.QUEUED, []), now)
    for status, ids in outcome.items():
        _claimed().filter(pk__any=ids).update(status=status, final_at=now, lease_until=None)


def _hand_back_unsent(message_ids: list[int], *, until: datetime) -> None:
    """Handed over, but their request never started (the slot closed first): claimed again.

    With a claim's lease, not the hand-over's: should this worker die now, they go back to the
    queue within about a minute instead of waiting out five.
    """
    Message.objects.filter(
        pk__any=message_ids, status=MessageStatus.SENDING, handed_at__isnull=False
    ).update(handed_at=None, lease_until=until, attempts=F("attempts") - 1)


def _values(message: Claimed | Message, extra: dict[str, str] | None = None) -> dict[str, str]:
    values = {k: str(v) for k, v in (message.variables or {}).items()}
    values.setdefault("name", message.name)
    values.setdefault("first_name", message.name.split()[0] if message.name.split() else "")
    if extra:
        values.update(extra)
    return values


def sms_text(campaign: Campaign, message: Claimed | Message) -> str:
    """The text of the campaign's SMS to this message's recipient (also what a provider's
    record of it is matched by, delivery/reconciliation.py)."""
    return render(campaign.template.body, _values(message))


def _sms(campaign: Campaign, message: Claimed, now: datetime, rules: WindowRules) -> OutboundSms:
    sender = campaign.sender
    return OutboundSms(
        message_id=message.pk,
        to=message.address,
        sender=sender.phone_number or sender.messaging_service_sid,
        body=sms_text(campaign, message),
        status_callback=links.status_callback_url(message.pk),
        validity_period=_validity(rules, message, now),
    )


def _validity(rules: WindowRules, message: Claimed, now: datetime) -> int | None:
    """Seconds left in the recipient's window, so Twilio's queue cannot deliver after hours."""
    hours = rules.hours_for(message.address)
    closes = window_end(now, hours, message.timezone)
    if closes is None:
        return VALIDITY_MIN
    return max(VALIDITY_MIN, min(VALIDITY_MAX, int((closes - now).total_seconds())))


def _email(
    campaign: Campaign, message: Claimed, attachments: tuple[Attachment, ...]
) -> OutboundEmail:
    template, sender = campaign.template, campaign.sender
    unsubscribe = links.unsubscribe_url(message.pk)
    values = _values(message, {UNSUBSCRIBE_VARIABLE: unsubscribe})
    return OutboundEmail(
        message_id=message.pk,
        to=message.address,
        to_name=message.name,
        from_email=sender.from_email,
        from_name=sender.from_name,
        reply_to=sender.reply_to,
        subject=render(template.subject, values),
        html=render(template.html_body, values, html=True),
        text=render_email_text(template.text_body, values),
        unsubscribe_url=unsubscribe,
        attachments=attachments,
    )


def _attachments(template: MessageTemplate) -> tuple[Attachment, ...]:
    found = []
    for attachment in template.attachments.all():
        with attachment.file.open("rb") as f:
            found.append(Attachment(attachment.filename, attachment.content_type, f.read()))
    return tuple(found)


# ---------------------------------------------------------------- results


def record_results(
    results: Sequence[SendResult],
    *,
    campaign_of: Mapping[int, Campaign],
    now: datetime,
    throttle: Throttle,
) -> None:
    """Writes each result onto its message (of the campaign `campaign_of` gives for its id);
    only messages still sending are changed. The accepted ones, by far the most, and the hourly
    counts take one statement each for all the campaigns of the results."""
    by_kind: dict[ResultKind, list[SendResult]] = defaultdict(list)
    for result in results:
        by_kind[result.kind].append(result)
    _record_accepted(by_kind.get(ResultKind.ACCEPTED, []), now)
    handed: Counter[int] = Counter(
        campaign_of[r.message_id].pk for r in results if r.kind != ResultKind.THROTTLED
    )
    _count_sends(handed, now)
    sending = Message.objects.filter(status=MessageStatus.SENDING)
    for result in by_kind.get(ResultKind.FAILED, []):
        sending.filter(pk=result.message_id).update(
            status=MessageStatus.FAILED,
            error_code=result.error_code[:20],
            error_message=result.error_message[:500],
            final_at=now,
            lease_until=None,
        )
    for result in by_kind.get(ResultKind.UNKNOWN, []):
        sending.filter(pk=result.message_id).update(
            status=MessageStatus.UNKNOWN,
            error_code=result.error_code[:20],
            error_message=(result.error_message or "No answer from the provider.")[:500],
            lease_until=None,
        )
    opted_out = by_kind.get(ResultKind.OPTED_OUT, [])
    for result in opted_out:
        sending.filter(pk=result.message_id).update(
            status=MessageStatus.OPTED_OUT,
            error_code=result.error_code[:20],
            error_message=result.error_message[:500],
            final_at=now,
            lease_until=None,
        )
        message = Message.objects.filter(pk=result.message_id).only("org_id", "address").first()
        if message is not None:
            suppression_add(
                org=message.org_id,
                address=message.address,
                reason=SuppressionReason.PROVIDER_OPT_OUT,
                detail=f"provider error {result.error_code}",
                message=message,
            )
    throttled: dict[int, list[SendResult]] = defaultdict(list)
    for result in by_kind.get(ResultKind.THROTTLED, []):
        throttled[campaign_of[result.message_id].sender_id].append(result)
    for sender_id, refused in throttled.items():
        backoff = max((r.retry_after or THROTTLE_BACKOFF_SECONDS) for r in refused)
        throttle.penalise(sender_id, backoff)
        # The provider refused them, so they certainly did not go: queue them again.
        sending.filter(pk__any=[r.message_id for r in refused]).update(
            status=MessageStatus.QUEUED,
            handed_at=None,
            lease_until=None,
            eligible_at=now + timedelta(seconds=backoff),
        )


def _count_sends(per_campaign: Mapping[int, int], now: datetime) -> None:
    """Adds each campaign's requests to its hour's count, in one statement."""
    if not per_campaign:
        return
    hour = now.replace(minute=0, second=0, microsecond=0)
    # In campaign order: two workers adding to the same rows lock them in the same order.
    rows = sorted(per_campaign.items())
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {SendHour._meta.db_table} (campaign_id, hour, count) VALUES "
            + ", ".join(["(%s, %s, %s)"] * len(rows))
            + f" ON CONFLICT (campaign_id, hour) DO UPDATE SET count ="
            f" {SendHour._meta.db_table}.count + EXCLUDED.count",
            [value for campaign_id, n in rows for value in (campaign_id, hour, n)],
        )


def _record_accepted(accepted: list[SendResult], now: datetime) -> None:
    if not accepted:
        return
    ids = [result.message_id for result in accepted]
    provider_ids = [result.provider_id[:64] for result in accepted]
    if connection.vendor == "postgresql":
        # Two array parameters rather than two placeholders per message (see delivery/lookups).
        values, params = (
            "SELECT * FROM unnest(CAST(%s AS bigint[]), CAST(%s AS varchar[]))",
            [ids, provider_ids],
        )
    else:
        values = "VALUES " + ", ".join(["(%s, %s)"] * len(accepted))
        params = [value for pair in zip(ids, provider_ids, strict=True) for value in pair]
    table = Message._meta.db_table
    with connection.cursor() as cursor:
        # One statement for the batch; a callback that already moved a message on wins.
        cursor.execute(
            f"WITH v(id, provider_id) AS ({values}) "
            f"UPDATE {table} SET status = CASE WHEN {table}.status = %s THEN %s"
            f" ELSE {table}.status END,"
            f" provider_id = v.provider_id, sent_at = COALESCE({table}.sent_at, %s),"
            f" lease_until = NULL FROM v WHERE {table}.id = CAST(v.id AS bigint)"
            f" AND {table}.status IN (%s, %s, %s, %s, %s, %s)",
            [
                *params,
                MessageStatus.SENDING,
                MessageStatus.SENT,
                now,
                MessageStatus.SENDING,
                MessageStatus.SENT,
                MessageStatus.DELIVERED,
                MessageStatus.UNDELIVERED,
                MessageStatus.FAILED,
                MessageStatus.DEFERRED,
            ],
        )
