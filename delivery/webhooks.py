"""Provider webhooks: public, CSRF-exempt, signature-verified with the providers' own SDK helpers.

Each handler verifies, applies the events with single-row conditional updates and answers at
once; a request that fails verification gets 403 and changes nothing (there is no DEBUG bypass).
"""

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from sendgrid.helpers.eventwebhook import EventWebhook
from twilio.request_validator import RequestValidator, compare

from delivery.links import public_url
from delivery.models import Message, MessageStatus, SuppressionReason
from delivery.sandbox import public_key_b64
from delivery.services import (
    TWILIO_STATUSES,
    event_first_time,
    inbound_sms_record,
    message_engagement_record,
    message_status_apply,
    suppression_add,
    twilio_status_apply,
)
from orgs.access import public
from orgs.parsing import NUL_REFUSED, has_nul, parse_id, parse_timestamp, request_has_nul

log = logging.getLogger(__name__)

# A signed SendGrid request older than this is a replay.
SENDGRID_MAX_AGE_SECONDS = 15 * 60
SENDGRID_STATUSES = {
    "processed": MessageStatus.SENT,
    "deferred": MessageStatus.DEFERRED,
    "delivered": MessageStatus.DELIVERED,
    "bounce": MessageStatus.BOUNCED,
    "dropped": MessageStatus.FAILED,
}
SENDGRID_SUPPRESSING_DROPS = {
    "Bounced Address": SuppressionReason.BOUNCE,
    "Invalid": SuppressionReason.INVALID,
    "Spam Reporting Address": SuppressionReason.SPAM_REPORT,
    "Unsubscribed Address": SuppressionReason.UNSUBSCRIBE,
}


def _twilio_verified(request: HttpRequest) -> bool:
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature:
        return False
    url = public_url(request.get_full_path())
    validator = RequestValidator(settings.TWILIO_AUTH_TOKEN)
    # Twilio signs the URL we gave it, so one signature settles a genuine callback; only a
    # mismatch pays for validate(), which also tries the URL with and without its port.
    exact = validator.compute_signature(url, request.POST)
    return compare(exact, signature) or validator.validate(url, request.POST, signature)


@public
@csrf_exempt
@require_POST
def twilio_status(request: HttpRequest, message_id: int) -> HttpResponse:
    if not _twilio_verified(request):
        return HttpResponseForbidden("Signature verification failed.")
    if request.POST.get("AccountSid") != settings.TWILIO_ACCOUNT_SID:
        return HttpResponseForbidden("Unknown account.")
    # Signed, but PostgreSQL refuses NUL in text (browsers' requests are refused in middleware).
    if request_has_nul(request):
        return HttpResponseBadRequest(NUL_REFUSED)
    status = TWILIO_STATUSES.get(request.POST.get("MessageStatus", ""))
    if status is not None:
        twilio_status_apply(
            message_id=message_id,
            status=status,
            provider_id=request.POST.get("MessageSid", ""),
            error_code=request.POST.get("ErrorCode", ""),
            error_message=request.POST.get("ErrorMessage", ""),
            address=request.POST.get("To") or None,
        )
    return HttpResponse(status=204)


@public
@csrf_exempt
@require_POST
def twilio_inbound(request: HttpRequest) -> HttpResponse:
    if not _twilio_verified(request):
        return HttpResponseForbidden("Signature verification failed.")
    if request.POST.get("AccountSid") != settings.TWILIO_ACCOUNT_SID:
        return HttpResponseForbidden("Unknown account.")
    if request_has_nul(request):
        return HttpResponseBadRequest(NUL_REFUSED)
    inbound_sms_record(
        from_number=request.POST.get("From", ""),
        to=request.POST.get("To", ""),
        body=request.POST.get("Body", ""),
        provider_id=request.POST.get("MessageSid", ""),
        messaging_service_sid=request.POST.get("MessagingServiceSid", ""),
    )
    # An empty TwiML answer: Twilio itself answers STOP/START/HELP (Advanced Opt-Out).
    return HttpResponse("<Response/>", content_type="text/xml")


