"""Writes of the delivery app: provider events onto messages, suppressions, replies."""

from datetime import datetime
from functools import cache

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from campaigns.models import Campaign, Channel, Sender
from delivery.keywords import reply_kind
from delivery.models import (
    FINAL_STATUSES,
    InboundMessage,
    Message,
    MessageStatus,
    ProcessedEvent,
    ReplyKind,
    Suppression,
    SuppressionReason,
    statuses_before,
)
from orgs.models import Organization
from recipients.models import Contact

# ---------------------------------------------------------------- provider events


def message_status_apply(
    *,
    message_id: int,
    status: str,
    provider_id: str = "",
    error_code: str = "",
    error_message: str = "",
    at: datetime | None = None,
    address: str | None = None,
) -> bool:
    """Moves one message forward to `status` (never backwards); False when nothing changed.

    The provider id, and the address when given, must match the message: a callback can never
    touch a message other than the one the provider sent, whatever id it carries.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            _status_update_sql(status, bool(provider_id), bool(error_code), address is not None),
            {
                "id": message_id,
                "status": status,
                "provider_id": provider_id,
                "error_code": str(error_code)[:20],
                "error_message": error_message[:500],
                "at": at or timezone.now(),
                "address": address,
            },
        )
        return cursor.rowcount == 1


# What Twilio's status words mean for us; its callbacks and its Messages API use the same ones.
TWILIO_STATUSES = {
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.DELIVERED,
    "undelivered": MessageStatus.UNDELIVERED,
    "failed": MessageStatus.FAILED,
    "canceled": MessageStatus.FAILED,
}
# Twilio error codes after which the number must not be messaged again.
TWILIO_OPT_OUT_CODES = frozenset({"21610"})


def twilio_status_apply(
    *,
    message_id: int,
    status: str,
    provider_id: str,
    error_code: str = "",
    error_message: str = "",
    at: datetime | None = None,
    address: str | None = None,
) -> bool:
    """What Twilio says of one message, applied as `message_status_apply` does; an opt-out error
    code also suppresses the number. False when nothing changed."""
    changed = message_status_apply(
        message_id=message_id,
        status=status,
        provider_id=provider_id,
        error_code=error_code,
        error_message=error_message,
        at=at,
        address=address,
    )
    if changed and error_code in TWILIO_OPT_OUT_CODES:
        message = Message.objects.filter(pk=message_id).only("org_id", "address").first()
        if message is not None:
            suppression_add(
                org=message.org_id,
                address=message.address,
                reason=SuppressionReason.PROVIDER_OPT_OUT,
                detail=f"Twilio {error_code}",
                message=message,
            )
    return changed


@cache
def _status_update_sql(
    status: str, with_provider_id: bool, with_error: bool, with_address: bool
) -> str:
    # One hand-written UPDATE, its text built once per shape: this runs once per provider
    # callback, and building it through the ORM cost as much as the database spent on it.
    assignments = ["status = %(status)s"]
    if with_provider_id:
        assignments.append("provider_id = %(provider_id)s")
    if with_error:
        assignments += ["error_code = %(error_code)s", "error_message = %(error_message)s"]
    if status == MessageStatus.DELIVERED:
        assignments.append("delivered_at = %(at)s")
    if status in FINAL_STATUSES:
        assignments += ["final_at = %(at)s", "lease_until = NULL"]
    if status != MessageStatus.DEFERRED:
        assignments.append("sent_at = COALESCE(sent_at, %(at)s)")
    # Our own status names, written into the statement rather than bound on every call.
    before = ", ".join(f"'{s}'" for s in statuses_before(status))
    conditions = ["id = %(id)s", f"status IN ({before})"]
    if with_provider_id:
        # An "unknown" message has no provider id yet; the callback reconciles it.
        conditions.append("(provider_id = %(provider_id)s OR provider_id = '')")
    if with_address:
        conditions.append("UPPER(address) = UPPER(%(address)s)")
    return (
        f"UPDATE {Message._meta.db_table} SET {', '.join(assignments)}"
        f" WHERE {' AND '.join(conditions)}"
    )


def message_engagement_record(
    *, message_id: int, kind: str, at: datetime, provider_id: str, address: str
) -> bool:
    """Records the first open or click of an email."""
    field = {"open": "opened_at", "click": "clicked_at"}[kind]
    messages = Message.objects.filter(pk=message_id, address__iexact=address, **{field: None})
    if provider_id:
        messages = messages.filter(provider_id=provider_id)
    changes = {field: at}
    first_open = False
    if kind == "click":
        # A click without a recorded open still means the email was opened.
        first_open = messages.filter(opened_at=None).exists()
        changes["opened_at"] = Coalesce(F("opened_at"), at)
    message = messages.only("campaign_id").first()
    if message is None or messages.update(**changes) != 1:
        return False
    counter = "opened_count" if kind == "open" else "clicked_count"
    counters = {counter: F(counter) + 1}
    if first_open:
        counters["opened_count"] = F("opened_count") + 1
    Campaign.objects.filter(pk=message.campaign_id).update(**counters)
    return True


def event_first_time(event_id: str) -> bool:
    """Claims a provider event id; False when it was already processed (a redelivery)."""
    try:
        with transaction.atomic():
            ProcessedEvent.objects.create(event_id=event_id[:100])
    except IntegrityError:
        return False
    return True


# ---------------------------------------------------------------- suppressions


def suppression_add(
    *,
    org: Organization | int,
    address: str,
    reason: str,
    detail: str = "",
    message: Message | None = None,
    user: AbstractBaseUser | None = None,
) -> bool:
    """Adds the address to the organization's suppression list; False if it was already there.

    Its messages still queued become Opted out at once, and the claim re-checks the list, so a
    STOP that arrives mid-campaign stops the very next message.
    """
    org_id = org if isinstance(org, int) else org.pk
    _, created = Suppression.objects.get_or_create(
        org_id=org_id,
        address=address,
        defaults={
            "reason": reason,
            "detail": detail[:255],
            "message": message,
            "created_by": user,
        },
    )
    # Through the contact: messages are indexed by contact, not by address (a STOP must not
    # scan the organization's every message), and a message's address is its contact's.
    contact = Contact.objects.filter(org_id=org_id, address=address).values("pk")
    Message.objects.filter(contact__in=contact, status=MessageStatus.QUEUED).update(
        status=MessageStatus.OPTED_OUT, final_at=timezone.now()
    )
    return created


def suppression_remove(*, org: Organization | int, address: str) -> bool:
    org_id = org if isinstance(org, int) else org.pk
    deleted, _ = Suppression.objects.filter(org_id=org_id, address=address).delete()
    return bool(deleted)


def suppressed_pairs(pairs: set[tuple[int, str]]) -> set[tuple[int, str]]:
    """Which of these (organization, address) pairs are suppressed, in one statement (on
    PostgreSQL a join with the pairs as two arrays, which the (org, address) index serves)."""
    if not pairs:
        return set()
    if connection.vendor != "postgresql":
        wanted = Q()
        for org_id, address in pairs:
            wanted |= Q(org_id=org_id, address=address)
        return set(Suppression.objects.filter(wanted).values_list("org_id", "address"))
    orgs, addresses = zip(*sorted(pairs), strict=True)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT s.org_id, s.address FROM {Suppression._meta.db_table} s"
            f" JOIN unnest(CAST(%s AS bigint[]), CAST(%s AS varchar[])) AS v(org_id, address)"
            f" ON s.org_id = v.org_id AND s.address = v.address",
            [list(orgs), list(addresses)],
        )
        return {(org_id, address) for org_id, address in cursor.fetchall()}


def suppressions_apply_to_list(*, recipient_list_id: int, org_id: int) -> int:
    """Marks a new list's messages to suppressed addresses Opted out; returns how many."""
    message, suppression = Message._meta.db_table, Suppression._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {message} SET status = %s, final_at = %s WHERE recipient_list_id = %s"
            f" AND status = %s AND address IN"
            f" (SELECT address FROM {suppression} WHERE org_id = %s)",
            [
                MessageStatus.OPTED_OUT,
                timezone.now(),
                recipient_list_id,
                MessageStatus.QUEUED,
                org_id,
            ],
        )
        return cursor.rowcount


