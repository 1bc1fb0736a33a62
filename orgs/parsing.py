"""Values from outside — URLs, query strings, form fields, headers, provider payloads — parsed in
one place per kind, so that a bad value is None (a 404, a 400 or an empty result), never a 500.

`str.isdigit()` and `int()` accept far more than ASCII digits (`"²".isdigit()` is True and
`int("²")` fails; `int("١٢")` is 12), and an unbounded integer overflows a bigint column: every
parser here takes ASCII digits only, within bounds. orgs is its home because every app depends
on it and it depends on none of them.
"""

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, tzinfo

from django.core.exceptions import BadRequest
from django.http import HttpRequest, HttpResponse

# 18 digits: below PostgreSQL's and SQLite's bigint maximum (9,223,372,036,854,775,807).
MAX_ID_DIGITS = 18
# The instants a person types or a provider reports: wide enough for any campaign, narrow
# enough that converting to UTC or adding a week or the forecast's 60 days never overflows.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)
OUT_OF_RANGE = f"Give a date between the years {EARLIEST.year} and {LATEST.year - 1}."


def _ascii_digits(value: str, max_digits: int) -> bool:
    return 0 < len(value) <= max_digits and value.isascii() and value.isdigit()


def parse_id(value: object) -> int | None:
    """A database id written as 1 to 18 ASCII digits (always within bigint), or None."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _ascii_digits(value, MAX_ID_DIGITS):
        return None
    number = int(value)
    return number or None


def parse_ids(values: Iterable[object]) -> list[int] | None:
    """Every value as an id, or None when any of them is not one."""
    ids = [parse_id(value) for value in values]
    return None if None in ids else ids


def parse_int(
    value: object, *, minimum: int | None = None, maximum: int | None = None
) -> int | None:
    """An integer of at most 18 ASCII digits with an optional sign, within the bounds, or None."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    digits = value[1:] if value[:1] in ("-", "+") else value
    if not _ascii_digits(digits, MAX_ID_DIGITS):
        return None
    number = int(value)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        return None
    return number


def parse_timestamp(value: object) -> datetime | None:
    """Epoch seconds (ASCII digits or a JSON integer) as a UTC instant in the range, or None."""
    seconds = parse_int(value, minimum=int(EARLIEST.timestamp()), maximum=int(LATEST.timestamp()))
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=UTC)


def local_instant(value: datetime, zone: tzinfo) -> datetime | None:
    """The wall-clock time typed in the zone as an instant, or None outside the years 2000 to 2999.

    The range is checked on the wall-clock value first: 9999-12-31 23:59 in New York is already
    past year 9999 in UTC, and converting it would overflow.
    """
    naive = value.replace(tzinfo=None)
    if not EARLIEST.replace(tzinfo=None) <= naive < LATEST.replace(tzinfo=None):
        return None
    instant = naive.replace(tzinfo=zone)
    return instant if EARLIEST <= instant < LATEST else None


class IdConverter:
    """`<id:name>` in every urls.py: 1 to 18 ASCII digits, so an id no bigint holds is a 404."""

    regex = f"[0-9]{{1,{MAX_ID_DIGITS}}}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int | str) -> str:
        return str(value)


NUL_REFUSED = "The request contains a NUL character."


def has_nul(value: object) -> bool:
    """Whether a string, or any key or string inside a list or dict (parsed JSON), holds NUL."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(item) for item in value)
    return False


def request_has_nul(request: HttpRequest) -> bool:
    """Whether the path, query string, form fields (not files), cookies or headers hold NUL."""
    headers = [value for key, value in request.META.items() if key.startswith("HTTP_")]
    return (
        has_nul(request.path_info)
        or has_nul(dict(request.GET.lists()))
        or has_nul(dict(request.POST.lists()))
        or has_nul(request.COOKIES)
        or has_nul(headers)
    )


class RefuseNulMiddleware:
    """Answers 400 to a request carrying a NUL character anywhere but in an uploaded file.

    PostgreSQL refuses NUL in text, so a search for `%00` (or a NUL in a cookie looked up as a
    session key) would be a 500, and no person or browser sends one: refusing it once, before
    sessions, means no view has to remember. Provider webhooks are served before this
    (WebhookMiddleware) and verify their signature first.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request_has_nul(request):
            raise BadRequest(NUL_REFUSED)
        return self.get_response(request)