def sendgrid_public_key() -> str:
    """The configured key, or in sandbox mode the public half of the sandbox's own key file."""
    if settings.SENDGRID_WEBHOOK_PUBLIC_KEY or settings.DELIVERY_BACKEND != "sandbox":
        return settings.SENDGRID_WEBHOOK_PUBLIC_KEY
    path = Path(settings.SANDBOX_KEY_FILE)
    return public_key_b64(path.read_text()) if path.exists() else ""


def _sendgrid_verified(request: HttpRequest) -> bool:
    key = sendgrid_public_key()
    signature = request.headers.get("X-Twilio-Email-Event-Webhook-Signature", "")
    timestamp = request.headers.get("X-Twilio-Email-Event-Webhook-Timestamp", "")
    signed_at = parse_timestamp(timestamp)
    if not (key and signature and signed_at):
        return False
    if abs(time.time() - signed_at.timestamp()) > SENDGRID_MAX_AGE_SECONDS:
        return False
    try:
        payload = request.body.decode("utf-8")
        return EventWebhook(key).verify_signature(payload, signature, timestamp)
    except (ValueError, UnicodeDecodeError):
        return False


@public
@csrf_exempt
@require_POST
def sendgrid_events(request: HttpRequest) -> HttpResponse:
    if not _sendgrid_verified(request):
        return HttpResponseForbidden("Signature verification failed.")
    try:
        events = json.loads(request.body)
    except ValueError:
        return HttpResponse("Body is not JSON.", status=400)
    if not isinstance(events, list):
        return HttpResponse("Expected a JSON array of events.", status=400)
    for event in events:
        # One unreadable event is skipped, not the batch: SendGrid would post it all again.
        if isinstance(event, dict) and isinstance(event.get("event"), str) and not has_nul(event):
            _apply_sendgrid_event(event)
    return HttpResponse(status=204)


def _apply_sendgrid_event(event: dict) -> None:
    message_id = parse_id(event.get("message_id"))
    if message_id is None:
        return  # not one of ours (SendGrid also reports mail sent outside Outreach)
    event_id, kind = str(event.get("sg_event_id", "")), event.get("event", "")
    if not event_id or not event_first_time(event_id):
        return
    address = str(event.get("email", ""))
    # sg_message_id is the send's X-Message-Id followed by ".filter…" parts.
    provider_id = str(event.get("sg_message_id", "")).split(".filter")[0]
    # An event without a usable time of its own happened, as far as we know, when it arrived.
    at = parse_timestamp(event.get("timestamp")) or datetime.now(tz=UTC)
    if kind in ("open", "click"):
        message_engagement_record(
            message_id=message_id, kind=kind, at=at, provider_id=provider_id, address=address
        )
        return
    if kind in SENDGRID_STATUSES:
        reason = str(event.get("reason") or event.get("response") or "")
        changed = message_status_apply(
            message_id=message_id,
            status=SENDGRID_STATUSES[kind],
            provider_id=provider_id,
            error_code=str(event.get("status", "")) if kind in ("bounce", "dropped") else "",
            error_message=reason,
            at=at,
            address=address,
        )
        if not changed:
            return
    if kind == "bounce" and event.get("type", "bounce") == "bounce":
        _suppress_message(message_id, SuppressionReason.BOUNCE, str(event.get("reason", "")))
    elif kind == "dropped" and str(event.get("reason")) in SENDGRID_SUPPRESSING_DROPS:
        reason = SENDGRID_SUPPRESSING_DROPS[event["reason"]]
        _suppress_message(message_id, reason, str(event["reason"]))
    elif kind == "spamreport":
        _suppress_message(message_id, SuppressionReason.SPAM_REPORT, "", address=address)
    elif kind in ("unsubscribe", "group_unsubscribe"):
        _suppress_message(message_id, SuppressionReason.UNSUBSCRIBE, "SendGrid", address=address)


def _suppress_message(
    message_id: int, reason: str, detail: str, *, address: str | None = None
) -> None:
    messages = Message.objects.filter(pk=message_id)
    if address is not None:
        messages = messages.filter(address__iexact=address)
    message = messages.only("org_id", "address").first()
    if message is not None:
        suppression_add(
            org=message.org_id,
            address=message.address,
            reason=reason,
            detail=detail,
            message=message,
        )
