"""Messages: one per recipient of a list, driven from queued to a final status."""

from django.conf import settings
from django.db import models
from django.utils.timezone import now

from campaigns.models import Campaign
from orgs.models import Organization
from recipients.models import Contact, RecipientList


class MessageStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    UNDELIVERED = "undelivered", "Undelivered"
    BOUNCED = "bounced", "Bounced"
    FAILED = "failed", "Failed"
    OPTED_OUT = "opted_out", "Opted out"
    ASSUMED_DELIVERED = "assumed_delivered", "Assumed delivered"
    NOT_CONTACTED = "not_contacted", "Not contacted (end date reached)"
    CANCELLED = "cancelled", "Cancelled"
    UNKNOWN = "unknown", "Unknown"
    DEFERRED = "deferred", "Deferred"


# Statuses after which nothing more will happen to a message on its own.
FINAL_STATUSES = frozenset(
    {
        MessageStatus.DELIVERED,
        MessageStatus.UNDELIVERED,
        MessageStatus.BOUNCED,
        MessageStatus.FAILED,
        MessageStatus.OPTED_OUT,
        MessageStatus.ASSUMED_DELIVERED,
        MessageStatus.NOT_CONTACTED,
        MessageStatus.CANCELLED,
    }
)
# Counted as "sent" in progress: the provider has (or may have) the message.
SENT_STATUSES = frozenset(
    {
        MessageStatus.SENT,
        MessageStatus.DELIVERED,
        MessageStatus.UNDELIVERED,
        MessageStatus.BOUNCED,
        MessageStatus.ASSUMED_DELIVERED,
        MessageStatus.UNKNOWN,
        MessageStatus.DEFERRED,
    }
)


# Not (yet) handed to a provider: left out of "sent" in progress figures.
NOT_SENT_STATUSES = frozenset(
    {
        MessageStatus.QUEUED,
        MessageStatus.SENDING,
        MessageStatus.CANCELLED,
        MessageStatus.NOT_CONTACTED,
        MessageStatus.OPTED_OUT,
    }
)


class Message(models.Model):
    # Foreign keys lean on the composite indexes below: every index slows a million-row import.
    # The database checks none of them again for every row: a message is only ever created by
    # the import, in the transaction that creates its list, with org and campaign taken from
    # that list; the checks, deferred to commit, cost a tenth of an import's time. Deleting
    # goes through Django, which cascades to the messages.
    org = models.ForeignKey(
        Organization,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    campaign = models.ForeignKey(
        Campaign,
        on_delete=models.CASCADE,
        related_name="messages",
        db_index=False,
        db_constraint=False,
    )
    recipient_list = models.ForeignKey(
        RecipientList,
        on_delete=models.CASCADE,
        related_name="messages",
        db_index=False,
        db_constraint=False,
    )
    # The contact is the one of org and address, both on the row (checking it cost a fifth).
    contact = models.ForeignKey(
        Contact,
        on_delete=models.CASCADE,
        related_name="messages",
        db_index=False,
        db_constraint=False,
    )
    # Copied from the upload so that the message shows what was sent even if the contact changes.
    address = models.CharField(max_length=254)
    name = models.CharField(max_length=200, blank=True)
    timezone = models.CharField(max_length=64)
    variables = models.JSONField(default=dict, blank=True)
    line = models.PositiveIntegerField(help_text="Line of the uploaded file.")
    status = models.CharField(
        max_length=20, choices=MessageStatus.choices, default=MessageStatus.QUEUED
    )
    provider_id = models.CharField(max_length=64, blank=True)
    error_code = models.CharField(max_length=20, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    # The earliest UTC instant the dispatcher needs to look at this message again; a lower bound
    # that it moves forward, so that a tick reads only due messages whatever the queue's size.
    eligible_at = models.DateTimeField(default=now)
    # A claim: the message is "sending" until this instant; an expired lease is never resent.
    lease_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Set, and committed, just before the provider call: a claimed message without it was never
    # handed over and may be released again; one with it may have left and is never resent.
    handed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=now)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    final_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["recipient_list", "status"]),
            models.Index(fields=["campaign", "status", "id"]),
            # The messages page walks a campaign in id order (keyset), unfiltered by status.
            models.Index(fields=["campaign", "id"], name="message_campaign_page"),
            # The tick reads due messages in (eligible_at, id) order: with id in the index, a
            # million messages due at one instant need no sort, and LIMIT stops the scan early.
            models.Index(
                fields=["campaign", "eligible_at", "id"],
                name="message_due",
                condition=models.Q(status="queued"),
            ),
            models.Index(
                fields=["lease_until"],
                name="message_leased",
                condition=models.Q(status="sending"),
            ),
            models.Index(
                fields=["provider_id"],
                name="message_provider_id",
                condition=~models.Q(provider_id=""),
            ),
            models.Index(
                fields=["sent_at"],
                name="message_awaiting_status",
                condition=models.Q(status="sent"),
            ),
        ]
        constraints = [
            # A list reaches each person once: the import drops a repeated address by this
            # instead of remembering addresses. Also a contact's way to its timeline.
            models.UniqueConstraint(
                fields=["contact", "recipient_list"], name="one_message_per_contact_per_list"
            )
        ]

    def __str__(self) -> str:
        return f"{self.address} ({self.status})"


