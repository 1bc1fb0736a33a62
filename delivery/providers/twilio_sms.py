"""SMS through Twilio's official SDK: one pooled client, a timeout on every call, no resends."""

import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from delivery.providers.base import (
    REQUESTS_IN_FLIGHT,
    LookupFailed,
    OutboundSms,
    ProviderRecord,
    ResultKind,
    SendResult,
    parse_retry_after,
    too_late,
    wait_until,
)

log = logging.getLogger(__name__)

OPT_OUT_CODES = frozenset({21610})
# Invalid or non-mobile "To": the number itself is the problem, so a retry cannot help.
BAD_NUMBER_CODES = frozenset({21211, 21614})
THROTTLE_CODES = frozenset({20429})
MAX_ERROR_MESSAGE = 500
TWILIO_API = "https://api.twilio.com"
# A call that spends this many times longer waiting than computing is worth a thread.
IO_BOUND_FACTOR = 4
# Messages read per lookup: a number gets few texts from one sender in a day.
LOOKUP_LIMIT = 50


class _PooledHttpClient(TwilioHttpClient):
    """TwilioHttpClient with a connection pool sized for our threads and per-thread last headers."""

    def __init__(self, *, timeout: float, pool_size: int, base_url: str) -> None:
        super().__init__(pool_connections=True, timeout=timeout, logger=log)
        # requests re-reads proxy and CA variables from os.environ on every call, a quarter of
        # each call's CPU at our rate: read the same variables once, here, instead.
        self.proxy = requests.utils.get_environ_proxies(base_url)
        self.session.trust_env = False
        self.session.verify = (
            os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        )
        # The SDK only mounts a pool for https://; the sandbox speaks plain http.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self._local = threading.local()

    def request(self, *args: Any, **kwargs: Any) -> Response:
        response = super().request(*args, **kwargs)
        # The SDK's exception drops the headers; Retry-After is read back from here.
        self._local.headers = response.headers
        return response

    def last_headers(self) -> Any:
        """Headers of the last response this thread received (empty when none)."""
        return getattr(self._local, "headers", None) or {}

    def clear_last_headers(self) -> None:
        """Forgets the last response so a failed call cannot report a previous call's headers."""
        self._local.headers = None

    # The SDK logs every request and response at INFO; at our volume that belongs under DEBUG.
    def log_request(self, kwargs: dict[str, Any]) -> None:
        if log.isEnabledFor(logging.DEBUG):
            super().log_request(kwargs)

    def log_response(self, status_code: int, response: Any) -> None:
        if log.isEnabledFor(logging.DEBUG):
            super().log_response(status_code, response)


