"""Importing uploaded CSV files — recipient lists and opt-outs: all rows or none, streamed."""

import csv
import io
import json
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import BinaryIO

import psycopg
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files.base import ContentFile, File
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from psycopg.copy import QueuedLibpqWriter

from campaigns.models import Campaign
from campaigns.services import activity_record
from delivery.models import Message, MessageStatus, SuppressionReason
from delivery.services import suppressions_add_bulk, suppressions_apply_to_list
from orgs.models import Organization
from orgs.parsing import EARLIEST, LATEST, local_instant
from recipients.csv_reader import (
    CSV_TEMPLATE_ROWS,
    ErrorKind,
    ErrorLogWriter,
    OptOut,
    OptOutReader,
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


class ListDatesRefused(ValueError):
    """A start and end a list cannot have; the message says why, for the user."""


def _list_dates(
    *, start_at: datetime | None, end_at: datetime | None, tz: tzinfo, allow_past: bool = False
) -> tuple[datetime, datetime | None]:
    """The start and end a new list is stored with: a start in the past means now unless
    `allow_past`, and the end must come after the start (named in `tz` if it does not). Both
    stay within the years every form keeps dates to, whoever calls."""
    for name, at in (("start", start_at), ("end", end_at)):
        if at is not None and local_instant(at, at.tzinfo) is None:
            raise ListDatesRefused(
                f"The {name} is outside the years {EARLIEST.year} to {LATEST.year - 1}."
            )
    now = timezone.now()
    start = start_at or now
    if not allow_past:
        start = max(start, now)
    if end_at is not None and end_at <= start:
        moved = "" if start == start_at else " (a start in the past means now)"
        shown = {
            name: f"{timezone.localtime(at, tz):%Y-%m-%d %H:%M}"
            for name, at in (("start", start), ("end", end_at))
        }
        raise ListDatesRefused(
            f"The end ({shown['end']}) must be after the start{moved} ({shown['start']})."
        )
    return start, end_at


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
    allow_past_start: bool = False,
) -> ImportResult:
    """Imports the file as a new Scheduled list of the campaign, or rejects it whole.

    Raises ListDatesRefused when the end is not after the start (see _list_dates).
    """
    campaign.require("add_list")
    start_at, end_at = _list_dates(
        start_at=start_at, end_at=end_at, tz=campaign.org.tz, allow_past=allow_past_start
    )
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
            _imports_one_at_a_time(org.pk)
            recipient_list = RecipientList.objects.create(
                org=org,
                campaign=campaign,
                file_name=file_name[:255],
                start_at=start_at,
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


# Key spaces of the import locks among PostgreSQL's advisory locks (the other key: the org).
# Recipient lists and opt-outs write different tables, so one kind never waits for the other.
_IMPORT_LOCKS = 4_004
_OPT_OUT_IMPORT_LOCKS = 4_005


def _imports_one_at_a_time(org_id: int, kind: int = _IMPORT_LOCKS) -> None:
    """Waits for the organization's running import of this kind, if any; the next waits for this.

    Two imports sharing people lock the rows they create until they commit: side by side,
    each could come to wait for a row the other holds, and PostgreSQL would abort one.
    The turn ends with the transaction. (SQLite already lets one writer in at a time.)
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [kind, org_id])


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
    return _rejected_upload_save(
        org=campaign.org,
        campaign=campaign,
        file_name=file_name,
        kinds=Counter(error.kind for error in errors),
        file_errors=[error.message for error in errors if error.line is None],
        log=ContentFile(log.getvalue().encode()),
        user=user,
    )


def _rejected_upload_save(
    *,
    org: Organization,
    campaign: Campaign | None,
    file_name: str,
    kinds: Counter[ErrorKind],
    file_errors: list[str],
    log: File,
    user: AbstractBaseUser | None,
) -> RejectedUpload:
    rejected = RejectedUpload(
        org=org,
        campaign=campaign,
        file_name=file_name[:255],
        summary={kind.label: count for kind, count in kinds.most_common()},
        error_count=kinds.total(),
        file_errors=file_errors,
        created_by=user,
    )
    rejected.error_log.save(f"{uuid.uuid4().hex}.csv", log, save=True)
    return rejected


# ---------------------------------------------------------------- bulk storage


def _store(recipient_list: RecipientList, rows: Iterable[Recipient]) -> int:
    """Stores the rows a chunk at a time; returns how many distinct recipients were stored.

    A repeated address is kept once, at its first line: within a chunk here, across chunks by
    the list's unique constraint, so memory stays flat however long the file.
    """
    stored, chunks = 0, _chunks(rows)
    chunk = next(chunks, None)
    while chunk is not None:
        contact_ids = _contacts_ensure(recipient_list.org_id, chunk)
        count, chunk = _messages_insert(recipient_list, chunk, contact_ids, chunks)
        stored += count
    return stored


def _chunks(rows: Iterable[Recipient]) -> Iterator[list[tuple]]:
    """Rows as (line, address, name, timezone, variables as JSON) in chunks of CHUNK_ROWS.

    Each address is kept once per chunk, at its first line. A chunk is read while the database
    stores the one before, so everything that needs no answer from it is prepared here.
    """
    chunk: dict[str, tuple] = {}
    for row in rows:
        if row.address not in chunk:
            chunk[row.address] = (
                row.line,
                row.address,
                row.name,
                row.timezone,
                json.dumps(row.variables),
            )
            if len(chunk) >= CHUNK_ROWS:
                yield list(chunk.values())
                chunk = {}
    if chunk:
        yield list(chunk.values())


class _JsonbText(psycopg.adapt.Dumper):
    """COPY's binary jsonb for a value that is already JSON text."""

    format = psycopg.pq.Format.BINARY
    oid = psycopg.postgres.types["jsonb"].oid

    def dump(self, obj: str) -> bytes:
        return b"\x01" + obj.encode()  # jsonb's binary format: version 1, then the text


@contextmanager
def _binding_cursor() -> Iterator[psycopg.Cursor]:
    """A cursor on Django's PostgreSQL connection that sends parameters apart from the SQL.

    Django quotes parameters into the statement text; for ten thousand values that quoting
    cost more than the insert itself. Binary parameters and COPY skip it. Its errors are
    Django's, as a Django cursor's would be.
    """
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.adapters.register_dumper(None, _JsonbText)  # only where COPY is told "jsonb"
        yield cursor


def _contacts_ensure(org_id: int, chunk: list[tuple]) -> dict[str, int]:
    """Creates the chunk's new contacts; returns the contact id of every address in it."""
    table, now = Contact._meta.db_table, timezone.now()
    addresses, names, zones = ([row[i] for row in chunk] for i in (1, 2, 3))
    if connection.vendor == "postgresql":
        with _binding_cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (org_id, address, name, timezone, created_at)"
                f" SELECT %b, a, n, z, %b FROM unnest(%b, %b, %b) u(a, n, z)"
                f" ON CONFLICT (org_id, address) DO NOTHING RETURNING address, id",
                [org_id, now, addresses, names, zones],
            )
            ids = dict(cursor.fetchall())
            if len(ids) < len(addresses):  # some were contacts already
                cursor.execute(
                    f"SELECT address, id FROM {table} WHERE org_id = %b AND address = ANY(%b)",
                    [org_id, [address for address in addresses if address not in ids]],
                )
                ids.update(cursor.fetchall())
        return ids
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} (org_id, address, name, timezone, created_at)"
            f" VALUES (%s, %s, %s, %s, %s) ON CONFLICT (org_id, address) DO NOTHING",
            [(org_id, *contact, now) for contact in zip(addresses, names, zones, strict=True)],
        )
    ids = {}
    for start in range(0, len(addresses), 500):  # SQLite's cap on parameters per statement
        contacts = Contact.objects.filter(org_id=org_id, address__in=addresses[start : start + 500])
        ids.update(contacts.values_list("address", "id"))
    return ids


