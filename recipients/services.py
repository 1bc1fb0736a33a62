"""Importing an uploaded CSV as a recipient list: all rows or none, streamed into the database."""

import csv
import io
import json
import queue
import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files.base import ContentFile
from django.db import connection, transaction
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.services import activity_record
from delivery.models import Message, MessageStatus
from delivery.services import suppressions_apply_to_list
from recipients.csv_reader import (
    CSV_TEMPLATE_ROWS,
    ErrorKind,
    ReaderOptions,
    Recipient,
    RecipientReader,
    RowError,
    too_many_recipients,
    write_error_log,
)
from recipients.models import Contact, ListStatus, RecipientList, RejectedUpload

# Rows travel to the database in chunks: big enough to be fast, small enough to keep memory flat.
CHUNK_ROWS = 10_000


@dataclass
class ImportResult:
    recipient_list: RecipientList | None = None
    rejected: RejectedUpload | None = None
    summary: dict[str, int] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.recipient_list is not None


class _Rejected(Exception):
    """Raised inside the import transaction so that a file with any error leaves no row behind."""


def recipient_list_import(
    *,
    campaign: Campaign,
    stream: BinaryIO,
    file_name: str,
    start_at: datetime,
    end_at: datetime | None,
    user: AbstractBaseUser | None,
    max_recipients: int | None = None,
    max_bytes: int | None = None,
) -> ImportResult:
    """Imports the file as a new Scheduled list of the campaign, or rejects it whole."""
    campaign.require("add_list")
    org = campaign.org
    options = ReaderOptions(
        channel=campaign.channel,
        default_timezone=org.timezone,
        default_region=org.default_region,
        max_recipients=max_recipients or org.max_recipients_per_list,
        **({"max_bytes": max_bytes} if max_bytes else {}),
    )
    errors: list[RowError] = []
    try:
        with transaction.atomic():
            recipient_list = RecipientList.objects.create(
                org=org,
                campaign=campaign,
                file_name=file_name[:255],
                start_at=max(start_at, timezone.now()) if start_at else timezone.now(),
                end_at=end_at,
                created_by=user,
            )
            reader = RecipientReader(stream, options)
            recipients = _store(recipient_list, _valid_rows(reader, errors))
            limit = options.max_recipients
            if recipients > limit and not any(
                e.kind == ErrorKind.TOO_MANY_RECIPIENTS for e in errors
            ):
                errors.append(too_many_recipients(recipients, limit))
            if errors:
                raise _Rejected
            counts = {
                "recipients": recipients,
                # Accepted, so every data row was valid: the rest repeated an earlier address.
                "duplicates": reader.summary.rows - recipients,
                "suppressed": _apply_suppressions(recipient_list),
            }
            recipient_list.recipient_count = counts["recipients"]
            recipient_list.duplicate_count = counts["duplicates"]
            recipient_list.suppressed_count = counts["suppressed"]
            recipient_list.save(
                update_fields=["recipient_count", "duplicate_count", "suppressed_count"]
            )
            activity_record(
                org=org,
                actor=user,
                verb="added recipient list",
                subject=campaign.name,
                campaign=campaign,
                detail=f"{file_name}: {counts['recipients']} recipients",
            )
    except _Rejected:
        rejected = _reject(campaign, file_name, errors, reader.header, user)
        return ImportResult(rejected=rejected, summary=dict(rejected.summary))
    return ImportResult(recipient_list=recipient_list, summary=counts)


def _valid_rows(
    items: Iterable[Recipient | RowError], errors: list[RowError]
) -> Iterator[Recipient]:
    # Valid rows are stored even once the file is doomed: only the database knows how many
    # distinct recipients it holds, and the report names every problem at once. The reader
    # caps the rows it checks, so this work is bounded; the rollback removes it.
    for item in items:
        if isinstance(item, RowError):
            errors.append(item)
        else:
            yield item


def _reject(
    campaign: Campaign,
    file_name: str,
    errors: list[RowError],
    header: list[str],
    user: AbstractBaseUser | None,
) -> RejectedUpload:
    log = io.StringIO()
    write_error_log(errors, log, header or None)
    summary = Counter(error.kind.label for error in errors)
    rejected = RejectedUpload(
        org=campaign.org,
        campaign=campaign,
        file_name=file_name[:255],
        summary=dict(summary.most_common()),
        error_count=len(errors),
        file_errors=[error.message for error in errors if error.line is None],
        created_by=user,
    )
    rejected.error_log.save(
        f"{uuid.uuid4().hex}.csv", ContentFile(log.getvalue().encode()), save=True
    )
    return rejected


# ---------------------------------------------------------------- bulk storage

_STAGING_COLUMNS = ("line", "address", "name", "timezone", "variables")
# One chunk is staged and promoted while the reader thread reads the next ones.
_CHUNKS_READ_AHEAD = 2


