"""Sending claimed messages: hand each batch over, call the provider, record every result.

The order is what makes a message go at most once: claimed (status sending, by the tick), then
handed over (handed_at committed, by one conditional UPDATE that only one caller can win), then
the provider call, then the result. A redelivered task or a second worker finds nothing left to
hand over; a worker killed after the handover leaves "unknown", which the provider's callback
(carrying our id) reconciles.
"""

import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from django.db import connection, transaction
from django.db.models import F, QuerySet

from campaigns.models import Campaign, Channel, MessageTemplate, Status
from campaigns.rendering import UNSUBSCRIBE_VARIABLE, render, render_email_text
from delivery import links
from delivery.clock import Clock
from delivery.dispatch import WindowRules, claim_lease, lease
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
from delivery.services import suppressed_addresses, suppression_add
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
    """Sends the claimed messages among `message_ids`, paced by each sender's throttle.

    `clock` is the releasing tick's (see delivery/clock.py): every instant recorded or decided
    on here is read from it.
    """
    clock = clock or Clock()
    report = SendReport()
    throttle = throttle or get_throttle()
    messages = [
        Claimed(*row)
        for row in Message.objects.filter(
            pk__any=message_ids, status=MessageStatus.SENDING, handed_at__isnull=True
        )
        .values_list(*Claimed._fields)
        .order_by("id")
    ]
    report.skipped = len(message_ids) - len(messages)
    by_campaign: dict[int, list[Claimed]] = defaultdict(list)
    for message in messages:
        by_campaign[message.campaign_id].append(message)
    for campaign_id, group in by_campaign.items():
        campaign = Campaign.objects.select_related("sender", "template", "org").get(pk=campaign_id)
        provider = (providers or {}).get(campaign.channel) or (
            get_sms_provider() if campaign.channel == Channel.SMS else get_email_provider()
        )
        _send_campaign_group(campaign, group, provider, throttle, report, clock)
    return report


# A provider whose requests take longer than this, mostly waiting (WAITING_FACTOR times the CPU
# the call spends), is waited on in threads, REQUESTS_IN_FLIGHT at a time: Twilio answers in
# ~150 ms, and waiting for each answer before reserving the next slot would hold a worker near
# 7 SMS a second whatever its sender's rate. A provider that answers at once (the local sandbox,
# ~1 ms) is called inline, where threads would only contend for the GIL.
SLOW_REQUEST_SECONDS = 0.02
WAITING_FACTOR = 4


def _chunk_size(campaign: Campaign, *, in_threads: bool = False) -> int:
    """How many messages one throttle reservation covers.

    An email chunk is one request: a tenth of a second's worth. An SMS chunk is a hundredth of a
    second's worth, one request each, sent one after another (or all at once, in threads): the
    slot is asked for with room for them all to start (its spread, see `_Pace`).
    """
    rate = campaign.sender.messages_per_second
    if campaign.channel == Channel.EMAIL:
        return max(1, min(1000, int(rate / 10)))
    return max(1, min(REQUESTS_IN_FLIGHT if in_threads else 100, int(rate / 100)))


# How long before its slot a chunk starts getting ready, at least and at most; and how many
# times a message may miss its slot before it waits for the next tick instead.
MIN_LEAD, MAX_LEAD = 0.005, 0.25
MAX_SLOT_MISSES = 3


@dataclass
class _Pace:
    """What this worker measures of itself, so each slot is asked for with room for it: how long
    a chunk takes to get ready (re-check, hand-over, rendering) and one request to start."""

    # Cautious at first (rendering an email takes ~0.1 ms), then measured.
    per_message: float = 0.0003
    per_request: float = 0.002
    slack: float = 1.0

    def lead(self, n: int) -> float:
        """Seconds to ask for between reserving a slot for n messages and its opening."""
        return min(MAX_LEAD, max(MIN_LEAD, self.slack * (0.002 + n * self.per_message)))

    def prepared(self, seconds: float, n: int) -> None:
        # A little over the last, decaying: a chunk ready later than that still has the slot's
        # LATE_LIMIT, and waiting for a lead longer than the work is time this worker idles.
        self.per_message = max(1.1 * seconds / max(1, n), 0.8 * self.per_message)
        self.slack = max(1.0, 0.8 * self.slack)

    def missed(self) -> None:
        self.slack = min(8.0, 2 * self.slack)

    def sent(self, seconds: float, requests: int) -> None:
        if requests:
            self.per_request = max(seconds / requests, 0.8 * self.per_request)

    def spread(self, requests: int) -> float:
        """Seconds from the first to the last start of `requests` sent one after another."""
        return 0.0 if requests <= 1 else 1.5 * (requests - 1) * self.per_request


# Per sender, what this process has measured: a batch starts where the last one left off.
_paces: dict[int, _Pace] = defaultdict(_Pace)


