"""Email through SendGrid's official SDK: one v3 mail send per ≤1,000 recipients, with timeouts.

Rendered content differs per recipient, yet SendGrid takes one `content` per request. We send
the parts every recipient shares as the content and each recipient's differing parts as
`substitutions` on their personalization (split at tag and line ends, so a greeting line or an
unsubscribe link differs, not the whole body). SendGrid caps substitutions at 100 and
10,000 bytes per personalization; a recipient over the cap is sent in a request of its own.
"""

import base64
import http.client
import json
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.error import URLError

import sendgrid
from python_http_client.exceptions import HTTPError

from delivery.providers.base import (
    Attachment,
    OutboundEmail,
    ResultKind,
    SendResult,
    parse_retry_after,
    too_late,
    wait_until,
)

log = logging.getLogger(__name__)

MAX_PERSONALIZATIONS = 1000
MAX_SUBSTITUTIONS = 100
MAX_SUBSTITUTION_BYTES = 10_000
MAX_ERROR_MESSAGE = 500
# HTML splits after each tag end and text after each line end: variables rarely contain either.
HTML_SEGMENT_END, TEXT_SEGMENT_END = ">", "\n"


@dataclass
class MailRequest:
    """One v3 mail send body and the positions, in the caller's batch, of its recipients."""

    body: dict[str, Any]
    positions: list[int]


class SendGridEmailProvider:
    """Sends email with `sendgrid.SendGridAPIClient`, classifying every outcome without raising."""

    def __init__(self, api_key: str, host: str = "https://api.sendgrid.com", timeout: float = 10):
        self.client = sendgrid.SendGridAPIClient(api_key=api_key, host=host.rstrip("/"))
        # SendGridAPIClient has no timeout argument; the python_http_client Client it wraps
        # passes this one to every urllib call (and to the clients it derives per URL segment).
        self.client.client.timeout = timeout
        self.timeout = timeout

    def send(
        self,
        batch: Sequence[OutboundEmail],
        *,
        not_before: float | None = None,
        start_by: float | None = None,
    ) -> list[SendResult]:
        """Sends each message once and returns one result per message, in input order; within
        its throttle slot when given one (delivery/providers/base.py)."""
        results: list[SendResult | None] = [None] * len(batch)
        # Planned before the slot opens: for a thousand recipients that is milliseconds of work.
        requests = plan_requests(batch)
        wait_until(not_before)
        for request in requests:
            if too_late(start_by):
                answers = [
                    SendResult(batch[p].message_id, ResultKind.NOT_SENT) for p in request.positions
                ]
            else:
                answers = self._post(request, batch)
            for position, result in zip(request.positions, answers, strict=True):
                results[position] = result
        return [r for r in results if r is not None]

    def _post(self, request: MailRequest, batch: Sequence[OutboundEmail]) -> list[SendResult]:
        ids = [batch[p].message_id for p in request.positions]
        try:
            response = self.client.client.mail.send.post(
                request_body=request.body, timeout=self.timeout
            )
        except HTTPError as exc:
            return _classify_error(ids, exc)
        except (TimeoutError, URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):
                return _all(ids, ResultKind.UNKNOWN, "timeout", f"No answer in time: {reason}")
            return _all(ids, ResultKind.UNKNOWN, "connection", f"Connection failed: {reason}")
        except Exception as exc:
            # Whatever went wrong, the request may have reached SendGrid: never resend blindly.
            log.exception("Unexpected error sending %d emails", len(ids))
            return _all(ids, ResultKind.UNKNOWN, "error", f"{type(exc).__name__}: {exc}")
        provider_id = response.headers.get("X-Message-Id", "") or ""
        return [SendResult(i, ResultKind.ACCEPTED, provider_id=provider_id) for i in ids]


