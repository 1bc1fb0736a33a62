"""A local stand-in for Twilio and SendGrid: their send APIs, and signed callbacks afterwards.

It speaks the subset of Twilio's Messages API and SendGrid's v3 mail send that Outreach uses,
over real HTTP, so the official SDKs talk to it unchanged. It records every request it receives
and later posts status callbacks, inbound replies and event batches to our webhooks, signed
exactly as the real services sign them. Outcomes derive from (seed, message id), so a seeded
run is reproducible. It keeps no state on disk except the SendGrid signing key file.
"""

import base64
import contextlib
import dataclasses
import hashlib
import heapq
import itertools
import json
import logging
import os
import queue
import re
import secrets
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twilio.request_validator import RequestValidator

log = logging.getLogger(__name__)

# Recipient numbers ending in these digits make the Messages API refuse the message (HTTP 400)
# with the Twilio error of the same number; any other E.164 number is accepted.
TWILIO_ERROR_SUFFIXES: dict[str, tuple[int, str]] = {
    "0021610": (21610, "Attempt to send to unsubscribed recipient"),
    "0021211": (21211, "The 'To' number is not a valid phone number."),
    "0021614": (21614, "'To' number is not a valid mobile number"),
    "0021408": (
        21408,
        "Permission to send an SMS has not been enabled for the region indicated by the 'To'"
        " number",
    ),
}
# A Messaging Service picks the sending number itself; in the sandbox it always picks this one.
MESSAGING_SERVICE_NUMBER = "+15005550006"
TWILIO_API_VERSION = "2010-04-01"
# Final-status error codes Twilio reports in status callbacks.
TWILIO_UNDELIVERED_CODES = ("30003", "30005", "30006")
TWILIO_FAILED_CODES = ("30008",)
SENDGRID_MAX_PERSONALIZATIONS = 1000
SENDGRID_MAX_SUBSTITUTIONS = 100
SENDGRID_MAX_SUBSTITUTION_BYTES = 10_000
SENDGRID_MAX_BODY_BYTES = 30 * 1024 * 1024
# Events per webhook POST; SendGrid batches too (by size and time).
SENDGRID_MAX_EVENTS_PER_POST = 500
CALLBACK_TIMEOUT_SECONDS = 5.0
# Pauses between delivery attempts of one callback; real providers retry failed webhooks too.
CALLBACK_RETRY_PAUSES = (0.2, 1.0, 3.0)
CALLBACK_WORKERS = 4