# Column and PostgreSQL type of each value a new message is stored with, in _chunks' order.
_MESSAGE_COLUMNS = {
    "org_id": "bigint",
    "campaign_id": "bigint",
    "recipient_list_id": "bigint",
    "contact_id": "bigint",
    "line": "integer",
    "address": "varchar",
    "name": "varchar",
    "timezone": "varchar",
    "variables": "jsonb",
    "status": "varchar",
    "provider_id": "varchar",
    "error_code": "varchar",
    "error_message": "varchar",
    "eligible_at": "timestamptz",
    "attempts": "smallint",
    "created_at": "timestamptz",
}


def _messages_insert(
    recipient_list: RecipientList,
    chunk: list[tuple],
    contact_ids: dict[str, int],
    chunks: Iterator[list[tuple]],
) -> tuple[int, list[tuple] | None]:
    """Queues a message per row of the chunk, reading the next chunk while they are stored.

    Returns how many messages were new to the list, and the next chunk (None after the last).
    Every message starts due at the list's start; the dispatcher moves it to its window.
    """
    head = (recipient_list.org_id, recipient_list.campaign_id, recipient_list.pk)
    tail = (MessageStatus.QUEUED, "", "", "", recipient_list.start_at, 0, timezone.now())
    rows = [(*head, contact_ids[row[1]], *row, *tail) for row in chunk]
    table, columns = Message._meta.db_table, ", ".join(_MESSAGE_COLUMNS)
    following: list[tuple] | object | None = _NOT_READ
    if connection.vendor == "postgresql":
        # COPY is the fast way in but knows no ON CONFLICT: an address repeated from an earlier
        # chunk (rare) fails it, and that chunk is inserted row by row instead.
        copy_sql = f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)"
        try:
            with (
                transaction.atomic(),
                _binding_cursor() as cursor,
                cursor.copy(copy_sql, writer=QueuedLibpqWriter(cursor)) as copy,
            ):
                copy.set_types(list(_MESSAGE_COLUMNS.values()))
                for row in rows:
                    copy.write_row(row)
                # A thread hands the rows over: the database stores them while we read on.
                following = next(chunks, None)
            return len(rows), following
        except IntegrityError:
            pass  # the chunk was rolled back; the next one may already have been read
    placeholders = ", ".join(["%s"] * len(_MESSAGE_COLUMNS))
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} ({columns}) VALUES ({placeholders})"
            f" ON CONFLICT (contact_id, recipient_list_id) DO NOTHING",
            rows,
        )
        count = cursor.rowcount
    return count, next(chunks, None) if following is _NOT_READ else following