def suppressions_add_bulk(
    *,
    org_id: int,
    addresses: list[str],
    reason: str,
    detail: str = "",
    user: AbstractBaseUser | None = None,
    at: datetime | None = None,
) -> tuple[int, int]:
    """`suppression_add` for many distinct addresses at once; returns (added, messages opted out).

    One INSERT … ON CONFLICT DO NOTHING on the (org, address) constraint and one UPDATE per
    batch, however many addresses (a batch is all of them on PostgreSQL, 500 on SQLite, whose
    statements take at most 999 parameters).
    """
    now = at or timezone.now()
    table = Suppression._meta.db_table
    user_id = user.pk if user is not None else None
    batch_size = len(addresses) if connection.vendor == "postgresql" else 500
    added = opted_out = 0
    for start in range(0, len(addresses), batch_size or 1):
        batch = addresses[start : start + batch_size]
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(
                    f"INSERT INTO {table} (org_id, address, reason, detail, created_by_id,"
                    f" created_at) SELECT %s, a, %s, %s, %s, %s"
                    f" FROM unnest(CAST(%s AS varchar(254)[])) a"
                    f" ON CONFLICT (org_id, address) DO NOTHING",
                    [org_id, reason, detail[:255], user_id, now, batch],
                )
            else:
                cursor.executemany(
                    f"INSERT INTO {table} (org_id, address, reason, detail, created_by_id,"
                    f" created_at) VALUES (%s, %s, %s, %s, %s, %s)"
                    f" ON CONFLICT (org_id, address) DO NOTHING",
                    [(org_id, address, reason, detail[:255], user_id, now) for address in batch],
                )
            added += cursor.rowcount
        # The same messages as suppression_add's, reached through their contacts: a message's
        # address is its contact's (the import makes both from one row), and contacts are
        # indexed by (org, address) and messages by contact, where messages' address is not.
        contacts = Contact.objects.filter(org_id=org_id, address__any=batch)
        opted_out += Message.objects.filter(
            org_id=org_id, status=MessageStatus.QUEUED, contact__in=contacts
        ).update(status=MessageStatus.OPTED_OUT, final_at=now)
    return added, opted_out


