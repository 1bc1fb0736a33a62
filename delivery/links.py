"""The public URLs we hand to providers and recipients, built on PUBLIC_BASE_URL."""

from functools import cache

from django.conf import settings
from django.core import signing
from django.urls import reverse

from orgs.parsing import parse_id

_UNSUBSCRIBE_SALT = "outreach.unsubscribe"


def public_url(path: str) -> str:
    return settings.PUBLIC_BASE_URL.rstrip("/") + path


@cache
def _path_around(route: str) -> tuple[str, str]:
    # reverse() costs ~60 µs and sending builds a URL per message: resolve each route once.
    head, tail = reverse(route, args=["0"]).rsplit("0", 1)
    return head, tail


def _route_url(route: str, arg: int | str) -> str:
    head, tail = _path_around(route)
    return public_url(f"{head}{arg}{tail}")


def status_callback_url(message_id: int) -> str:
    """Twilio's StatusCallback for one message: the path carries our id for reconciliation."""
    return _route_url("delivery:twilio_status", message_id)


def unsubscribe_token(message_id: int) -> str:
    # The id and its signature ("123:…"): every email carries one, and Signer.sign costs a
    # quarter of signing.dumps' JSON and compression.
    return _unsubscribe_signer().sign(str(message_id))


def unsubscribe_message_id(token: str) -> int | None:
    """The message id a token was signed for, or None for a forged or altered token."""
    try:
        value = _unsubscribe_signer().unsign(token)
    except signing.BadSignature:
        return None
    message_id = parse_id(value)
    return message_id if message_id is not None else _earlier_token_message_id(token)


def _earlier_token_message_id(token: str) -> int | None:
    # Emails sent before December 2026 carry signing.dumps tokens ("value:timestamp:signature",
    # which the same key signs): their links must keep working.
    try:
        value = signing.loads(token, salt=_UNSUBSCRIBE_SALT)
    except signing.BadSignature:
        return None
    return parse_id(value)


def _unsubscribe_signer() -> signing.Signer:
    return signing.Signer(salt=_UNSUBSCRIBE_SALT)


def unsubscribe_url(message_id: int) -> str:
    return _route_url("delivery:unsubscribe", unsubscribe_token(message_id))