_NOT_READ = object()


def _apply_suppressions(recipient_list: RecipientList) -> int:
    return suppressions_apply_to_list(
        recipient_list_id=recipient_list.pk, org_id=recipient_list.org_id
    )


# ---------------------------------------------------------------- opt-out files


# An opt-out file's error log lists this many bad rows and only counts the rest, so that a 20 MB
# file of nonsense cannot leave a log many times its size.
OPT_OUT_ERRORS_LISTED = 50_000
# The first few bad rows are shown on the page too, beside what is wrong with the whole file.
OPT_OUT_ERRORS_SHOWN = 10


@dataclass
class OptOutImportResult:
    """What an opt-out file did: how many addresses it added, or why it was rejected."""

    added: int = 0
    already_there: int = 0
    messages_opted_out: int = 0
    rejected: RejectedUpload | None = None
    first_errors: list[RowError] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.rejected is None


def suppressions_import(
    *,
    org: Organization,
    stream: BinaryIO,
    file_name: str,
    user: AbstractBaseUser | None,
    max_bytes: int | None = None,
) -> OptOutImportResult:
    """Adds every address of an opt-out file to the organization's list, or rejects it whole.

    Like a recipient list, the file is read a row at a time and its addresses go to the
    database a chunk at a time, all in one transaction; the bad rows go to an error log on disk
    as they are found, so memory stays flat however long the file.
    """
    reader = OptOutReader(
        stream,
        default_region=org.default_region,
        **({"max_bytes": max_bytes} if max_bytes else {}),
    )
    result = OptOutImportResult()
    now = timezone.now()
    with tempfile.TemporaryFile() as log_file:
        log = _OptOutErrorLog(log_file, reader)
        try:
            with transaction.atomic():
                _imports_one_at_a_time(org.pk, _OPT_OUT_IMPORT_LOCKS)
                addresses = 0
                for count, distinct in _address_chunks(log.valid_rows()):
                    addresses += count
                    added, opted_out = suppressions_add_bulk(
                        org_id=org.pk,
                        addresses=distinct,
                        reason=SuppressionReason.CSV_IMPORT,
                        detail=file_name,
                        user=user,
                        at=now,
                    )
                    result.added += added
                    result.messages_opted_out += opted_out
                if log.count:
                    raise _Rejected
                # A line repeating an earlier one found its address already there too.
                result.already_there = addresses - result.added
                activity_record(
                    org=org,
                    actor=user,
                    verb="imported opt-outs",
                    subject=file_name[:255],
                    detail=f"{result.added} added, {result.already_there} already on the list; "
                    f"{result.messages_opted_out} queued messages opted out",
                )
        except _Rejected:
            result = OptOutImportResult(
                rejected=log.save(org=org, file_name=file_name, user=user),
                first_errors=log.first_errors,
            )
    return result