def _store(recipient_list: RecipientList, rows: Iterable[Recipient]) -> int:
    """Stores the rows a chunk at a time; returns how many distinct recipients were stored.

    Each chunk is staged, then contacts and messages are created with two statements. A repeated
    address is kept once, at its first line: within a chunk here, across chunks by the list's
    unique constraint, so memory stays flat however long the file.
    """
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS import_staging")
        cursor.execute(
            "CREATE TEMPORARY TABLE import_staging ("
            " line integer, address varchar(254), name varchar(200), timezone varchar(64),"
            " variables text)"
        )
        stored = 0
        for chunk in _read_ahead(_staged_chunks(rows), _CHUNKS_READ_AHEAD):
            if connection.vendor == "postgresql":
                cursor.execute("TRUNCATE import_staging")
                _copy_rows(cursor, chunk)
            else:
                cursor.execute("DELETE FROM import_staging")
                cursor.executemany(_INSERT_STAGED, chunk)
            stored += _promote(cursor, recipient_list)
        cursor.execute("DROP TABLE import_staging")
    return stored


_INSERT_STAGED = (
    f"INSERT INTO import_staging ({', '.join(_STAGING_COLUMNS)}) VALUES (%s, %s, %s, %s, %s)"
)


def _staged_chunks(rows: Iterable[Recipient]) -> Iterator[list[tuple]]:
    """Staging rows in chunks of CHUNK_ROWS, each address at most once per chunk."""
    chunk: dict[str, tuple] = {}
    for row in rows:
        if row.address not in chunk:
            chunk[row.address] = (
                row.line,
                row.address,
                row.name[:200],
                row.timezone,
                json.dumps(row.variables),
            )
            if len(chunk) >= CHUNK_ROWS:
                yield list(chunk.values())
                chunk = {}
    if chunk:
        yield list(chunk.values())


def _read_ahead(chunks: Iterator[list[tuple]], depth: int) -> Iterator[list[tuple]]:
    """Yields the chunks while a thread reads up to `depth` more, so parsing overlaps storing.

    The reading thread never touches the database; an error there is raised here.
    """
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for chunk in chunks:
                if not hand(chunk):
                    return
            hand(_END)
        except BaseException as error:  # handed over and raised in the caller's thread
            hand(error)

    reader = threading.Thread(target=read, name="recipient-import-reader", daemon=True)
    reader.start()
    try:
        while (item := ready.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join()


_END = object()


def _copy_rows(cursor, rows: list[tuple]) -> None:
    columns = ", ".join(_STAGING_COLUMNS)
    with cursor.cursor.copy(f"COPY import_staging ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _promote(cursor, recipient_list: RecipientList) -> int:
    org_id, now = recipient_list.org_id, timezone.now()
    contact, message = Contact._meta.db_table, Message._meta.db_table
    cursor.execute(
        f"INSERT INTO {contact} (org_id, address, name, timezone, created_at) "
        f"SELECT %s, s.address, s.name, s.timezone, %s FROM import_staging s WHERE true "
        f"ON CONFLICT (org_id, address) DO NOTHING",
        [org_id, now],
    )
    variables = "CAST(s.variables AS jsonb)" if connection.vendor == "postgresql" else "s.variables"
    # Every message starts due at the list's start; the dispatcher moves it to its window. A chunk
    # holds each address once, so a conflict is with an earlier chunk: its earlier line stays.
    # The contact is looked up per row (a subquery the planner cannot turn into a scan of all the
    # organization's contacts).
    cursor.execute(
        f"INSERT INTO {message} (org_id, campaign_id, recipient_list_id, contact_id, address,"
        f" name, timezone, variables, line, status, provider_id, error_code, error_message,"
        f" eligible_at, attempts, created_at) "
        f"SELECT %s, %s, %s,"
        f" (SELECT c.id FROM {contact} c WHERE c.org_id = %s AND c.address = s.address),"
        f" s.address, s.name, s.timezone, {variables}, s.line, %s, '', '', '', %s, 0, %s"
        f" FROM import_staging s WHERE true"
        f" ON CONFLICT (contact_id, recipient_list_id) DO NOTHING",
        [
            org_id,
            recipient_list.campaign_id,
            recipient_list.pk,
            org_id,
            MessageStatus.QUEUED,
            recipient_list.start_at,
            now,
        ],
    )
    return cursor.rowcount


def _apply_suppressions(recipient_list: RecipientList) -> int:
    return suppressions_apply_to_list(
        recipient_list_id=recipient_list.pk, org_id=recipient_list.org_id
    )


# ---------------------------------------------------------------- other writes


@transaction.atomic
def recipient_list_stop(*, recipient_list: RecipientList, user: AbstractBaseUser) -> int:
    """Stops a list: its unsent messages are cancelled. Returns how many were cancelled."""
    locked = RecipientList.objects.select_for_update().get(pk=recipient_list.pk)
    if not locked.can_stop:
        return 0
    cancelled = Message.objects.filter(recipient_list=locked, status=MessageStatus.QUEUED).update(
        status=MessageStatus.CANCELLED
    )
    locked.status = ListStatus.STOPPED
    locked.stopped_at = timezone.now()
    locked.save(update_fields=["status", "stopped_at"])
    activity_record(
        org=locked.org,
        actor=user,
        verb="stopped recipient list",
        subject=locked.campaign.name,
        campaign=locked.campaign,
        detail=f"{locked.file_name}: {cancelled} unsent messages cancelled",
    )
    return cancelled


def csv_template(channel: str) -> str:
    """The downloadable CSV template for a channel, with sample rows in the right formats."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(CSV_TEMPLATE_ROWS[channel])
    return out.getvalue()