# How far along its life a status is. A provider event may only move a message forward:
# callbacks arrive out of order, and a late "sent" must never undo "delivered".
STATUS_RANK: dict[str, int] = {
    MessageStatus.QUEUED: 0,
    MessageStatus.SENDING: 1,
    MessageStatus.UNKNOWN: 2,
    MessageStatus.SENT: 3,
    MessageStatus.DEFERRED: 4,
    MessageStatus.ASSUMED_DELIVERED: 5,
    MessageStatus.DELIVERED: 6,
    MessageStatus.UNDELIVERED: 6,
    MessageStatus.BOUNCED: 6,
    MessageStatus.FAILED: 6,
    MessageStatus.OPTED_OUT: 6,
    MessageStatus.NOT_CONTACTED: 6,
    MessageStatus.CANCELLED: 6,
}
# What we did not send stays unsent whatever a provider later says about it.
_NEVER_SENT = {MessageStatus.QUEUED, MessageStatus.NOT_CONTACTED, MessageStatus.CANCELLED}


def statuses_before(status: str) -> list[str]:
    """The statuses a provider event may move a message from to reach `status`."""
    rank = STATUS_RANK[status]
    return [s for s, r in STATUS_RANK.items() if r < rank and s not in _NEVER_SENT] + (
        [MessageStatus.DEFERRED] if status == MessageStatus.DEFERRED else []
    )


class SuppressionReason(models.TextChoices):
    STOP_REPLY = "stop_reply", "STOP reply"
    UNSUBSCRIBE = "unsubscribe", "Unsubscribe link"
    BOUNCE = "bounce", "Bounce"
    SPAM_REPORT = "spam_report", "Spam report"
    PROVIDER_OPT_OUT = "provider_opt_out", "Provider: recipient opted out"
    INVALID = "invalid", "Provider: invalid address"
    MANUAL = "manual", "Added by hand"
    CSV_IMPORT = "csv_import", "CSV import"


class Suppression(models.Model):
    """An address of the organization that must never be sent to again, and how it got here."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="suppressions")
    address = models.CharField(max_length=254)
    reason = models.CharField(max_length=20, choices=SuppressionReason.choices)
    detail = models.CharField(max_length=255, blank=True)
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["org", "address"], name="one_suppression_per_address")
        ]

    def __str__(self) -> str:
        return f"{self.address} ({self.get_reason_display()})"


class ReplyKind(models.TextChoices):
    REPLY = "reply", "Reply"
    OPT_OUT = "opt_out", "Opt-out keyword"
    OPT_IN = "opt_in", "Opt-in keyword"
    HELP = "help", "Help keyword"


class InboundMessage(models.Model):
    """An SMS a contact sent us: a reply on their timeline, or a keyword acted upon."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="replies")
    # The campaign that last messaged them, which the reply is attributed to.
    campaign = models.ForeignKey(
        Campaign, null=True, blank=True, on_delete=models.SET_NULL, related_name="replies"
    )
    sender = models.ForeignKey(
        "campaigns.Sender", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    inbox = models.CharField(max_length=100, blank=True)
    body = models.TextField()
    kind = models.CharField(max_length=10, choices=ReplyKind.choices, default=ReplyKind.REPLY)
    provider_id = models.CharField(max_length=64, unique=True)
    received_at = models.DateTimeField(default=now)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["org", "kind", "received_at"])]

    def __str__(self) -> str:
        return f"{self.contact} {self.kind}: {self.body[:40]}"


class ProcessedEvent(models.Model):
    """A provider event id already applied, so that a redelivered event changes nothing."""

    event_id = models.CharField(max_length=100, primary_key=True)
    received_at = models.DateTimeField(default=now)

    def __str__(self) -> str:
        return self.event_id


class MessageCount(models.Model):
    """How many messages of a list are in each status, kept exact by database triggers.

    Pages read progress and status counts here instead of counting a million rows per view; the
    triggers (migration 0005) see every change, including bulk updates, in the same transaction.
    """

    recipient_list = models.ForeignKey(
        RecipientList, on_delete=models.CASCADE, related_name="message_counts", db_constraint=False
    )
    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="message_counts", db_constraint=False
    )
    status = models.CharField(max_length=20, choices=MessageStatus.choices)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["recipient_list", "status"], name="one_count_per_status"
            )
        ]
        indexes = [models.Index(fields=["campaign", "status"])]

    def __str__(self) -> str:
        return f"{self.recipient_list_id} {self.status}: {self.count}"


class SendHour(models.Model):
    """Messages handed to the provider per campaign and UTC hour, for the sends-per-hour chart."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="send_hours")
    hour = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["hour"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "hour"], name="one_send_hour_per_campaign")
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id} {self.hour:%Y-%m-%d %H}:00 {self.count}"