# ---------------------------------------------------------------- inbound SMS


def inbound_sms_record(
    *, from_number: str, to: str, body: str, provider_id: str, messaging_service_sid: str = ""
) -> InboundMessage | None:
    """Records an SMS sent to one of our numbers in the one organization that owns it; None for
    a number of nobody's, or a redelivery."""
    sender = inbound_sender(to=to, messaging_service_sid=messaging_service_sid)
    if sender is None:
        return None
    return _record_for_org(sender, from_number, body, reply_kind(body), provider_id)


def inbound_sender(*, to: str, messaging_service_sid: str) -> Sender | None:
    """The sender an inbound SMS was addressed to: its number first, else its Messaging Service.

    Numbers and services are unique across organizations; a number in one organization's
    service may still be another sender's own number, and then the number decides.
    """
    senders = Sender.objects.filter(channel=Channel.SMS).select_related("org")
    if to and (sender := senders.filter(phone_number=to).first()):
        return sender
    if messaging_service_sid:
        return senders.filter(messaging_service_sid=messaging_service_sid).first()
    return None


def _record_for_org(
    sender: Sender, from_number: str, body: str, kind: ReplyKind, provider_id: str
) -> InboundMessage | None:
    org = sender.org
    contact, _ = Contact.objects.get_or_create(org=org, address=from_number)
    last = (
        Message.objects.filter(contact=contact, sent_at__isnull=False)
        .order_by("-sent_at")
        .values_list("campaign_id", flat=True)
        .first()
    )
    # Stored with the organization as when numbers could be shared: a redelivery still matches.
    unique_id = f"{provider_id}:{org.pk}"
    try:
        with transaction.atomic():
            reply = InboundMessage.objects.create(
                org=org,
                contact=contact,
                campaign_id=last,
                sender=sender,
                inbox=sender.inbox_name,
                body=body,
                kind=kind,
                provider_id=unique_id[:64],
            )
    except IntegrityError:
        return None  # a redelivered webhook
    if kind == ReplyKind.REPLY and last is not None:
        Campaign.objects.filter(pk=last).update(replied_count=F("replied_count") + 1)
    if kind == ReplyKind.OPT_OUT:
        suppression_add(
            org=org, address=from_number, reason=SuppressionReason.STOP_REPLY, detail=body[:50]
        )
    elif kind == ReplyKind.OPT_IN:
        suppression_remove(org=org, address=from_number)
    return reply