def plan_requests(batch: Sequence[OutboundEmail]) -> list[MailRequest]:
    """Groups a batch into v3 mail send bodies of at most 1,000 personalizations each."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    segments = [
        (_segments(e.html, HTML_SEGMENT_END), _segments(e.text, TEXT_SEGMENT_END)) for e in batch
    ]
    for position, email in enumerate(batch):
        html, text = segments[position]
        key = (email.from_email, email.from_name, email.reply_to, email.attachments)
        # Only bodies cut into as many parts can share one content with substitutions.
        groups[(*key, len(html), len(text))].append(position)
    requests: list[MailRequest] = []
    alone: list[int] = []
    for positions in groups.values():
        for start in range(0, len(positions), MAX_PERSONALIZATIONS):
            chunk = positions[start : start + MAX_PERSONALIZATIONS]
            # Removing a recipient can split a run of differing parts into two tags: re-check.
            while chunk:
                request, too_big = _build(batch, segments, chunk)
                if not too_big:
                    requests.append(request)
                    break
                alone.extend(too_big)
                removed = set(too_big)
                chunk = [p for p in chunk if p not in removed]
    requests.extend(_build(batch, segments, [p])[0] for p in alone)
    return requests


def _build(
    batch: Sequence[OutboundEmail],
    segments: list[tuple[list[str], list[str]]],
    positions: list[int],
) -> tuple[MailRequest, list[int]]:
    """One request body for these recipients, and those whose substitutions exceed the caps."""
    emails = [batch[p] for p in positions]
    first = emails[0]
    # A fresh tag prefix per request, so no literal text in a body can be taken for a tag.
    nonce = secrets.token_hex(4)
    html, html_subs = _factor([segments[p][0] for p in positions], f"[%{nonce}h")
    text, text_subs = _factor([segments[p][1] for p in positions], f"[%{nonce}t")
    personalizations, too_big = [], []
    for position, email, subs_html, subs_text in zip(
        positions, emails, html_subs, text_subs, strict=True
    ):
        substitutions = {**subs_html, **subs_text}
        size = sum(len(k.encode()) + len(v.encode()) for k, v in substitutions.items())
        if len(emails) > 1 and (
            len(substitutions) > MAX_SUBSTITUTIONS or size > MAX_SUBSTITUTION_BYTES
        ):
            too_big.append(position)
        personalizations.append(_personalization(email, substitutions))
    body: dict[str, Any] = {
        "personalizations": personalizations,
        "from": _address(first.from_email, first.from_name),
        "content": [
            {"type": kind, "value": value}
            for kind, value in (("text/plain", text), ("text/html", html))
            if value
        ],
    }
    if first.reply_to:
        body["reply_to"] = {"email": first.reply_to}
    if first.attachments:
        body["attachments"] = [_attachment(a) for a in first.attachments]
    return MailRequest(body, positions), too_big


def _personalization(email: OutboundEmail, substitutions: dict[str, str]) -> dict[str, Any]:
    personalization: dict[str, Any] = {
        "to": [_address(email.to, email.to_name)],
        "subject": email.subject,
        # Only our id: custom args travel in every event, so no personal data goes here.
        "custom_args": {"message_id": str(email.message_id)},
        "headers": {
            "List-Unsubscribe": f"<{email.unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    }
    if substitutions:
        personalization["substitutions"] = substitutions
    return personalization


def _factor(split: list[list[str]], tag_prefix: str) -> tuple[str, list[dict[str, str]]]:
    """The parts all values share, with a tag per run of differing parts, and each tag's value."""
    reference = split[0]
    differs = [column.count(column[0]) != len(column) for column in zip(*split, strict=True)]
    template: list[str] = []
    per_value: list[dict[str, str]] = [{} for _ in split]
    i = 0
    while i < len(reference):
        if not differs[i]:
            template.append(reference[i])
            i += 1
            continue
        end = i
        while end < len(reference) and differs[end]:
            end += 1
        tag = f"{tag_prefix}{len(template)}%]"
        template.append(tag)
        for substitutions, parts in zip(per_value, split, strict=True):
            substitutions[tag] = "".join(parts[i:end])
        i = end
    return "".join(template), per_value


def _segments(value: str, end: str) -> list[str]:
    parts = value.split(end)
    return [part + end for part in parts[:-1]] + [parts[-1]]


def _address(email: str, name: str) -> dict[str, str]:
    return {"email": email, "name": name} if name else {"email": email}


def _attachment(attachment: Attachment) -> dict[str, str]:
    return {
        "content": base64.b64encode(attachment.content).decode("ascii"),
        "type": attachment.content_type,
        "filename": attachment.filename,
        "disposition": "attachment",
    }


def _classify_error(ids: list[int], exc: HTTPError) -> list[SendResult]:
    status = int(exc.status_code)
    message = _error_message(exc)
    if status == 429:
        retry_after = parse_retry_after(exc.headers) or _rate_limit_reset(exc.headers)
        return _all(ids, ResultKind.THROTTLED, "429", message, retry_after)
    if status >= 500:
        return _all(ids, ResultKind.UNKNOWN, str(status), message)
    return _all(ids, ResultKind.FAILED, str(status), message)


def _error_message(exc: HTTPError) -> str:
    try:
        errors = json.loads(exc.body)["errors"]
        return "; ".join(str(e.get("message", "")) for e in errors)[:MAX_ERROR_MESSAGE]
    except (TypeError, ValueError, KeyError, AttributeError):
        body = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else ""
        return (body or f"HTTP {exc.status_code} {exc.reason}")[:MAX_ERROR_MESSAGE]


def _rate_limit_reset(headers: Any) -> float | None:
    # SendGrid announces when its rate limit window resets as a Unix time, not Retry-After.
    reset = (headers or {}).get("X-RateLimit-Reset")
    try:
        return max(0.0, float(reset) - time.time()) if reset else None
    except ValueError:
        return None


def _all(
    ids: list[int],
    kind: ResultKind,
    code: str,
    message: str,
    retry_after: float | None = None,
) -> list[SendResult]:
    message = message[:MAX_ERROR_MESSAGE]
    return [SendResult(i, kind, "", code, message, retry_after) for i in ids]
