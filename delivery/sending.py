"""Sending claimed messages: hand each batch over, call the provider, record every result.

The order is what makes a message go at most once: claimed (status sending, by the tick), then
handed over (handed_at committed, by one conditional UPDATE that only one caller can win), then
the provider call, then the result. A redelivered task or a second worker finds nothing left to
hand over; a worker killed after the handover leaves "unknown", which the provider's callback
(carrying our id) reconciles.
"""

import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from django.db import connection, transaction

from campaigns.models import Campaign, Channel, MessageTemplate
from campaigns.rendering import UNSUBSCRIBE_VARIABLE, render, render_email_text
from delivery import links
from delivery.clock import Clock
from delivery.dispatch import WindowRules, lease
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
    last must still reach the provider inside the second its reservation counted it in.
    """
    rate = campaign.sender.messages_per_second
    if campaign.channel == Channel.EMAIL:
        return max(1, min(1000, int(rate / 10)))
    return max(1, min(REQUESTS_IN_FLIGHT if in_threads else 100, int(rate / 100)))


def _send_campaign_group(
    campaign: Campaign,
    messages: list[Claimed],
    provider: object,
    throttle: Throttle,
    report: SendReport,
    clock: Clock,
) -> None:
    """Sends chunk after chunk, each at its throttle slot.

    Inline while the provider answers at once. Once its answers are mostly waiting, chunks go
    without waiting for earlier answers: a thread is free for every request of a chunk before its
    slot is reserved, so no request waits behind another once its slot has come. Database writes
    stay on this thread: hand-over before a request leaves, results as answers come back.
    """
    sender = campaign.sender
    attachments = _attachments(campaign.template) if campaign.channel == Channel.EMAIL else ()
    rules = WindowRules(campaign)
    room = threading.BoundedSemaphore(REQUESTS_IN_FLIGHT)
    in_flight: list[Future] = []
    in_threads = False

    def record(results: list[SendResult]) -> None:
        record_results(campaign, results, now=clock.now(), throttle=throttle)
        for result in results:
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
            start = 0
            while start < len(messages):
                size = _chunk_size(campaign, in_threads=in_threads)
                chunk, start = messages[start : start + size], start + size
                requests = [chunk] if campaign.channel == Channel.EMAIL else [[m] for m in chunk]
                if in_threads:
                    for _ in requests:
                        room.acquire()
                # Slots keep real time (a provider counts real seconds, whatever day the tick
                # reproduces); everything else here reads the tick's clock.
                throttle.wait_for_slot(sender.pk, sender.messages_per_second, len(chunk))
                now = clock.now()
                kept = _drop_suppressed(campaign, chunk, now)
                handed = hand_over([m.pk for m in kept], now=now)
                report.handed += len(handed)
                outbound = [
                    [
                        _outbound(campaign, m, now, rules, attachments)
                        for m in request
                        if m.pk in handed
                    ]
                    for request in requests
                ]
                if not in_threads:
                    wall, cpu = time.perf_counter(), time.thread_time()
                    results = provider.send([o for request in outbound for o in request])
                    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
                    record(results)
                    sent = sum(1 for request in outbound if request)
                    in_threads = (
                        sent > 0
                        and wall / sent > SLOW_REQUEST_SECONDS
                        and wall > WAITING_FACTOR * cpu
                    )
                    continue
                for request in outbound:
                    if not request:
                        room.release()
                        continue
                    future = pool.submit(provider.send, request)
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
    """Commits handed_at on claimed messages not yet handed over; returns those this call won.

    The lease starts again here: a message handed over late in a long batch has the whole lease
    for its provider call, rather than being declared "unknown" while the call is in flight.
    """
    ids = list(message_ids)
    if not ids:
        return set()
    among, among_params = ids_condition("id", ids)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Message._meta.db_table} SET handed_at = %s, lease_until = %s,"
            f" attempts = attempts + 1"
            f" WHERE {among} AND status = %s AND handed_at IS NULL RETURNING id",
            [now, now + lease(), *among_params, MessageStatus.SENDING],
        )
        return {row[0] for row in cursor.fetchall()}


def _values(message: Claimed, extra: dict[str, str] | None = None) -> dict[str, str]:
    values = {k: str(v) for k, v in (message.variables or {}).items()}
    values.setdefault("name", message.name)
    values.setdefault("first_name", message.name.split()[0] if message.name.split() else "")
    if extra:
        values.update(extra)
    return values


def _sms(campaign: Campaign, message: Claimed, now: datetime, rules: WindowRules) -> OutboundSms:
    sender = campaign.sender
    return OutboundSms(
        message_id=message.pk,
        to=message.address,
        sender=sender.phone_number or sender.messaging_service_sid,
        body=render(campaign.template.body, _values(message)),
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
