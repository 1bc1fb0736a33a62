"""CSV exports that stream (flat memory, the download starts at once) and are safe to open in a
spreadsheet: a cell starting with = + - @ tab or CR is neutralised with a leading apostrophe,
except E.164 phone numbers in the recipient column, which stay exact."""

import csv
import re
from collections.abc import Iterable, Iterator
from zoneinfo import ZoneInfo

from django.db.models import QuerySet

from campaigns.models import Campaign
from delivery.models import Message

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_E164 = re.compile(r"\+[1-9]\d{6,14}\Z")
# Rows are read in keyset pages: flat memory without holding a cursor open for the whole download.
PAGE_ROWS = 2000


def neutralise(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _recipient(address: str) -> str:
    return address if _E164.match(address) else neutralise(address)


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_lines(header: list[str], rows: Iterable[list[str]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield "\ufeff" + writer.writerow(header)  # the BOM makes Excel read UTF-8
    for row in rows:
        yield writer.writerow(row)


MESSAGE_HEADER = [
    "recipient",
    "name",
    "timezone",
    "list",
    "status",
    "provider_id",
    "error_code",
    "error_message",
    "sent_at_utc",
    "sent_at_local",
    "delivered_at_utc",
    "delivered_at_local",
]


def _times(value, zone: ZoneInfo) -> list[str]:
    if value is None:
        return ["", ""]
    return [
        value.strftime("%Y-%m-%d %H:%M:%S"),
        value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"),
    ]


def message_rows(messages: QuerySet[Message]) -> Iterator[list[str]]:
    """One row per message in id order, read a page at a time by keyset."""
    last_id = 0
    zones: dict[str, ZoneInfo] = {}
    base = messages.select_related("recipient_list").order_by("id")
    while True:
        page = list(base.filter(id__gt=last_id)[:PAGE_ROWS])
        if not page:
            return
        for m in page:
            zone = zones.get(m.timezone) or zones.setdefault(m.timezone, ZoneInfo(m.timezone))
            yield [
                _recipient(m.address),
                neutralise(m.name),
                m.timezone,
                neutralise(m.recipient_list.file_name),
                m.get_status_display(),
                neutralise(m.provider_id),
                neutralise(m.error_code),
                neutralise(m.error_message),
                *_times(m.sent_at, zone),
                *_times(m.delivered_at, zone),
            ]
        last_id = page[-1].id


CAMPAIGN_HEADER = [
    "name",
    "channel",
    "status",
    "sender",
    "template",
    "created_at_utc",
    "sent",
    "total",
]


def campaign_rows(
    campaigns: QuerySet[Campaign], progress: dict[int, tuple[int, int]]
) -> Iterator[list[str]]:
    for c in campaigns.select_related("sender", "template"):
        sent, total = progress.get(c.pk, (0, 0))
        yield [
            neutralise(c.name),
            c.get_channel_display(),
            c.get_status_display(),
            neutralise(c.sender.label),
            neutralise(c.template.name),
            c.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            str(sent),
            str(total),
        ]