def _address_chunks(rows: Iterable[OptOut]) -> Iterator[tuple[int, list[str]]]:
    """The addresses CHUNK_ROWS at a time: how many, and each of them once."""
    count, distinct = 0, {}
    for row in rows:
        count += 1
        distinct[row.address] = None
        if count >= CHUNK_ROWS:
            yield count, list(distinct)
            count, distinct = 0, {}
    if count:
        yield count, list(distinct)


class _OptOutErrorLog:
    """An opt-out file's bad rows, written to a temporary file as the reader finds them."""

    def __init__(self, out: BinaryIO, reader: OptOutReader) -> None:
        self.count = 0
        self.first_errors: list[RowError] = []
        self._file_errors: list[str] = []
        self._out = out
        self._reader = reader
        self._text: io.TextIOWrapper | None = None
        self._writer: ErrorLogWriter | None = None

    def valid_rows(self) -> Iterator[OptOut]:
        """The reader's addresses until its first error; then the rest is read for errors only."""
        for item in self._reader:
            if type(item) is RowError:
                self._add(item)
            elif not self.count:
                yield item

    def _add(self, error: RowError) -> None:
        self.count += 1
        if error.line is None:
            self._file_errors.append(error.message)
        elif len(self.first_errors) < OPT_OUT_ERRORS_SHOWN:
            self.first_errors.append(error)
        if self.count > OPT_OUT_ERRORS_LISTED:
            return
        if self._writer is None:
            # The first error comes once the header is known (or known to be missing).
            self._text = io.TextIOWrapper(self._out, encoding="utf-8", newline="")
            self._writer = ErrorLogWriter(self._text, self._reader.header or None)
        self._writer.write(error)

    def save(
        self, *, org: Organization, file_name: str, user: AbstractBaseUser | None
    ) -> RejectedUpload:
        """Stores the log with a rejection of the file, to download from the page."""
        file_errors = list(self._file_errors)
        if self.count > OPT_OUT_ERRORS_LISTED:
            file_errors.append(
                f"The file has {self.count:,} rows with errors; the error log lists the first "
                f"{OPT_OUT_ERRORS_LISTED:,}. The same mistake is probably repeated: fix it and "
                "upload the file again."
            )
        if self._text is not None:
            self._text.flush()
            self._text.detach()
        self._out.seek(0)
        return _rejected_upload_save(
            org=org,
            campaign=None,
            file_name=file_name,
            kinds=self._reader.summary.errors,
            file_errors=file_errors,
            log=File(self._out),
            user=user,
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