class TwilioSmsProvider:
    """Sends SMS with `twilio.rest.Client`, classifying every outcome without raising."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        base_url: str = "",
        timeout: float = 10,
        *,
        max_workers: int = REQUESTS_IN_FLIGHT,
    ) -> None:
        self.http_client = _PooledHttpClient(
            timeout=timeout, pool_size=max_workers, base_url=base_url or TWILIO_API
        )
        self.client = Client(account_sid, auth_token, http_client=self.http_client)
        if base_url:
            # Every URL is built from its domain's base_url (Domain.absolute_url).
            self.client.api.base_url = base_url.rstrip("/")
            self.client.messaging.base_url = base_url.rstrip("/")
        self.max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def send(
        self,
        batch: Sequence[OutboundSms],
        *,
        not_before: float | None = None,
        start_by: float | None = None,
    ) -> list[SendResult]:
        """Sends each message once and returns one result per message, in input order; within
        its throttle slot when given one (delivery/providers/base.py)."""
        if not batch:
            return []
        wait_until(not_before)
        # Threads pay only when waiting on the provider dominates (Twilio: ~100 ms a call);
        # against a fast endpoint they just contend for the GIL. The first call tells which.
        wall, cpu = time.perf_counter(), time.thread_time()
        first = self.send_one(batch[0], start_by=start_by)
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        rest = batch[1:]
        if len(rest) > 1 and self.max_workers > 1 and wall > IO_BOUND_FACTOR * cpu:
            return [
                first,
                *self._executor().map(lambda s: self.send_one(s, start_by=start_by), rest),
            ]
        return [first, *(self.send_one(sms, start_by=start_by) for sms in rest)]

    def send_one(self, sms: OutboundSms, *, start_by: float | None = None) -> SendResult:
        """Sends one message and classifies the outcome; never raises."""
        if too_late(start_by):
            return SendResult(sms.message_id, ResultKind.NOT_SENT)
        params: dict[str, Any] = {
            "to": sms.to,
            "body": sms.body,
            "status_callback": sms.status_callback,
        }
        if sms.sender.startswith("MG"):
            params["messaging_service_sid"] = sms.sender
        else:
            params["from_"] = sms.sender
        if sms.validity_period is not None:
            params["validity_period"] = sms.validity_period
        self.http_client.clear_last_headers()
        try:
            message = self.client.messages.create(**params)
        except TwilioRestException as exc:
            return self._classify(sms.message_id, exc.status, exc.code, _clean(exc.msg))
        except TwilioServiceException as exc:
            detail = _clean(exc.detail or exc.title or "")
            return self._classify(sms.message_id, exc.status, exc.code, detail)
        except requests.Timeout as exc:
            return _unknown(sms.message_id, "timeout", f"No answer within the timeout: {exc}")
        except requests.RequestException as exc:
            return _unknown(sms.message_id, "connection", f"Connection failed: {exc}")
        except Exception as exc:
            # Whatever went wrong, the request may have reached Twilio: never resend blindly.
            log.exception("Unexpected error sending message %s", sms.message_id)
            return _unknown(sms.message_id, "error", f"{type(exc).__name__}: {exc}")
        return SendResult(sms.message_id, ResultKind.ACCEPTED, provider_id=message.sid or "")

    def sender_problem(self, *, phone_number: str, messaging_service_sid: str) -> str | None:
        """Why this account cannot send as the number or service, or None when it owns them."""
        try:
            if phone_number and not any(
                n.phone_number == phone_number
                for n in self.client.incoming_phone_numbers.list(phone_number=phone_number)
            ):
                return (
                    f"{phone_number} is not a number of the Twilio account {_masked(self.client)}. "
                    "Buy or port it in Twilio first, or check TWILIO_ACCOUNT_SID."
                )
            if messaging_service_sid:
                self.client.messaging.v1.services(messaging_service_sid).fetch()
        except TwilioRestException as exc:
            if exc.status == 404:
                return (
                    f"{messaging_service_sid} is not a Messaging Service of the Twilio account "
                    f"{_masked(self.client)}."
                )
            return f"Twilio refused the check ({exc.status}): {_clean(exc.msg)}"
        except requests.RequestException:
            return "Twilio could not be reached to check this sender; try again in a minute."
        return None

    def lookup(
        self, *, to: str, sender: str, body: str, sent_on: Sequence[date]
    ) -> list[ProviderRecord]:
        """The messages Twilio holds to `to` from `sender` (a number or Messaging Service) with
        this body, sent on one of these UTC days, else the newest not sent yet; raises
        LookupFailed (never an SDK error) when Twilio cannot be asked.

        The Messages list filtered by To, From and DateSent; a message still queued at Twilio
        has no DateSent yet, so the newest to that number are read too when the days find none.
        Twilio may add to a body (Advanced Opt-Out's footer), so a body that begins with ours
        matches.
        """
        service = sender.startswith("MG")
        filters: dict[str, Any] = {"to": to} if service else {"to": to, "from_": sender}
        try:
            found = [
                m
                for day in sent_on
                for m in self.client.messages.list(
                    **filters, date_sent=day.isoformat(), limit=LOOKUP_LIMIT
                )
            ]
            if not any(_same(m, body, sender) for m in found):
                found = self.client.messages.list(**filters, limit=LOOKUP_LIMIT)
        except TwilioRestException as exc:
            detail = f"Twilio refused the lookup ({exc.status}): {_clean(exc.msg)}"
            raise LookupFailed(detail) from None
        except requests.RequestException:
            raise LookupFailed("Twilio could not be reached; try again in a minute.") from None
        except Exception as exc:
            log.exception("Unexpected error looking up a message to %s", to)
            raise LookupFailed(f"The lookup failed ({type(exc).__name__}).") from None
        return [
            ProviderRecord(
                provider_id=m.sid or "",
                status=str(m.status or ""),
                created_at=m.date_created,
                error_code=str(m.error_code or ""),
                error_message=str(m.error_message or "")[:MAX_ERROR_MESSAGE],
            )
            for m in found
            if _same(m, body, sender)
        ]

    def close(self) -> None:
        """Stops the worker threads and closes pooled connections."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self.http_client.session is not None:
            self.http_client.session.close()

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="twilio-send")
            return self._pool

    def _classify(self, message_id: int, status: int, code: Any, message: str) -> SendResult:
        code_number = code if isinstance(code, int) else _int_or_none(code)
        error_code = str(code if code is not None else status)
        message = message[:MAX_ERROR_MESSAGE]
        if status == 429 or code_number in THROTTLE_CODES:
            retry_after = parse_retry_after(self.http_client.last_headers())
            return SendResult(
                message_id, ResultKind.THROTTLED, "", error_code, message, retry_after
            )
        if code_number in OPT_OUT_CODES:
            return SendResult(message_id, ResultKind.OPTED_OUT, "", error_code, message)
        if code_number in BAD_NUMBER_CODES or 400 <= status < 500:
            # Twilio refused this message (a bad number, or another 4xx): it was not sent.
            return SendResult(message_id, ResultKind.FAILED, "", error_code, message)
        # 5xx (or anything stranger): Twilio may have queued it before failing to answer.
        return SendResult(message_id, ResultKind.UNKNOWN, "", error_code, message)


def _same(message: Any, body: str, sender: str) -> bool:
    """Whether a listed message is ours: our body (perhaps with Twilio's footer), our service."""
    if sender.startswith("MG") and message.messaging_service_sid != sender:
        return False
    return bool(body) and str(message.body or "").startswith(body)


def _masked(client: Client) -> str:
    return f"{client.account_sid[:6]}…{client.account_sid[-4:]}"


def _unknown(message_id: int, code: str, message: str) -> SendResult:
    return SendResult(message_id, ResultKind.UNKNOWN, "", code, message[:MAX_ERROR_MESSAGE])


def _clean(message: str) -> str:
    # The SDK prefixes every error with what it was doing; Twilio's own words are what matter.
    return str(message).removeprefix("Unable to create record: ")


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