def _send_campaign_group(
    campaign: Campaign,
    messages: list[Claimed],
    provider: object,
    throttle: Throttle,
    report: SendReport,
    clock: Clock,
) -> None:
    """Sends chunk after chunk, each inside its throttle slot.

    For each chunk: a slot is reserved with room to get ready; shortly before it opens the chunk
    is re-checked and handed over (database work stays out of the slot); the provider then waits
    for the slot to open and starts every request before it closes, or reports it NOT_SENT, and
    such messages are handed back and take another slot. Inline while the provider answers at
    once. Once its answers are mostly waiting, chunks go without waiting for earlier answers: a
    thread is free for every request of a chunk before its slot is reserved. Database writes stay
    on this thread: hand-over before a request leaves, results as answers come back.
    """
    sender = campaign.sender
    attachments = _attachments(campaign.template) if campaign.channel == Channel.EMAIL else ()
    rules = WindowRules(campaign)
    lists = RecipientList.objects.in_bulk({m.recipient_list_id for m in messages})
    by_id = {m.pk: m for m in messages}
    pending = deque(messages)
    misses: Counter[int] = Counter()
    pace = _paces[sender.pk]
    room = threading.BoundedSemaphore(REQUESTS_IN_FLIGHT)
    in_flight: list[Future] = []
    in_threads = False

    def try_again(missed: list[int]) -> None:
        # Claimed and not sent: another slot, or after a few misses the next tick's.
        report.results[ResultKind.NOT_SENT.value] += len(missed)
        misses.update(missed)
        again = [pk for pk in missed if misses[pk] < MAX_SLOT_MISSES]
        _requeue([pk for pk in missed if misses[pk] >= MAX_SLOT_MISSES], clock.now())
        pending.extendleft(by_id[pk] for pk in reversed(again))
        pace.missed()

    def record(results: list[SendResult]) -> None:
        if missed := [r.message_id for r in results if r.kind == ResultKind.NOT_SENT]:
            # Their requests never started: handed back first.
            _hand_back_unsent(missed, until=clock.now() + claim_lease(sender.messages_per_second))
            report.handed -= len(missed)
            try_again(missed)
        answered = [r for r in results if r.kind != ResultKind.NOT_SENT]
        if answered:
            record_results(campaign, answered, now=clock.now(), throttle=throttle)
        for result in answered:
            report.results[result.kind.value] += 1

    def record_answered(*, all_of_them: bool) -> None:
        if all_of_them:
            wait(in_flight)
        answered = [f for f in in_flight if f.done()]
        results: list[SendResult] = []
        for future in answered:
            in_flight.remove(future)
            results += future.result()
        if results:
            # One set of writes for every answer that came back since the last look.
            record(results)

    with ThreadPoolExecutor(REQUESTS_IN_FLIGHT, thread_name_prefix="send") as pool:
        try:
            while pending or in_flight:
                if not pending:
                    # Answers still to come may hand messages back for another slot.
                    record_answered(all_of_them=True)
                    continue
                size = _chunk_size(campaign, in_threads=in_threads)
                chunk = [pending.popleft() for _ in range(min(size, len(pending)))]
                requests = 1 if campaign.channel == Channel.EMAIL else len(chunk)
                if in_threads:
                    for _ in range(requests):
                        room.acquire()
                # Slots keep real time (a provider counts real seconds, whatever day the tick
                # reproduces); everything else here reads the tick's clock.
                lead = pace.lead(len(chunk))
                slot = throttle.take(
                    sender.pk,
                    sender.messages_per_second,
                    len(chunk),
                    lead=lead,
                    spread=0.0 if in_threads else pace.spread(requests),
                )
                slot.sleep_until(slot.opens - lead)
                if slot.missed():
                    # Woken (or answered by Redis) after the slot closed: not worth a hand-over.
                    for _ in range(requests if in_threads else 0):
                        room.release()
                    try_again([m.pk for m in chunk])
                    continue
                ready = time.monotonic()
                # The slot on the tick's clock: the instants between which the chunk may leave.
                now = clock.now()
                opens = now + timedelta(seconds=max(0.0, slot.opens - ready))
                closes = now + timedelta(seconds=max(0.0, slot.closes - ready))
                handed = _hand_over_if_allowed(
                    campaign, chunk, rules, lists, opens=opens, closes=closes
                )
                report.handed += len(handed)
                outbound = [_outbound(campaign, m, opens, rules, attachments) for m in handed]
                pace.prepared(time.monotonic() - ready, len(chunk))
                if not in_threads:
                    called, cpu = time.monotonic(), time.thread_time()
                    results = (
                        provider.send(outbound, not_before=slot.opens, start_by=slot.closes)
                        if outbound
                        else []
                    )
                    # Timed from the slot's opening: the wait for it is neither work nor answer.
                    wall = time.monotonic() - max(called, slot.opens)
                    cpu = time.thread_time() - cpu
                    record(results)
                    went = [r for r in results if r.kind != ResultKind.NOT_SENT]
                    sent = len(went) if campaign.channel == Channel.SMS else min(1, len(went))
                    pace.sent(wall, sent)
                    in_threads = (
                        sent > 0
                        and wall / sent > SLOW_REQUEST_SECONDS
                        and wall > WAITING_FACTOR * cpu
                    )
                    continue
                batches = (
                    [outbound] if campaign.channel == Channel.EMAIL else [[o] for o in outbound]
                )
                batches = [b for b in batches if b]
                for _ in range(requests - len(batches)):
                    room.release()
                for batch in batches:
                    future = pool.submit(
                        provider.send, batch, not_before=slot.opens, start_by=slot.closes
                    )
                    future.add_done_callback(lambda _: room.release())
                    in_flight.append(future)
                record_answered(all_of_them=False)
        finally:
            record_answered(all_of_them=True)


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


