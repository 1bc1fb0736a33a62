"""Unconfirmed messages — handed to the provider, no answer recorded ("unknown") — looked up at
the provider where its API allows.

Twilio's Messages list finds an SMS by its recipient, sender, day and body; what Twilio says of
it is applied as its status callback would have been (forward only). SendGrid's v3 mail send has
no per-message lookup without the Email Activity add-on: its event webhook, which carries our
message id, reconciles emails, and the campaign page says so.
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from django.contrib.auth.base_user import AbstractBaseUser
from django.utils import timezone

from campaigns.models import FINISHED, ActionNotAllowed, Campaign, Channel
from campaigns.services import activity_record
from delivery.dispatch import campaign_finish_if_done, lease
from delivery.models import Message, MessageStatus
from delivery.providers import get_sms_provider
from delivery.providers.base import LookupFailed, ProviderRecord
from delivery.sending import sms_text
from delivery.services import TWILIO_STATUSES, twilio_status_apply

# Lookups per run (one or two Twilio requests each): a run stays within a few minutes.
LOOKUPS_PER_RUN = 500
# Twilio has the message but has not sent it on yet: for us, the provider has it.
TWILIO_ACCEPTED = frozenset({"accepted", "scheduled", "queued", "sending"})
NOT_FOUND = "Twilio has no record of this message: it most likely never left; retry it to send it."
EMAIL_NOT_LOOKED_UP = (
    "SendGrid cannot be asked about one email (its v3 mail send has no lookup without the Email "
    "Activity add-on): its event webhook reconciles emails when it reports."
)


@dataclass
class ReconcileReport:
    checked: int = 0
    # Our status → how many Twilio reported in it.
    found: Counter[str] = field(default_factory=Counter)
    not_found: int = 0
    # Why Twilio could not be asked (the run stopped there), or "".
    failed: str = ""

    def summary(self) -> str:
        parts = [f"{n} {MessageStatus(s).label.lower()}" for s, n in sorted(self.found.items())]
        if self.not_found:
            parts.append(f"{self.not_found} not found at Twilio")
        text = f"{self.checked} looked up" + (f": {', '.join(parts)}" if parts else "")
        return text + (f"; stopped: {self.failed}" if self.failed else "")


def unconfirmed_reconcile(
    *,
    campaign: Campaign,
    user: AbstractBaseUser | None = None,
    provider: object | None = None,
    now: datetime | None = None,
    limit: int = LOOKUPS_PER_RUN,
) -> ReconcileReport:
    """Looks the campaign's unconfirmed SMS up at Twilio and applies what it says of each."""
    campaign.require("reconcile")
    if campaign.channel != Channel.SMS:
        raise ActionNotAllowed(EMAIL_NOT_LOOKED_UP)
    provider = provider or get_sms_provider()
    now = now or timezone.now()
    report = ReconcileReport()
    sender = campaign.sender.phone_number or campaign.sender.messaging_service_sid
    unknown = Message.objects.filter(campaign=campaign, status=MessageStatus.UNKNOWN)
    for message in unknown.order_by("id")[:limit]:
        try:
            records = provider.lookup(
                to=message.address,
                sender=sender,
                body=sms_text(campaign, message),
                sent_on=_days(message.handed_at or now),
            )
        except LookupFailed as error:
            report.failed = str(error)
            break
        report.checked += 1
        record = _ours(message, records)
        if record is None:
            unknown.filter(pk=message.pk).update(error_message=NOT_FOUND)
            report.not_found += 1
            continue
        status = _status(record.status)
        if status is None:
            continue
        changed = twilio_status_apply(
            message_id=message.pk,
            status=status,
            provider_id=record.provider_id,
            error_code=record.error_code,
            error_message=record.error_message,
            at=now,
            address=message.address,
        )
        if changed:
            report.found[status] += 1
    if campaign.status in FINISHED:
        # A message found failed makes a Complete campaign one with errors.
        campaign_finish_if_done(campaign, now)
    activity_record(
        org=campaign.org,
        actor=user,
        verb="checked unconfirmed messages with Twilio",
        subject=campaign.name,
        campaign=campaign,
        detail=report.summary(),
    )
    return report


def _days(handed_at: datetime) -> list[date]:
    """The UTC days Twilio may have dated it: from its hand-over to the end of its lease."""
    first = handed_at.astimezone(UTC).date()
    last = (handed_at + lease()).astimezone(UTC).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _ours(message: Message, records: list[ProviderRecord]) -> ProviderRecord | None:
    """The record nearest its hand-over among those no other message of ours already holds."""
    held = set(
        Message.objects.filter(
            org_id=message.org_id, provider_id__in=[r.provider_id for r in records]
        )
        .exclude(pk=message.pk)
        .values_list("provider_id", flat=True)
    )
    candidates = [r for r in records if r.provider_id and r.provider_id not in held]
    if not candidates:
        return None
    handed = message.handed_at or timezone.now()
    return min(candidates, key=lambda r: abs(((r.created_at or handed) - handed).total_seconds()))


def _status(twilio_status: str) -> str | None:
    if twilio_status in TWILIO_ACCEPTED:
        return MessageStatus.SENT
    return TWILIO_STATUSES.get(twilio_status)