_TWILIO_MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/([A-Za-z0-9]+)/Messages\.json$")
_TWILIO_NUMBERS_PATH = re.compile(
    r"^/2010-04-01/Accounts/([A-Za-z0-9]+)/IncomingPhoneNumbers\.json$"
)
_TWILIO_SERVICE_PATH = re.compile(r"^/v1/Services/([A-Za-z0-9]+)$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_HREF = re.compile(r"""href=["'](https?://[^"']+)["']""", re.IGNORECASE)
FAULT_MODES = (None, "429", "500", "slow", "timeout")


@dataclass(frozen=True)
class SandboxConfig:
    """How the sandbox behaves; outcome ratios are drawn per message from (seed, message id)."""

    # Outcomes are taken in order, each from what the previous left (so delivered_ratio=1 means
    # all delivered): SMS delivered, undelivered, failed, else it stays "sent"; email delivered,
    # bounce, failed (dropped), else deferred.
    delivered_ratio: float = 0.9
    undelivered_ratio: float = 0.04
    failed_ratio: float = 0.02
    bounce_ratio: float = 0.03
    open_ratio: float = 0.4
    click_ratio: float = 0.1
    stop_reply_ratio: float = 0.02
    # Seconds between one callback of a message and the next; 0 posts them at once.
    callback_delay: float = 0.5
    fault_mode: str | None = None
    fault_ratio: float = 1.0
    slow_seconds: float = 2.0
    seed: int = 0
    callbacks: bool = True
    # What the account owns, for live-mode sender checks (IncomingPhoneNumbers, Services).
    twilio_numbers: tuple[str, ...] = ()
    twilio_services: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_ratio") and not (
                isinstance(value, int | float) and 0 <= value <= 1
            ):
                raise ValueError(f"{f.name} must be a number between 0 and 1, not {value!r}")
        if self.fault_mode not in FAULT_MODES:
            raise ValueError(f"fault_mode must be one of {FAULT_MODES}, not {self.fault_mode!r}")
        for name in ("callback_delay", "slow_seconds"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")
        if not isinstance(self.seed, int) or not isinstance(self.callbacks, bool):
            raise ValueError("seed must be an integer and callbacks a boolean")
        for name in ("twilio_numbers", "twilio_services"):
            value = getattr(self, name)
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{name} must be a list of strings, not {value!r}")
            # JSON gives lists; the config stays immutable.
            object.__setattr__(self, name, tuple(value))

    def merged(self, changes: dict[str, Any]) -> "SandboxConfig":
        """A copy with `changes` applied; unknown names or bad values raise ValueError."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"Unknown setting(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)


def unit_draw(seed: int, message_id: int | str, purpose: str) -> float:
    """A reproducible number in [0, 1) for one message and one purpose."""
    digest = hashlib.blake2b(f"{seed}:{message_id}:{purpose}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def sms_outcome(config: SandboxConfig, message_id: int | str) -> str:
    """The final status an SMS will reach: delivered, undelivered, failed or sent (no report)."""
    draw = unit_draw(config.seed, message_id, "outcome")
    for status, ratio in (
        ("delivered", config.delivered_ratio),
        ("undelivered", config.undelivered_ratio),
        ("failed", config.failed_ratio),
    ):
        if draw < ratio:
            return status
        draw -= ratio
    return "sent"


def email_outcome(config: SandboxConfig, message_id: int | str) -> str:
    """The delivery event an email will get: delivered, bounce, dropped or deferred."""
    draw = unit_draw(config.seed, message_id, "outcome")
    for event, ratio in (
        ("delivered", config.delivered_ratio),
        ("bounce", config.bounce_ratio),
        ("dropped", config.failed_ratio),
    ):
        if draw < ratio:
            return event
        draw -= ratio
    return "deferred"


def message_id_from_callback(url: str) -> int | None:
    """Our message id from a StatusCallback URL: `?message_id=N`, else its last numeric segment."""
    if not url:
        return None
    parts = urlsplit(url)
    for value in parse_qs(parts.query).get("message_id", []):
        if value.isdigit():
            return int(value)
    for segment in reversed([s for s in parts.path.split("/") if s]):
        if segment.isdigit():
            return int(segment)
    return None


def render_personalization(payload: dict[str, Any], index: int) -> dict[str, str]:
    """What SendGrid would send one recipient of a v3 body: subject, text and HTML."""
    personalization = payload["personalizations"][index]
    substitutions = personalization.get("substitutions") or {}
    content = {c.get("type"): c.get("value", "") for c in payload.get("content") or []}

    def apply(value: str) -> str:
        for tag, replacement in substitutions.items():
            value = value.replace(tag, replacement)
        return value

    return {
        "subject": apply(personalization.get("subject") or payload.get("subject", "")),
        "text": apply(content.get("text/plain", "")),
        "html": apply(content.get("text/html", "")),
    }


# ---------------------------------------------------------------- SendGrid signing keys


def generate_sendgrid_keypair() -> tuple[str, str]:
    """A new P-256 key pair: (private key PEM, public key as SendGrid shows it: base64 DER)."""
    private_key = ec.generate_private_key(ec.SECP256R1())
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    return pem, public_key_b64(pem)


def public_key_b64(private_pem: str) -> str:
    """The base64 DER SubjectPublicKeyInfo (no PEM armour) of a private key PEM."""
    private_key = serialization.load_pem_private_key(private_pem.encode("ascii"), password=None)
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")


def load_or_create_keypair(path: Path) -> tuple[str, str]:
    """The key pair stored at `path` (private PEM, mode 0600), created there when missing."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem, _ = generate_sendgrid_keypair()
        # Written beside the target and linked into place, so that the web process and the
        # sandbox starting together never read half a file, and the first writer wins.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".sandbox-key-")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(pem)
            os.chmod(tmp, 0o600)
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    pem = path.read_text()
    return pem, public_key_b64(pem)


# ---------------------------------------------------------------- callback delivery


class _Dispatcher:
    """Runs callback jobs when due: a timer heap, a few posting threads and one event batcher."""

    def __init__(self, post_events: Callable[[list[dict]], None], workers: int) -> None:
        self._post_events = post_events
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, int, bool, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        self._events: list[dict] = []
        self._pending = 0
        self._generation = 0
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._timer, name="sandbox-timer", daemon=True)]
        self._threads += [
            threading.Thread(target=self._worker, name=f"sandbox-callback-{i}", daemon=True)
            for i in range(workers)
        ]
        self._threads.append(
            threading.Thread(target=self._batcher, name="sandbox-events", daemon=True)
        )

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        for _ in self._threads:
            self._work.put(None)

    @property
    def stopping(self) -> threading.Event:
        return self._stopping

    def schedule(self, delay: float, job: Callable[[], None], *, inline: bool = False) -> None:
        """Runs `job` after `delay` seconds; inline jobs run on the timer thread, so stay quick."""
        with self._cond:
            entry = (time.monotonic() + delay, next(self._seq), self._generation, inline, job)
            heapq.heappush(self._heap, entry)
            self._pending += 1
            self._cond.notify_all()

    def add_events(self, events: list[dict]) -> None:
        """Queues SendGrid events for the next batch POST, in order."""
        if not events:
            return
        with self._cond:
            self._events.extend(events)
            self._cond.notify_all()

    def clear(self) -> None:
        """Drops every job and event not yet posted."""
        with self._cond:
            self._generation += 1
            self._pending -= len(self._heap)
            self._heap.clear()
            self._events.clear()
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Waits until nothing is scheduled, running or unposted; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._events, timeout)

    def _done(self) -> None:
        with self._cond:
            self._pending -= 1
            self._cond.notify_all()

    def _timer(self) -> None:
        while not self._stopping.is_set():
            with self._cond:
                while not self._stopping.is_set():
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        _, _, generation, inline, job = heapq.heappop(self._heap)
                        break
                    self._cond.wait(self._heap[0][0] - now if self._heap else None)
                else:
                    return
            if inline:
                self._run(generation, job)
            else:
                self._work.put((generation, job))

    def _worker(self) -> None:
        while (item := self._work.get()) is not None:
            self._run(*item)

    def _run(self, generation: int, job: Callable[[], None]) -> None:
        try:
            if generation == self._generation and not self._stopping.is_set():
                job()
        except Exception:
            # A broken callback must not take the sandbox down; it is only lost.
            log.exception("sandbox callback job failed")
        finally:
            self._done()

    def _batcher(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._events or self._stopping.is_set())
                if self._stopping.is_set():
                    return
                batch = self._events[:SENDGRID_MAX_EVENTS_PER_POST]
                generation = self._generation
                # Counted as unposted until posted, so that wait_idle covers the POST itself.
                self._pending += 1
            try:
                if generation == self._generation:
                    self._post_events(batch)
            except Exception:
                log.exception("sandbox event batch failed")
            finally:
                with self._cond:
                    if generation == self._generation:
                        del self._events[: len(batch)]
                    self._pending -= 1
                    self._cond.notify_all()


# ---------------------------------------------------------------- the server


class SandboxProvider:
    """Twilio's and SendGrid's send APIs on one local port, with signed callbacks afterwards."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        twilio_auth_token: str,
        sendgrid_private_key_pem: str,
        sendgrid_webhook_url: str,
        twilio_inbound_url: str,
        config: SandboxConfig | None = None,
        twilio_account_sid: str | None = None,
        sendgrid_api_key: str | None = None,
        max_records: int = 50_000,
    ) -> None:
        self.twilio_auth_token = twilio_auth_token
        # None accepts any account SID (with the right token), and any API key.
        self.twilio_account_sid = twilio_account_sid
        self.sendgrid_api_key = sendgrid_api_key
        self.sendgrid_webhook_url = sendgrid_webhook_url
        self.twilio_inbound_url = twilio_inbound_url
        self.config = config or SandboxConfig()
        self._signing_key = serialization.load_pem_private_key(
            sendgrid_private_key_pem.encode("ascii"), password=None
        )
        self._validator = RequestValidator(twilio_auth_token)
        self._lock = threading.Lock()
        # A long demo run must not grow without bound: the oldest records go (counts stay).
        self._received: deque[dict[str, Any]] = deque(maxlen=max_records)
        self._attempts: Counter[int] = Counter()
        self._local = threading.local()
        # Closed on stop(): an open keep-alive connection would pin a server thread (and its
        # database connection) on the other side.
        self._sessions: list[requests.Session] = []
        self._dispatcher = _Dispatcher(self._post_sendgrid_events, CALLBACK_WORKERS)
        self._httpd = _Server((host, port), _Handler)
        self._httpd.sandbox = self
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------- lifecycle and inspection

    @property
    def url(self) -> str:
        """The base URL to point the SDKs at, e.g. http://127.0.0.1:8025."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "SandboxProvider":
        """Serves in a background thread; returns self."""
        self._dispatcher.start()
        # A short poll keeps stop() quick; the loop itself costs nothing noticeable.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="sandbox-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving and drops callbacks not yet posted."""
        self._dispatcher.stop()
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "SandboxProvider":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def received(self) -> list[dict[str, Any]]:
        """A snapshot of the send requests received (the last `max_records`), oldest first."""
        with self._lock:
            return list(self._received)

    def requests_per_message(self) -> Counter[int]:
        """How many send requests named each of our message ids (1 each when nothing is resent)."""
        with self._lock:
            return Counter(self._attempts)

    def reset(self) -> None:
        """Forgets what was received and drops callbacks not yet posted."""
        self._dispatcher.clear()
        with self._lock:
            self._received.clear()
            self._attempts.clear()

    def configure(self, **changes: Any) -> SandboxConfig:
        """Merges `changes` into the config (ValueError on a bad one) and returns the result."""
        with self._lock:
            self.config = self.config.merged(changes)
            return self.config

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Waits until every scheduled callback has been posted; False on timeout."""
        return self._dispatcher.wait_idle(timeout)

    def send_inbound(
        self, from_: str, to: str, body: str, *, messaging_service_sid: str = ""
    ) -> int | None:
        """Posts a signed inbound SMS webhook now; returns the webhook's HTTP status."""
        account_sid = self.twilio_account_sid or _known_account(self.received) or "AC" + "0" * 32
        sid = "SM" + secrets.token_hex(16)
        params = {
            "ToCountry": "US",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "SmsSid": sid,
            "SmsStatus": "received",
            "Body": body,
            "To": to,
            "NumSegments": "1",
            "MessageSid": sid,
            "AccountSid": account_sid,
            "From": from_,
            "ApiVersion": TWILIO_API_VERSION,
        }
        if messaging_service_sid:
            params["MessagingServiceSid"] = messaging_service_sid
        if body.strip().upper() in {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"}:
            params["OptOutType"] = "STOP"
        return self._post_twilio(self.twilio_inbound_url, params)

    # -------------------------------------------------------------- Twilio Messages API

    def _twilio_authorized(self, account_sid: str, authorization: str) -> bool:
        expected = base64.b64encode(f"{account_sid}:{self.twilio_auth_token}".encode()).decode()
        return authorization == f"Basic {expected}" and (
            not self.twilio_account_sid or account_sid == self.twilio_account_sid
        )

    def handle_twilio_numbers(self, account_sid: str, authorization: str, query: str) -> tuple:
        """GET /2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json?PhoneNumber=…"""
        if not self._twilio_authorized(account_sid, authorization):
            return _twilio_error(401, 20003, "Authenticate")
        wanted = parse_qs(query).get("PhoneNumber", [""])[0]
        owned = [n for n in self.config.twilio_numbers if not wanted or n == wanted]
        numbers = [
            {
                "sid": "PN" + hashlib.md5(n.encode()).hexdigest(),
                "account_sid": account_sid,
                "phone_number": n,
                "capabilities": {"sms": True, "voice": True, "mms": False},
            }
            for n in owned
        ]
        meta = {"key": "incoming_phone_numbers", "page": 0, "page_size": 50}
        return _json(200, {"incoming_phone_numbers": numbers, "meta": meta})

    def handle_twilio_service(self, service_sid: str, authorization: str) -> tuple:
        """GET /v1/Services/{sid} (the Messaging API: which services the account owns)."""
        # This URL names no account: the one in the credentials is asked about.
        try:
            credentials = base64.b64decode(authorization.removeprefix("Basic ")).decode()
        except ValueError:
            credentials = ""
        sid = credentials.partition(":")[0]
        if not self._twilio_authorized(sid, authorization):
            return _twilio_error(401, 20003, "Authenticate")
        if service_sid not in self.config.twilio_services:
            return _twilio_error(
                404, 20404, f"The requested resource /Services/{service_sid} was not found"
            )
        return _json(200, {"sid": service_sid, "account_sid": sid, "friendly_name": service_sid})

    def handle_twilio_list(self, account_sid: str, authorization: str, query: str) -> tuple:
        """GET /2010-04-01/Accounts/{sid}/Messages.json?To=…&From=…&DateSent=YYYY-MM-DD: the
        messages this sandbox accepted, newest first, each with the status it has reached by now
        (its stages come one callback delay apart, whether or not callbacks are posted)."""
        if not self._twilio_authorized(account_sid, authorization):
            return _twilio_error(401, 20003, "Authenticate")
        params = {k: v[0] for k, v in parse_qs(query).items()}
        to, sender = params.get("To", ""), params.get("From", "")
        # YYYY-MM-DD, the only form Twilio documents (the SDK turns a datetime into more).
        day = params.get("DateSent", "")[:10]
        size = params.get("PageSize", "")
        page_size = min(1000, int(size)) if size.isascii() and size.isdigit() else 50
        now = time.time()
        found = []
        for record in reversed(self.received):
            if record["api"] != "twilio" or record["status"] != 201:
                continue
            if record["account_sid"] != account_sid:
                continue
            resource = _twilio_resource(record, now)
            if (to and resource["to"] != to) or (sender and resource["from"] != sender):
                continue
            if day and (resource["date_sent"] is None or _utc_day(record["at"]) != day):
                continue
            found.append(resource)
            if len(found) == page_size:
                break
        uri = f"/{TWILIO_API_VERSION}/Accounts/{account_sid}/Messages.json"
        page = {"page": 0, "page_size": page_size, "start": 0, "end": max(0, len(found) - 1)}
        links = {"uri": uri, "first_page_uri": uri, "next_page_uri": None}
        return _json(200, {"messages": found, **page, **links, "previous_page_uri": None})

    def handle_twilio(self, account_sid: str, authorization: str, body: bytes) -> tuple:
        """(status, headers, body) for POST /2010-04-01/Accounts/{sid}/Messages.json."""
        if not self._twilio_authorized(account_sid, authorization):
            return _twilio_error(401, 20003, "Authenticate")
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}
        to, sender = form.get("To", ""), form.get("From", "")
        service = form.get("MessagingServiceSid", "")
        callback = form.get("StatusCallback", "")
        message_id = message_id_from_callback(callback)
        config = self.config
        fault = self._fault(config, message_id)
        record = {
            "api": "twilio",
            "message_ids": [message_id] if message_id is not None else [],
            "to": [to],
            "body": form.get("Body", ""),
            "payload": form,
            "account_sid": account_sid,
            "at": time.time(),
        }
        if fault in ("slow", "timeout"):
            self._dispatcher.stopping.wait(config.slow_seconds)
            if fault == "timeout":
                self._record(record, status=0)
                return None  # the connection is dropped without an answer
        error = _twilio_fault_response(fault) or _validate_twilio(to, sender, service, form)
        if error is not None:
            self._record(record, status=error[0])
            return error
        sid = "SM" + secrets.token_hex(16)
        from_number = sender or MESSAGING_SERVICE_NUMBER
        # What the Messages list answers about it later (handle_twilio_list).
        record.update(
            sender=from_number,
            service=service,
            stages=_twilio_stages(config, message_id if message_id is not None else sid),
            stage_delay=config.callback_delay,
        )
        self._record(record, status=201, provider_id=sid)
        if config.callbacks and callback:
            message = {
                "sid": sid,
                "account_sid": account_sid,
                "to": to,
                "from": from_number,
                "service": service,
                "callback": callback,
                "key": message_id if message_id is not None else sid,
            }
            self._dispatcher.schedule(
                config.callback_delay, lambda: self._twilio_stage(config, message, 0)
            )
        now = formatdate(usegmt=False)
        resource = {
            "account_sid": account_sid,
            "api_version": TWILIO_API_VERSION,
            "body": form.get("Body", ""),
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender or None,
            "messaging_service_sid": service or None,
            "num_media": "0",
            "num_segments": str(_segments(form.get("Body", ""))),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            # Twilio answers "accepted" when a Messaging Service still has to pick the number.
            "status": "queued" if sender else "accepted",
            "subresource_uris": {
                "media": f"/{TWILIO_API_VERSION}/Accounts/{account_sid}/Messages/{sid}/Media.json"
            },
            "to": to,
            "uri": f"/{TWILIO_API_VERSION}/Accounts/{account_sid}/Messages/{sid}.json",
        }
        return 201, {}, json.dumps(resource).encode()

    def _twilio_stage(self, config: SandboxConfig, message: dict[str, Any], index: int) -> None:
        stages = _twilio_stages(config, message["key"])
        status, error_code = stages[index]
        params = {
            "SmsSid": message["sid"],
            "SmsStatus": status,
            "MessageStatus": status,
            "To": message["to"],
            "MessageSid": message["sid"],
            "AccountSid": message["account_sid"],
            "From": message["from"],
            "ApiVersion": TWILIO_API_VERSION,
        }
        if message["service"]:
            params["MessagingServiceSid"] = message["service"]
        if error_code:
            params["ErrorCode"] = error_code
        self._post_twilio(message["callback"], params)
        if index + 1 < len(stages):
            self._dispatcher.schedule(
                config.callback_delay, lambda: self._twilio_stage(config, message, index + 1)
            )
        elif status == "delivered" and (
            unit_draw(config.seed, message["key"], "stop") < config.stop_reply_ratio
        ):
            self._dispatcher.schedule(
                config.callback_delay,
                lambda: self.send_inbound(
                    message["to"],
                    message["from"],
                    "STOP",
                    messaging_service_sid=message["service"],
                ),
            )

    def _post_twilio(self, url: str, params: dict[str, str]) -> int | None:
        signature = self._validator.compute_signature(url, params)
        return self._post(url, data=params, headers={"X-Twilio-Signature": signature})

    # -------------------------------------------------------------- SendGrid v3 mail send

    def handle_sendgrid(self, authorization: str, body: bytes) -> tuple:
        """(status, headers, body) for POST /v3/mail/send."""
        key = authorization.removeprefix("Bearer ").strip()
        if (
            not authorization.startswith("Bearer ")
            or not key
            or (self.sendgrid_api_key and key != self.sendgrid_api_key)
        ):
            return _sendgrid_error(
                401, "The provided authorization grant is invalid, expired, or revoked"
            )
        try:
            payload = json.loads(body)
        except ValueError:
            return _sendgrid_error(400, "Bad Request: the body is not valid JSON")
        problem = _validate_sendgrid(payload)
        recipients = _sendgrid_recipients(payload)
        ids = [r[2] for r in recipients if r[2] is not None]
        record = {
            "api": "sendgrid",
            "message_ids": ids,
            "to": [r[0] for r in recipients],
            "payload": payload,
            "at": time.time(),
        }
        if problem is not None:
            self._record(record, status=400)
            return _sendgrid_error(400, problem[1], problem[0])
        config = self.config
        fault = self._fault(config, ids[0] if ids else None)
        if fault in ("slow", "timeout"):
            self._dispatcher.stopping.wait(config.slow_seconds)
            if fault == "timeout":
                self._record(record, status=0)
                return None
        if fault == "429":
            self._record(record, status=429)
            reset = str(int(time.time()) + 1)
            headers = {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0"}
            return _sendgrid_error(
                429, "too many requests", headers={**headers, "X-RateLimit-Reset": reset}
            )
        if fault == "500":
            self._record(record, status=500)
            return _sendgrid_error(500, "Internal server error")
        x_message_id = secrets.token_urlsafe(16)[:22]
        self._record(record, status=202, provider_id=x_message_id)
        if config.callbacks and recipients:
            self._dispatcher.schedule(
                config.callback_delay,
                lambda: self._sendgrid_delivery(config, x_message_id, payload, recipients),
                inline=True,
            )
        return 202, {"X-Message-Id": x_message_id}, b""

    def _sendgrid_delivery(
        self, config: SandboxConfig, x_message_id: str, payload: dict, recipients: list[tuple]
    ) -> None:
        now = int(time.time())
        events, engaged = [], []
        for index, (email, custom_args, message_id) in enumerate(recipients):
            key = message_id if message_id is not None else f"{x_message_id}:{index}"
            base = {
                "email": email,
                "timestamp": now,
                "smtp-id": f"<{x_message_id}.{index}@sandbox.sendgrid.net>",
                "sg_message_id": f"{x_message_id}.filterdrecv-sandbox-{index}-0.0",
                **custom_args,
            }
            events.append(_event(base, "processed"))
            outcome = email_outcome(config, key)
            if outcome == "delivered":
                events.append(_event(base, "delivered", response="250 2.0.0 OK", tls=1))
                engaged.append((index, base, key))
            elif outcome == "bounce":
                events.append(
                    _event(
                        base,
                        "bounce",
                        type="bounce",
                        status="5.1.1",
                        reason="550 5.1.1 The email account that you tried to reach does not"
                        " exist.",
                        bounce_classification="Invalid Address",
                    )
                )
            elif outcome == "dropped":
                events.append(_event(base, "dropped", reason="Bounced Address", status="5.0.0"))
            else:
                events.append(
                    _event(base, "deferred", response="421 4.7.0 Try again later", attempt="1")
                )
        self._dispatcher.add_events(events)
        if engaged:
            self._dispatcher.schedule(
                config.callback_delay,
                lambda: self._sendgrid_engagement(config, payload, engaged),
                inline=True,
            )

    def _sendgrid_engagement(self, config: SandboxConfig, payload: dict, engaged: list) -> None:
        now = int(time.time())
        agent = {"useragent": "Mozilla/5.0 (sandbox)", "ip": "203.0.113.7"}
        events = []
        for index, base, key in engaged:
            base = {**base, "timestamp": now}
            if unit_draw(config.seed, key, "open") < config.open_ratio:
                events.append(_event(base, "open", sg_machine_open=False, **agent))
            if unit_draw(config.seed, key, "click") < config.click_ratio:
                url = _click_url(payload, index)
                offset = {"index": 0, "type": "html"}
                events.append(_event(base, "click", url=url, url_offset=offset, **agent))
        self._dispatcher.add_events(events)

    def _post_sendgrid_events(self, events: list[dict]) -> None:
        body = json.dumps(events, separators=(",", ":"))

        def signed() -> dict[str, str]:
            # Signed afresh on each attempt: receivers reject stale timestamps.
            timestamp = str(int(time.time()))
            signature = self._signing_key.sign(
                (timestamp + body).encode("utf-8"), ec.ECDSA(hashes.SHA256())
            )
            return {
                "Content-Type": "application/json",
                "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
            }

        self._post(self.sendgrid_webhook_url, data=body.encode("utf-8"), headers=signed)

    # -------------------------------------------------------------- shared plumbing

    def _fault(self, config: SandboxConfig, message_id: int | None) -> str | None:
        if config.fault_mode is None:
            return None
        key = message_id if message_id is not None else secrets.token_hex(4)
        with self._lock:
            attempt = self._attempts[key] if message_id is not None else 0
        draw = unit_draw(config.seed, key, f"fault-{attempt}")
        return config.fault_mode if draw < config.fault_ratio else None

    def _record(self, record: dict[str, Any], *, status: int, provider_id: str = "") -> None:
        record["status"] = status
        record["provider_id"] = provider_id
        with self._lock:
            self._received.append(record)
            self._attempts.update(record["message_ids"])

    def _post(
        self,
        url: str,
        *,
        data: Any,
        headers: dict[str, str] | Callable[[], dict[str, str]],
    ) -> int | None:
        """POSTs a callback, retrying connection errors and 5xx; returns the last status."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            with self._lock:
                self._sessions.append(session)
        status = None
        for pause in (*CALLBACK_RETRY_PAUSES, None):
            try:
                response = session.post(
                    url,
                    data=data,
                    headers=headers() if callable(headers) else headers,
                    timeout=CALLBACK_TIMEOUT_SECONDS,
                )
                status = response.status_code
                if status < 500:
                    return status
            except requests.RequestException as exc:
                log.debug("sandbox callback to %s failed: %s", url, exc)
            if pause is None or self._dispatcher.stopping.wait(pause):
                break
        log.warning("sandbox gave up posting to %s (last status %s)", url, status)
        return status

    def handle_control(self, method: str, path: str, body: bytes) -> tuple:
        """(status, headers, body) for the /_sandbox/ control API."""
        if method == "GET" and path == "/_sandbox/received":
            return _json(200, {"received": self.received})
        if method == "GET" and path in ("/_sandbox/config", "/_sandbox/health"):
            return _json(200, {"ok": True, "config": dataclasses.asdict(self.config)})
        if method == "POST" and path == "/_sandbox/reset":
            self.reset()
            return _json(200, {"ok": True})
        try:
            data = json.loads(body or b"{}")
            if not isinstance(data, dict):
                raise ValueError("Expected a JSON object")
            if method == "POST" and path == "/_sandbox/config":
                return _json(
                    200, {"ok": True, "config": dataclasses.asdict(self.configure(**data))}
                )
            if method == "POST" and path == "/_sandbox/inbound":
                status = self.send_inbound(
                    str(data["from"]),
                    str(data["to"]),
                    str(data.get("body", "")),
                    messaging_service_sid=str(data.get("messaging_service_sid", "")),
                )
                return _json(200, {"ok": True, "webhook_status": status})
        except (ValueError, TypeError, KeyError) as exc:
            return _json(400, {"ok": False, "error": str(exc)})
        return _json(404, {"ok": False, "error": f"No such endpoint: {method} {path}"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Many keep-alive clients at once (a sending pool, a benchmark) must not be refused.
    request_queue_size = 128
    sandbox: SandboxProvider


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps SDK connections open between requests, which is most of the speed.
    protocol_version = "HTTP/1.1"
    # One write per response, sent at once rather than held back waiting for an ACK.
    disable_nagle_algorithm = True
    server: _Server

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def _dispatch(self, method: str) -> None:
        sandbox = self.server.sandbox
        length = int(self.headers.get("Content-Length") or 0)
        if length > SENDGRID_MAX_BODY_BYTES:
            self.close_connection = True
            self._send(*_sendgrid_error(413, "Request entity too large"))
            return
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        authorization = self.headers.get("Authorization", "")
        try:
            if method == "POST" and (match := _TWILIO_MESSAGES_PATH.match(path)):
                answer = sandbox.handle_twilio(match.group(1), authorization, body)
            elif method == "GET" and (match := _TWILIO_MESSAGES_PATH.match(path)):
                answer = sandbox.handle_twilio_list(match.group(1), authorization, query)
            elif method == "GET" and (match := _TWILIO_NUMBERS_PATH.match(path)):
                answer = sandbox.handle_twilio_numbers(match.group(1), authorization, query)
            elif method == "GET" and (match := _TWILIO_SERVICE_PATH.match(path)):
                answer = sandbox.handle_twilio_service(match.group(1), authorization)
            elif method == "POST" and path == "/v3/mail/send":
                answer = sandbox.handle_sendgrid(authorization, body)
            elif path.startswith("/_sandbox/"):
                answer = sandbox.handle_control(method, path, body)
            else:
                answer = _json(
                    404, {"code": 20404, "message": "The requested resource was not found"}
                )
        except Exception:
            log.exception("sandbox failed to answer %s %s", method, path)
            answer = _json(500, {"message": "sandbox error"})
        if answer is None:
            self.close_connection = True
            return
        self._send(*answer)

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}"]
        if body:
            lines.append("Content-Type: application/json")
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def log_message(self, format: str, *args: Any) -> None:
        # Thousands of requests a second would drown the console.
        pass


_REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
}


def _json(status: int, data: Any, headers: dict[str, str] | None = None) -> tuple:
    return status, headers or {}, json.dumps(data).encode()


def _twilio_error(status: int, code: int, message: str, headers: dict | None = None) -> tuple:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return _json(status, body, headers)


def _twilio_fault_response(fault: str | None) -> tuple | None:
    if fault == "429":
        return _twilio_error(429, 20429, "Too Many Requests", {"Retry-After": "1"})
    if fault == "500":
        return _twilio_error(500, 20500, "Internal Server Error")
    return None


def _validate_twilio(to: str, sender: str, service: str, form: dict[str, str]) -> tuple | None:
    if not to:
        return _twilio_error(400, 21604, "A 'To' phone number is required.")
    if not sender and not service:
        return _twilio_error(400, 21603, "A 'From' phone number is required.")
    if not form.get("Body") and not form.get("MediaUrl"):
        return _twilio_error(400, 21602, "Message body is required.")
    if len(form.get("Body", "")) > 1600:
        return _twilio_error(
            400, 21617, "The concatenated message body exceeds the 1600 character limit."
        )
    for suffix, (code, message) in TWILIO_ERROR_SUFFIXES.items():
        if to.endswith(suffix):
            return _twilio_error(400, code, message)
    if not _E164.match(to):
        return _twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
    return None


def _twilio_stages(config: SandboxConfig, key: int | str) -> list[tuple[str, str]]:
    outcome = sms_outcome(config, key)
    if outcome == "failed":
        return [("queued", ""), ("failed", _pick(config, key, TWILIO_FAILED_CODES))]
    stages = [("queued", ""), ("sent", "")]
    if outcome == "undelivered":
        stages.append(("undelivered", _pick(config, key, TWILIO_UNDELIVERED_CODES)))
    elif outcome == "delivered":
        stages.append(("delivered", ""))
    return stages


def _twilio_resource(record: dict[str, Any], now: float) -> dict[str, Any]:
    """A Message resource as Twilio's API shows it `now`, for a message the sandbox accepted."""
    stages, delay = record["stages"], record["stage_delay"]
    # Stage i is reached when its callback would be posted, (i + 1) delays after acceptance.
    reached = len(stages) - 1 if delay <= 0 else int((now - record["at"]) / delay) - 1
    status, error_code = stages[max(0, min(len(stages) - 1, reached))]
    form, account_sid, sid = record["payload"], record["account_sid"], record["provider_id"]
    return {
        "account_sid": account_sid,
        "api_version": TWILIO_API_VERSION,
        "body": form.get("Body", ""),
        "date_created": formatdate(record["at"], usegmt=True),
        # Twilio dates a message once it leaves for the carrier; a queued one has no date.
        "date_sent": None if status == "queued" else formatdate(record["at"], usegmt=True),
        "date_updated": formatdate(record["at"], usegmt=True),
        "direction": "outbound-api",
        "error_code": int(error_code) if error_code else None,
        "error_message": None,
        "from": record["sender"],
        "messaging_service_sid": record["service"] or None,
        "num_media": "0",
        "num_segments": str(_segments(form.get("Body", ""))),
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": status,
        "subresource_uris": {
            "media": f"/{TWILIO_API_VERSION}/Accounts/{account_sid}/Messages/{sid}/Media.json"
        },
        "to": form.get("To", ""),
        "uri": f"/{TWILIO_API_VERSION}/Accounts/{account_sid}/Messages/{sid}.json",
    }


def _utc_day(at: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(at))


def _pick(config: SandboxConfig, key: int | str, choices: tuple[str, ...]) -> str:
    return choices[int(unit_draw(config.seed, key, "error") * len(choices))]


def _segments(body: str) -> int:
    # An estimate: GSM-7 for ASCII (160, then 153 per part), UCS-2 otherwise (70, then 67).
    single, multi = (160, 153) if body.isascii() else (70, 67)
    return 1 if len(body) <= single else -(-len(body) // multi)


def _sendgrid_error(
    status: int, message: str, field: str | None = None, headers: dict | None = None
) -> tuple:
    return _json(status, {"errors": [{"message": message, "field": field, "help": None}]}, headers)


def _validate_sendgrid(payload: Any) -> tuple[str, str] | None:
    """(field, message) for the first thing SendGrid would refuse in a v3 body, else None."""
    if not isinstance(payload, dict):
        return "", "The request body must be a JSON object."
    personalizations = payload.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        return "personalizations", "The personalizations field is required."
    if len(personalizations) > SENDGRID_MAX_PERSONALIZATIONS:
        return (
            "personalizations",
            "The personalizations field may not have more than 1000 items.",
        )
    if not isinstance(payload.get("from"), dict) or not payload["from"].get("email"):
        return "from.email", "The from email does not contain a valid address."
    content = payload.get("content")
    if not payload.get("template_id"):
        if not isinstance(content, list) or not content:
            return "content", "Unless a valid template_id is provided, content is required."
        if any(not isinstance(c, dict) or not c.get("value") for c in content):
            return "content.value", "The content value must be a string at least one character."
        types = [c.get("type") for c in content]
        if "text/plain" in types and types.index("text/plain") != 0:
            return "content", "If present, text/plain content must be first."
    for i, p in enumerate(personalizations):
        field = f"personalizations.{i}"
        if not isinstance(p, dict) or not isinstance(p.get("to"), list) or not p["to"]:
            return f"{field}.to", "The to array is required for all personalization objects."
        if any(not isinstance(t, dict) or "@" not in str(t.get("email", "")) for t in p["to"]):
            return f"{field}.to", "Does not contain a valid address."
        if not (p.get("subject") or payload.get("subject") or payload.get("template_id")):
            return "subject", "The subject is required."
        args = {**(payload.get("custom_args") or {}), **(p.get("custom_args") or {})}
        if any(not isinstance(v, str) for v in args.values()):
            return f"{field}.custom_args", "Custom arg values must be strings."
        substitutions = p.get("substitutions") or {}
        if len(substitutions) > SENDGRID_MAX_SUBSTITUTIONS:
            return f"{field}.substitutions", "You may not have more than 100 substitutions."
        size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in substitutions.items())
        if size > SENDGRID_MAX_SUBSTITUTION_BYTES:
            return (
                f"{field}.substitutions",
                "The total size of substitutions may not exceed 10,000 bytes per personalization.",
            )
    return None


def _sendgrid_recipients(payload: Any) -> list[tuple[str, dict, int | None]]:
    """(first address, merged custom args, our message id) per personalization, leniently."""
    if not isinstance(payload, dict) or not isinstance(payload.get("personalizations"), list):
        return []
    top_args = payload.get("custom_args") if isinstance(payload.get("custom_args"), dict) else {}
    recipients = []
    for p in payload["personalizations"]:
        if not isinstance(p, dict):
            continue
        args = p.get("custom_args") if isinstance(p.get("custom_args"), dict) else {}
        custom_args = {**top_args, **args}
        raw_id = str(custom_args.get("message_id", ""))
        to = p.get("to") if isinstance(p.get("to"), list) else []
        email = str(to[0].get("email", "")) if to and isinstance(to[0], dict) else ""
        recipients.append((email, custom_args, int(raw_id) if raw_id.isdigit() else None))
    return recipients


def _event(base: dict[str, Any], kind: str, **extra: Any) -> dict[str, Any]:
    return {**base, "event": kind, "sg_event_id": secrets.token_urlsafe(16), **extra}


def _click_url(payload: dict, index: int) -> str:
    html = render_personalization(payload, index)["html"]
    unsubscribe = (payload["personalizations"][index].get("headers") or {}).get(
        "List-Unsubscribe", ""
    )
    for url in _HREF.findall(html):
        if url not in unsubscribe:
            return url
    return "https://example.com/"


def _known_account(records: list[dict[str, Any]]) -> str:
    # Without a configured account, inbound webhooks claim the account the last send used.
    for record in reversed(records):
        if record["api"] == "twilio":
            return record.get("account_sid", "")
    return ""