def _hand_over_if_allowed(
    campaign: Campaign,
    chunk: list[Claimed],
    rules: WindowRules,
    lists: dict[int, RecipientList],
    *,
    opens: datetime,
    closes: datetime,
) -> list[Claimed]:
    """The re-check at the moment of sending: hands over and returns the messages that may still
    go at every instant of their slot (`opens` to `closes`), and puts the others back.

    A claim can wait in a worker past its window's close, a STOP, a Pause or a Stop. Its window
    and its list's dates are asked of the dispatcher's own rule; opt-outs of the suppression list;
    the campaign's and the list's status of the hand-over's UPDATE itself.
    """
    may_go: list[Claimed] = []
    later: dict[datetime, list[int]] = defaultdict(list)
    for message in chunk:
        recipient_list = lists[message.recipient_list_id]
        first, last = (
            rules.next_eligible(at, message.address, message.timezone, recipient_list)
            for at in (opens, closes)
        )
        if first is not None and first <= opens and last is not None and last <= closes:
            may_go.append(message)
        else:
            # Where the tick would have put it: its next opening, else its list's end.
            later[last or recipient_list.end_at or closes + timedelta(days=7)].append(message.pk)
    for eligible_at, ids in later.items():
        _requeue(ids, eligible_at)
    kept = _drop_suppressed(campaign, may_go, opens)
    handed = hand_over([m.pk for m in kept], now=opens)
    if refused := [m.pk for m in kept if m.pk not in handed]:
        _hand_back_refused(refused, now=opens)
    return [m for m in kept if m.pk in handed]


def _drop_suppressed(campaign: Campaign, chunk: list[Claimed], now: datetime) -> list[Claimed]:
    """A STOP that arrived after the claim still stops the message."""
    suppressed = suppressed_addresses(org_id=campaign.org_id, addresses=[m.address for m in chunk])
    if not suppressed:
        return chunk
    Message.objects.filter(
        pk__any=[m.pk for m in chunk if m.address in suppressed], status=MessageStatus.SENDING
    ).update(status=MessageStatus.OPTED_OUT, final_at=now, lease_until=None)
    return [m for m in chunk if m.address not in suppressed]


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
    campaign: Campaign, results: Sequence[SendResult], *, now: datetime, throttle: Throttle
) -> None:
    """Writes each result onto its message; only messages still sending are changed."""
    by_kind: dict[ResultKind, list[SendResult]] = defaultdict(list)
    for result in results:
        by_kind[result.kind].append(result)
    _record_accepted(by_kind.get(ResultKind.ACCEPTED, []), now)
    handed = len(results) - len(by_kind.get(ResultKind.THROTTLED, []))
    if handed:
        _count_sends(campaign.pk, now, handed)
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
    throttled = by_kind.get(ResultKind.THROTTLED, [])
    if throttled:
        backoff = max((r.retry_after or THROTTLE_BACKOFF_SECONDS) for r in throttled)
        throttle.penalise(campaign.sender_id, backoff)
        # The provider refused them, so they certainly did not go: queue them again.
        sending.filter(pk__any=[r.message_id for r in throttled]).update(
            status=MessageStatus.QUEUED,
            handed_at=None,
            lease_until=None,
            eligible_at=now + timedelta(seconds=backoff),
        )


def _count_sends(campaign_id: int, now: datetime, n: int) -> None:
    hour = now.replace(minute=0, second=0, microsecond=0)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {SendHour._meta.db_table} (campaign_id, hour, count) VALUES (%s, %s, %s)"
            f" ON CONFLICT (campaign_id, hour) DO UPDATE SET count ="
            f" {SendHour._meta.db_table}.count + EXCLUDED.count",
            [campaign_id, hour, n],
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
