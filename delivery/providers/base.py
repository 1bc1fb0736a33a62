"""Provider-neutral values: what the engine hands a provider and what it gets back."""

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

# How many requests to a provider one worker keeps open at once (delivery/sending.py): also the
# size of a provider's connection pool, so that no request waits for a connection.
REQUESTS_IN_FLIGHT = 16


@dataclass(frozen=True)
class OutboundSms:
    message_id: int
    to: str
    # An E.164 number, or a Twilio Messaging Service SID ("MG…") that picks the number itself.
    sender: str
    body: str
    status_callback: str
    # Seconds the provider may keep the message queued; Twilio allows 1..36000.
    validity_period: int | None = None


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    content: bytes


@dataclass(frozen=True)
class OutboundEmail:
    message_id: int
    to: str
    to_name: str
    from_email: str
    from_name: str
    reply_to: str
    subject: str
    html: str
    text: str
    unsubscribe_url: str
    attachments: tuple[Attachment, ...] = ()


class ResultKind(StrEnum):
    ACCEPTED = "accepted"
    OPTED_OUT = "opted_out"
    FAILED = "failed"
    THROTTLED = "throttled"
    # The provider may or may not have the message (5xx, timeout): it must never be resent blindly.
    UNKNOWN = "unknown"
    # The request never left: its throttle slot closed before it could start (see `start_by`).
    NOT_SENT = "not_sent"


@dataclass(frozen=True)
class SendResult:
    message_id: int
    kind: ResultKind
    provider_id: str = ""
    error_code: str = ""
    error_message: str = ""
    retry_after: float | None = None


# A batch may come with its throttle slot, as `time.monotonic()` instants: no request before
# `not_before`, none after `start_by`. A provider does what it can before the slot opens
# (planning requests), waits for it, and reports NOT_SENT for a request it could not start in time.


def wait_until(not_before: float | None) -> None:
    """Sleeps until the `not_before` instant, if it is still ahead."""
    if not_before is not None and (delay := not_before - time.monotonic()) > 0:
        time.sleep(delay)


def too_late(start_by: float | None) -> bool:
    """Whether a request starting now would start after `start_by`."""
    return start_by is not None and time.monotonic() > start_by


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), else None."""
    value = (headers or {}).get("Retry-After") or (headers or {}).get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.replace(".", "", 1).isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class ProviderRecord:
    """A message as the provider holds it, found by looking it up (an SMS provider's `lookup`)."""

    provider_id: str
    # The provider's own word for where it is ("delivered", "failed", …).
    status: str
    created_at: datetime | None = None
    error_code: str = ""
    error_message: str = ""


class LookupFailed(Exception):
    """The provider could not be asked; its message says why, for the page."""
