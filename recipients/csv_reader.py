"""Streaming readers and validators for CSV uploads (pure Python: no models, no database).

`RecipientReader` (or `read_recipients`) yields a `Recipient` for every valid row of a recipient
list and a `RowError` for every problem, reading the upload a chunk at a time; `OptOutReader`
does the same for a file of opt-outs, yielding an `OptOut` per address. Any `RowError` means the
file must be rejected as a whole. `ErrorLogWriter` (or `write_error_log`) turns the errors into a
CSV for the user. Repeated addresses and the limit on distinct recipients are the importer's: it
keeps them in the database, so that memory stays flat however long the file.

Every value a reader yields fits the column it is stored in (`EMAIL_MAX_CHARS`, `NAME_MAX_CHARS`,
timezone names), so no accepted row can fail in the database, on PostgreSQL or SQLite alike;
`normalise_address` is the same check for the forms that take one address.

Encoding: uploads are seekable, so before yielding anything the reader makes one quick pass that
decides between strict UTF-8 and Windows-1252, then rewinds and parses; a late undecodable byte
can therefore never leave half a file imported under the wrong encoding.
"""

import codecs
import csv
import difflib
import functools
import importlib.resources
import io
import re
import zoneinfo
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import BinaryIO, Generic, Literal, NamedTuple, TextIO, TypeVar

import phonenumbers
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator, validate_email
from django.db import models
from phonenumbers import PhoneMetadata, PhoneNumberDesc, PhoneNumberFormat
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE
from tzlocal.windows_tz import win_tz

MAX_FIELD_CHARS = 10_000
_MEGABYTE = 1024 * 1024
MAX_FILE_BYTES = 20 * _MEGABYTE
# The length of the address columns (Contact, Message, Suppression): RFC 5321's longest path.
# Django's validate_email allows 320, which PostgreSQL would refuse mid-import and SQLite store.
EMAIL_MAX_CHARS = 254
# The length of the name columns (Contact, Message); a longer name is cut, not refused.
NAME_MAX_CHARS = 200
# Past this many rows per allowed recipient a file is rejected without checking the rest: a
# million-line file answers in seconds (the rest is only counted), and memory stays bounded.
ROWS_CHECKED_PER_RECIPIENT = 10
_SNIFF_BYTES = 64 * 1024
_SCAN_BYTES = _MEGABYTE
_DELIMITERS = (",", ";", "\t")
_SAVE_AS_CSV_UTF8 = (
    'In Excel choose File → Save As → "CSV UTF-8 (Comma delimited) (*.csv)", then upload that file.'
)
_BINARY_SIGNATURES = {
    b"PK\x03\x04": "an Excel .xlsx workbook or a zip file",
    b"\xd0\xcf\x11\xe0": "an old Excel .xls workbook",
    b"%PDF": "a PDF document",
    b"\x89PNG": "an image",
    b"\xff\xd8\xff": "an image",
    b"GIF8": "an image",
}


class ErrorKind(models.TextChoices):
    """Why a file or a row was refused, with a label a person can read."""

    TOO_MANY_RECIPIENTS = "too_many_recipients", "Too many recipients"
    MISSING_COLUMN = "missing_column", "Missing column"
    DUPLICATE_COLUMN = "duplicate_column", "Duplicate column"
    WRONG_FIELD_COUNT = "wrong_field_count", "Wrong number of values"
    INVALID_PHONE = "invalid_phone", "Invalid phone number"
    EXCEL_SCIENTIFIC_PHONE = "excel_scientific_phone", "Phone number in scientific notation"
    INVALID_EMAIL = "invalid_email", "Invalid email address"
    INVALID_TIMEZONE = "invalid_timezone", "Invalid timezone"
    EMPTY_FILE = "empty_file", "Empty file"
    NOT_CSV = "not_csv", "Not a CSV file"
    FILE_TOO_LARGE = "file_too_large", "File too large"
    FIELD_TOO_LARGE = "field_too_large", "Value too long"
    ENCODING = "encoding", "Unreadable text"
    MISSING_ADDRESS = "missing_address", "Missing phone number or email"


@dataclass(frozen=True)
class ReaderOptions:
    """How to read one upload: the campaign's channel, defaults and limits."""

    channel: Literal["sms", "email"]
    default_timezone: str
    default_region: str
    max_recipients: int
    max_bytes: int = MAX_FILE_BYTES

    @property
    def rows_checked(self) -> int:
        """Rows validated before the rest of a far too long file is only counted."""
        return self.max_recipients * ROWS_CHECKED_PER_RECIPIENT


@dataclass(frozen=True, slots=True)
class Recipient:
    """One valid recipient row, normalised and ready to store."""

    line: int
    address: str
    timezone: str
    name: str
    variables: dict[str, str]


@dataclass(frozen=True, slots=True)
class OptOut:
    """One address of an opt-out file, normalised as it is stored."""

    line: int
    address: str


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem with the file (line None) or with one of its rows."""

    kind: ErrorKind
    message: str
    line: int | None
    raw: list[str]


@dataclass
class ReadSummary:
    """What a finished read found: data rows and errors."""

    rows: int = 0
    errors: Counter[ErrorKind] = field(default_factory=Counter)

    @property
    def error_count(self) -> int:
        """How many errors were reported in total."""
        return self.errors.total()

    @property
    def ok(self) -> bool:
        """Whether the file can be imported (no errors at all)."""
        return not self.errors


CSV_TEMPLATE_ROWS: dict[str, list[list[str]]] = {
    "sms": [
        ["timezone", "phone_number", "name"],
        ["America/New_York", "+12125550123", "Ana García"],
        ["Europe/London", "+447911123456", "Oliver Smith"],
        ["Asia/Kolkata", "+919876543210", "Priya Patel"],
    ],
    "email": [
        ["timezone", "email", "name"],
        ["America/New_York", "ana.garcia@example.com", "Ana García"],
        ["Europe/London", "oliver.smith@example.com", "Oliver Smith"],
        ["Asia/Kolkata", "priya.patel@example.com", "Priya Patel"],
    ],
}


class _Problem(NamedTuple):
    kind: ErrorKind
    message: str


class _Columns(NamedTuple):
    address: int
    timezone: int
    name: int | None
    variables: tuple[tuple[str, int], ...]


def read_recipients(stream: BinaryIO, options: ReaderOptions) -> Iterator[Recipient | RowError]:
    """Yield the recipients and errors found in a seekable binary CSV upload."""
    return iter(RecipientReader(stream, options))


_Item = TypeVar("_Item", Recipient, OptOut)


class _Reader(Generic[_Item]):
    """What every reader shares: one lazy pass over the upload, its header and a summary."""

    # How the file-too-large message tells the user to split the file, for what it is used for.
    split_advice = ""

    def __init__(self, stream: BinaryIO, max_bytes: int) -> None:
        if not stream.seekable():
            raise ValueError(
                f"{type(self).__name__} needs a seekable stream (uploads are seekable)."
            )
        self.summary = ReadSummary()
        self.header: list[str] = []
        self._stream = stream
        self._max_bytes = max_bytes

    def __iter__(self) -> Iterator[_Item | RowError]:
        opened = _open_text(self._stream, self._max_bytes, self.split_advice)
        if isinstance(opened, RowError):
            yield self._count(opened)
            return
        text, delimiter = opened
        try:
            yield from self._read_rows(csv.reader(text, delimiter=delimiter))
        finally:
            # Detach so that closing our wrapper never closes the caller's upload.
            text.detach()

    def _count(self, error: RowError) -> RowError:
        self.summary.errors[error.kind] += 1
        return error

    def _read_rows(self, reader: "csv._reader") -> Iterator[_Item | RowError]:
        raise NotImplementedError


class RecipientReader(_Reader[Recipient]):
    """Reads one upload lazily, once; afterwards `summary` and `header` describe the file."""

    split_advice = "add each as its own recipient list"

    def __init__(self, stream: BinaryIO, options: ReaderOptions) -> None:
        super().__init__(stream, options.max_bytes)
        default_timezone = _canonical_timezone(options.default_timezone)
        if default_timezone is None:
            raise ValueError(f"Unknown default timezone {options.default_timezone!r}.")
        self.options = options
        self._timezone_for = _timezone_reader(default_timezone)
        if options.channel == "sms":
            self._normalise_address = _phone_normaliser(options.default_region)
        else:
            self._normalise_address = _normalise_email

    def _read_rows(self, reader: "csv._reader") -> Iterator[Recipient | RowError]:
        try:
            header_line, header = _first_non_blank_row(reader)
        except csv.Error:
            yield self._count(_file_error(ErrorKind.FIELD_TOO_LARGE, _UNCLOSED_QUOTE))
            return
        if header is None:
            yield self._count(_file_error(ErrorKind.EMPTY_FILE, "The file is empty."))
            return
        self.header = header
        columns = _map_columns(header, self.options.channel)
        if not isinstance(columns, _Columns):
            for problem in columns:
                yield self._count(RowError(problem.kind, problem.message, header_line, header))
            return
        completed = yield from self._read_data_rows(reader, columns, len(header))
        if completed:
            yield from map(self._count, self._file_level_errors())

    def _read_data_rows(
        self, reader: "csv._reader", columns: _Columns, width: int
    ) -> Generator[Recipient | RowError, None, bool]:
        """Yield each data row's outcome; return False if the CSV parser gave up part-way."""
        end = reader.line_num
        rows_checked = self.options.rows_checked
        try:
            for row in reader:
                line, end = end + 1, reader.line_num
                if self.summary.rows >= rows_checked:
                    self.summary.rows += not _is_blank(row)
                elif len(row) != width or max(map(len, row)) > MAX_FIELD_CHARS:
                    if not _is_blank(row):
                        self.summary.rows += 1
                        yield self._count(_shape_error(row, line, width))
                elif row[columns.address].strip() or not _is_blank(row):
                    self.summary.rows += 1
                    outcome = self._check_row(row, line, columns)
                    if type(outcome) is Recipient:
                        yield outcome
                    else:
                        yield from map(self._count, outcome)
        except csv.Error:
            # Only a field over csv.field_size_limit() gets here, and the parser can't resync.
            yield self._count(RowError(ErrorKind.FIELD_TOO_LARGE, _UNCLOSED_QUOTE, end + 1, []))
            return False
        return True

    def _check_row(
        self, row: list[str], line: int, columns: _Columns
    ) -> Recipient | list[RowError]:
        """Validate one data row."""
        address = self._normalise_address(row[columns.address].strip())
        timezone = self._timezone_for(row[columns.timezone].strip())
        if type(address) is not str or type(timezone) is not str:
            found = (address, timezone)
            return [RowError(p.kind, p.message, line, row) for p in found if type(p) is _Problem]
        name = row[columns.name].strip()[:NAME_MAX_CHARS] if columns.name is not None else ""
        variables = {"name": name, "first_name": name.split(None, 1)[0] if name else ""}
        for key, at in columns.variables:
            variables[key] = row[at].strip()
        return Recipient(line, address, timezone, name, variables)

    def _file_level_errors(self) -> Iterator[RowError]:
        summary, limit = self.summary, self.options.max_recipients
        if not summary.rows:
            yield _file_error(
                ErrorKind.EMPTY_FILE, "The file has a header row but no recipients below it."
            )
        rows_checked = self.options.rows_checked
        if summary.rows > rows_checked:
            yield _file_error(
                ErrorKind.TOO_MANY_RECIPIENTS,
                f"This file has {summary.rows:,} rows; the limit for one list is {limit:,} "
                f"recipients, so only the first {rows_checked:,} rows were checked — split it "
                "and add a new recipient list for each part.",
            )


# Header titles (as `_column_key` spells them) that name a column of addresses in an opt-out file.
_OPT_OUT_COLUMNS = frozenset({"phone_number", "email", "address", "recipient", "number"})


class OptOutReader(_Reader[OptOut]):
    """Reads an opt-out file: the addresses in every column its header names, else in column A."""

    split_advice = "import each in turn"

    def __init__(
        self, stream: BinaryIO, *, default_region: str, max_bytes: int = MAX_FILE_BYTES
    ) -> None:
        super().__init__(stream, max_bytes)
        self._normalise_address = _address_normaliser(default_region)

    def _read_rows(self, reader: "csv._reader") -> Iterator[OptOut | RowError]:
        columns: tuple[int, ...] | None = None  # known once the first row is read
        end = 0
        try:
            for row in reader:
                line, end = end + 1, reader.line_num
                if _is_blank(row):
                    continue
                if columns is None:
                    columns = _opt_out_columns(row)
                    if columns:
                        self.header = row
                        continue
                    # No header: a list of bare values, the addresses in column A.
                    columns = (0,)
                    outcome = self._check_row(row, line, columns)
                    if type(outcome) is RowError and outcome.kind != ErrorKind.FIELD_TOO_LARGE:
                        outcome = RowError(ErrorKind.MISSING_COLUMN, _NO_HEADER, line, row)
                else:
                    outcome = self._check_row(row, line, columns)
                self.summary.rows += 1
                if type(outcome) is RowError:
                    yield self._count(outcome)
                else:
                    yield from outcome
        except csv.Error:
            # Only a field over csv.field_size_limit() gets here, and the parser can't resync.
            yield self._count(RowError(ErrorKind.FIELD_TOO_LARGE, _UNCLOSED_QUOTE, end + 1, []))
            return
        if not self.summary.rows:
            yield self._count(
                _file_error(
                    ErrorKind.EMPTY_FILE,
                    "The file has a header row but no phone numbers or emails below it.",
                )
            )

    def _check_row(
        self, row: list[str], line: int, columns: tuple[int, ...]
    ) -> list[OptOut] | RowError:
        """Validate one data row: every address in it, or the first problem."""
        width = len(self.header) if self.header else len(row)
        if len(row) != width or max(map(len, row)) > MAX_FIELD_CHARS:
            return _shape_error(row, line, width)
        values = [value for value in (row[at].strip() for at in columns) if value]
        if not values:
            where = "in its address column" if len(columns) == 1 else "in any address column"
            message = f"This row has no phone number or email address {where}."
            return RowError(ErrorKind.MISSING_ADDRESS, message, line, row)
        found = []
        for value in values:
            address = self._normalise_address(value)
            if type(address) is not str:
                return RowError(address.kind, address.message, line, row)
            found.append(OptOut(line, address))
        return found


_NO_HEADER = (
    "The first row is neither a phone number or email address nor a header naming the column "
    'of addresses ("phone_number", "email" or "address"). Put the addresses in column A, or '
    "give their column one of those names."
)


def _opt_out_columns(header: list[str]) -> tuple[int, ...]:
    return tuple(at for at, title in enumerate(header) if _column_key(title) in _OPT_OUT_COLUMNS)


def too_many_recipients(recipients: int, limit: int) -> RowError:
    """The error for a file with more distinct recipients than one list may hold."""
    return _file_error(
        ErrorKind.TOO_MANY_RECIPIENTS,
        f"This file has {recipients:,} recipients; the limit for one list is {limit:,} — "
        "split it and add a new recipient list for the rest.",
    )


class ErrorLogWriter:
    """Writes the error log an error at a time: reason, line number, then the row as uploaded."""

    def __init__(self, out: TextIO, original_header: list[str] | None = None) -> None:
        self._writer = csv.writer(out)
        header = map(_defuse_formula, original_header or ["original row"])
        self._writer.writerow(["reason", "line", *header])

    def write(self, error: RowError) -> None:
        """Write one error's line."""
        line = "" if error.line is None else error.line
        self._writer.writerow([error.message, line, *map(_defuse_formula, error.raw)])


def write_error_log(
    errors: Iterable[RowError], out: TextIO, original_header: list[str] | None = None
) -> None:
    """Write one CSV line per error: reason, line number, then the row's original values."""
    log = ErrorLogWriter(out, original_header)
    for error in errors:
        log.write(error)


_FORMULA_START = re.compile(r"[=@\t\r]|[+-](?![\d\s().-]*\Z)")
_UNCLOSED_QUOTE = (
    "A value starting on this line is far too long to be real, usually because a quote mark "
    '(") is never closed. Check the quotes on this line and save the file again.'
)


def _defuse_formula(value: str) -> str:
    # Spreadsheets run cells that start like formulas; phone numbers such as +1 212… stay as is.
    return "'" + value if _FORMULA_START.match(value) else value


def _file_error(kind: ErrorKind, message: str) -> RowError:
    return RowError(kind, message, None, [])


def _is_blank(row: list[str]) -> bool:
    return not "".join(row).strip()


def _shape_error(row: list[str], line: int, width: int) -> RowError:
    if len(row) != width:
        message = (
            f"This row has {len(row)} values but the header has {width} columns. Check for a "
            "stray comma, or put quotes around any value that contains a comma."
        )
        return RowError(ErrorKind.WRONG_FIELD_COUNT, message, line, row)
    longest = max(row, key=len)
    message = (
        f'A value in this row is {len(longest):,} characters long (it starts "{longest[:30]}…"); '
        f"the limit is {MAX_FIELD_CHARS:,}. Shorten it or check for a missing closing quote mark."
    )
    return RowError(ErrorKind.FIELD_TOO_LARGE, message, line, row)


def _first_non_blank_row(reader: "csv._reader") -> tuple[int, list[str] | None]:
    for row in reader:
        if not _is_blank(row):
            return reader.line_num, row
    return reader.line_num, None


# --- Opening the upload: size, binary sniffing, encoding and delimiter ---------------------------


def _open_text(
    stream: BinaryIO, max_bytes: int, split_advice: str
) -> tuple[io.TextIOWrapper, str] | RowError:
    size = stream.seek(0, io.SEEK_END)
    if size > max_bytes:
        return _file_error(
            ErrorKind.FILE_TOO_LARGE,
            f"This file is {size / _MEGABYTE:.1f} MB; the limit is {max_bytes / _MEGABYTE:g} MB. "
            f"Split it into smaller files and {split_advice}.",
        )
    stream.seek(0)
    head = stream.read(_SNIFF_BYTES)
    encoding = _choose_encoding(stream, head)
    if isinstance(encoding, RowError):
        return encoding
    head_text = head.decode(encoding, errors="replace")
    if not head_text.strip():
        return _file_error(ErrorKind.EMPTY_FILE, "The file is empty.")
    stream.seek(0)
    text = io.TextIOWrapper(stream, encoding=encoding, newline="")
    return text, _detect_delimiter(head_text)


def _choose_encoding(stream: BinaryIO, head: bytes) -> str | RowError:
    for signature, what in _BINARY_SIGNATURES.items():
        if head.startswith(signature):
            return _not_csv(f"it looks like {what}")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates: tuple[str, ...] = ("utf-16",)
    elif b"\x00" in head:
        return _text_with_nul_bytes_error(head)
    elif head.startswith(codecs.BOM_UTF8):
        candidates = ("utf-8-sig",)
    else:
        # Excel on Windows saves plain "CSV" as Windows-1252, which is never valid UTF-8 once
        # it contains an accent, so strict UTF-8 first and Windows-1252 second is reliable.
        candidates = ("utf-8", "cp1252")
    for encoding in candidates:
        found = _scan_as(stream, encoding)
        if found == "text":
            return encoding
        if found == "nul":
            return _file_error(
                ErrorKind.ENCODING,
                "This file contains NUL characters (zero bytes), so part of it is damaged "
                f"or isn't text. {_SAVE_AS_CSV_UTF8}",
            )
    return _file_error(
        ErrorKind.ENCODING,
        f"Some of the text in this file can't be read (it isn't UTF-8). {_SAVE_AS_CSV_UTF8}",
    )


def _not_csv(why: str) -> RowError:
    return _file_error(ErrorKind.NOT_CSV, f"This file is not a CSV ({why}). {_SAVE_AS_CSV_UTF8}")


def _text_with_nul_bytes_error(head: bytes) -> RowError:
    # UTF-16 without a byte order mark puts a NUL beside every ASCII letter.
    if max(head[0::2].count(0), head[1::2].count(0)) > len(head) // 4:
        return _file_error(
            ErrorKind.ENCODING,
            f"This file is saved as UTF-16 text, which can't be read here. {_SAVE_AS_CSV_UTF8}",
        )
    return _not_csv("it contains binary data")


def _scan_as(stream: BinaryIO, encoding: str) -> Literal["text", "undecodable", "nul"]:
    """Reads the whole file in the encoding: readable text, not this encoding, or NULs in it."""
    decoder = codecs.getincrementaldecoder(encoding)()
    stream.seek(0)
    try:
        while chunk := stream.read(_SCAN_BYTES):
            # The sniffed head is NUL-free, but a NUL further on would reach the database.
            if "\x00" in decoder.decode(chunk):
                return "nul"
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return "undecodable"
    return "text"


def _detect_delimiter(head_text: str) -> str:
    first_line = next((line for line in head_text.splitlines() if line.strip()), "")
    return max(_DELIMITERS, key=first_line.count)


# --- Header --------------------------------------------------------------------------------------

_HEADER_SEPARATORS = re.compile(r"[\s_\-]+")
_COLUMN_ALIASES = {
    "e_mail": "email",
    "email_address": "email",
    "time_zone": "timezone",
    "full_name": "name",
    "phone": "phone_number",
    "mobile": "phone_number",
    "mobile_number": "phone_number",
}
_ADDRESS_COLUMN = {"sms": "phone_number", "email": "email"}


def _column_key(title: str) -> str:
    key = _HEADER_SEPARATORS.sub("_", title.replace("\ufeff", "").strip().lower()).strip("_")
    return _COLUMN_ALIASES.get(key, key)


def _map_columns(header: list[str], channel: str) -> _Columns | list[_Problem]:
    positions: dict[str, int] = {}
    problems: list[_Problem] = []
    for at, title in enumerate(header):
        key = _column_key(title)
        # Excel leaves untitled columns when a stray cell was once edited; they carry no data.
        if not key:
            continue
        if key in positions:
            message = (
                f'The columns "{header[positions[key]].strip()}" and "{title.strip()}" have the '
                "same name. Rename or remove one of them."
            )
            problems.append(_Problem(ErrorKind.DUPLICATE_COLUMN, message))
        else:
            positions[key] = at
    address_key = _ADDRESS_COLUMN[channel]
    for required in ("timezone", address_key):
        if required not in positions:
            problems.append(_missing_column(required, address_key, header))
    if problems:
        return problems
    special = {"timezone", address_key, "name"}
    return _Columns(
        address=positions[address_key],
        timezone=positions["timezone"],
        name=positions.get("name"),
        variables=tuple((key, at) for key, at in positions.items() if key not in special),
    )


def _missing_column(required: str, address_key: str, header: list[str]) -> _Problem:
    found = ", ".join(title.strip() for title in header if title.strip()) or "nothing"
    message = (
        f'The file has no "{required}" column. The first row must name the columns, for '
        f"example: timezone,{address_key},name (found: {found})."
    )
    return _Problem(ErrorKind.MISSING_COLUMN, message)


# --- Phone numbers -------------------------------------------------------------------------------

_PHONE_FORMATTING = re.compile(r"[\s().\-\u00a0]+")
_DIGITS_MAYBE_PLUS = re.compile(r"\+?[0-9]+")
_NON_DIGITS = re.compile(r"[^0-9]+")
_SCIENTIFIC = re.compile(r"[+-]?[0-9]+(?:[.,][0-9]+)?[eE]\+?[0-9]+")
_COUNTRY_CODES = frozenset(str(code) for code in COUNTRY_CODE_TO_REGION_CODE)
# Fixed line and mobile come first only because they are what uploads contain: any match is valid.
_TYPE_DESCRIPTIONS = (
    "fixed_line",
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
)


class _Dialling(NamedTuple):
    """The parsing rules phonenumbers applies for one region, precompiled."""

    code: str
    national_prefix: re.Pattern[str] | None
    international_prefix: re.Pattern[str] | None
    longest_national: int
    regions: tuple[tuple[re.Pattern[str] | None, re.Pattern[str]], ...]


def _phone_normaliser(default_region: str) -> Callable[[str], str | _Problem]:
    home = _dialling_for_region(default_region)
    if home is None:
        raise ValueError(f"Unknown default phone region {default_region!r}.")

    def normalise(raw: str) -> str | _Problem:
        return _normalise_phone(raw, home, default_region)

    return normalise


def _normalise_phone(raw: str, home: _Dialling, region: str) -> str | _Problem:
    if not raw:
        return _Problem(ErrorKind.INVALID_PHONE, "The phone number is missing.")
    compact = _compact_phone(raw)
    quick = _quick_e164(compact, home) if compact else None
    if quick is not None:
        return quick
    if _SCIENTIFIC.fullmatch(raw):
        return _Problem(
            ErrorKind.EXCEL_SCIENTIFIC_PHONE,
            f'"{raw}" is a phone number that Excel turned into scientific notation, rounding '
            "away its last digits. In Excel, format the phone number column as Text, type the "
            "numbers again, and save.",
        )
    return _parse_phone(raw, home, region) or _Problem(
        ErrorKind.INVALID_PHONE,
        f'"{raw}" is not a valid phone number. Write it with its country code, for example '
        "+12125550123.",
    )


def _compact_phone(raw: str) -> str | None:
    """Return the number as "+digits" or "digits" without spaces, dots, dashes or brackets."""
    if _DIGITS_MAYBE_PLUS.fullmatch(raw):
        return raw
    compact = _PHONE_FORMATTING.sub("", raw)
    return compact if _DIGITS_MAYBE_PLUS.fullmatch(compact) else None


def _parse_phone(raw: str, home: _Dialling, region: str) -> str | None:
    e164 = _valid_e164(raw, region)
    if e164 is None and not raw.startswith("+"):
        digits = _NON_DIGITS.sub("", raw)
        # Longer than any local number and no trunk 0: the country code is there, only "+" is not.
        if len(digits) > home.longest_national and not digits.startswith("0"):
            e164 = _valid_e164("+" + digits, region)
    return e164


def _valid_e164(text: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def _quick_e164(compact: str, home: _Dialling) -> str | None:
    """Return the E.164 form when a precompiled check proves phonenumbers agrees, else None."""
    # phonenumbers.parse + is_valid_number cost ~50µs; this handles the common plain-digits
    # shapes in ~3µs and leaves anything the library would rewrite (trunk or IDD prefixes,
    # leading zeros, a country code typed without "+") to the library itself.
    if compact[0] == "+":
        digits = compact[1:]
        code = _country_code_prefix(digits)
        if code is None:
            return None
        dialling, national = _dialling_for_code(code), digits[len(code) :]
    else:
        dialling, national = home, compact
        idd = home.international_prefix
        if national.startswith(home.code) or (idd is not None and idd.match(national)):
            return None
    prefix = dialling.national_prefix
    if not 2 <= len(national) <= 17 or national[0] == "0" or (prefix and prefix.match(national)):
        return None
    if _is_valid_national_number(dialling, national):
        return "+" + dialling.code + national
    return None


def _country_code_prefix(digits: str) -> str | None:
    # Calling codes are prefix-free, so the first 1-3 digit match is the code (as in phonenumbers).
    for code in (digits[:1], digits[:2], digits[:3]):
        if code in _COUNTRY_CODES:
            return code
    return None


def _is_valid_national_number(dialling: _Dialling, national: str) -> bool:
    """Mirror phonenumbers.is_valid_number: pick the region as it does, then match its types."""
    for leading_digits, valid in dialling.regions:
        if leading_digits is not None:
            if leading_digits.match(national):
                return valid.fullmatch(national) is not None
        elif valid.fullmatch(national):
            return True
    return False


@functools.cache
def _dialling_for_region(region: str) -> _Dialling | None:
    metadata = PhoneMetadata.metadata_for_region(region.upper(), None)
    return None if metadata is None else _dialling(metadata)


@functools.cache
def _dialling_for_code(code: str) -> _Dialling:
    region = phonenumbers.region_code_for_country_code(int(code))
    return _dialling(PhoneMetadata.metadata_for_region_or_calling_code(int(code), region))


def _dialling(metadata: PhoneMetadata) -> _Dialling:
    return _Dialling(
        code=str(metadata.country_code),
        national_prefix=_compile_or_none(metadata.national_prefix_for_parsing),
        international_prefix=_compile_or_none(metadata.international_prefix),
        longest_national=max(metadata.general_desc.possible_length or (15,)),
        regions=_region_patterns(str(metadata.country_code)),
    )


def _compile_or_none(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(pattern) if pattern else None


@functools.cache
def _region_patterns(code: str) -> tuple[tuple[re.Pattern[str] | None, re.Pattern[str]], ...]:
    regions = COUNTRY_CODE_TO_REGION_CODE[int(code)]
    if len(regions) == 1:
        metadata = PhoneMetadata.metadata_for_region_or_calling_code(int(code), regions[0])
        return ((None, _valid_number_pattern(metadata)),)
    patterns = []
    for region in regions:
        metadata = PhoneMetadata.metadata_for_region(region, None)
        if metadata is not None:
            leading = _compile_or_none(metadata.leading_digits)
            patterns.append((leading, _valid_number_pattern(metadata)))
    return tuple(patterns)


def _valid_number_pattern(metadata: PhoneMetadata) -> re.Pattern[str]:
    """One regex equal to phonenumbers' "general pattern and any number type" check."""
    names = list(_TYPE_DESCRIPTIONS)
    if not metadata.same_mobile_and_fixed_line_pattern:
        names.insert(0, "mobile")
    types = [_description_regex(getattr(metadata, name)) for name in names]
    any_type = "|".join(regex for regex in types if regex) or "(?!)"
    general = _description_regex(metadata.general_desc) or "(?!)"
    return re.compile(f"(?={general}\\Z)(?:{any_type})")


def _description_regex(description: PhoneNumberDesc | None) -> str | None:
    pattern = description.national_number_pattern if description else None
    if not pattern:
        return None
    lengths = description.possible_length
    if not lengths:
        return f"(?:{pattern})"
    # A length of -1 is how the metadata says "no numbers of this type".
    allowed = "|".join(f"[0-9]{{{length}}}" for length in lengths if length > 0)
    return f"(?=(?:{allowed})\\Z)(?:{pattern})" if allowed else None


# --- Email addresses -----------------------------------------------------------------------------

# Django's own patterns, compiled once, so the quick check accepts exactly what validate_email does.
_EMAIL_USER = re.compile(EmailValidator.user_regex.pattern, EmailValidator.user_regex.flags)
_EMAIL_DOMAIN = re.compile(EmailValidator.domain_regex.pattern, EmailValidator.domain_regex.flags)


def normalise_address(raw: str, default_region: str) -> str:
    """A phone number in E.164 or a lower-cased email address, exactly as it is stored.

    Raises ValidationError (its code the ErrorKind) saying why the value is neither.
    """
    address = _address_normaliser(default_region)(raw.strip())
    if type(address) is not str:
        raise ValidationError(address.message, code=address.kind.value)
    return address


def _address_normaliser(default_region: str) -> Callable[[str], str | _Problem]:
    phone = _phone_normaliser(default_region)

    def normalise(raw: str) -> str | _Problem:
        if not raw:
            return _Problem(ErrorKind.MISSING_ADDRESS, "The phone number or email is missing.")
        return _normalise_email(raw) if "@" in raw else phone(raw)

    return normalise


def _normalise_email(raw: str) -> str | _Problem:
    if not raw:
        return _Problem(ErrorKind.INVALID_EMAIL, "The email address is missing.")
    # Mailboxes are case-insensitive in practice, so one lowercase form makes duplicates and
    # suppression lists compare cleanly. That form is what is checked: it is what is stored.
    address = raw.lower()
    if len(address) > EMAIL_MAX_CHARS:
        shown = raw if len(raw) <= 40 else raw[:40] + "…"
        return _Problem(
            ErrorKind.INVALID_EMAIL,
            f'"{shown}" is {len(address):,} characters long; an email address is at most '
            f"{EMAIL_MAX_CHARS} characters.",
        )
    if not _is_valid_email(address):
        return _Problem(
            ErrorKind.INVALID_EMAIL,
            f'"{raw}" is not a valid email address. Check it for typos and spaces, like '
            "name@example.com.",
        )
    return address


def _is_valid_email(value: str) -> bool:
    if "@" not in value:
        return False
    user, domain = value.rsplit("@", 1)
    if not _EMAIL_USER.match(user):
        return False
    if _EMAIL_DOMAIN.match(domain):
        return True
    # Rare forms (localhost, [IP] literals) go to Django itself.
    try:
        validate_email(value)
    except ValidationError:
        return False
    return True


# --- Timezones -----------------------------------------------------------------------------------

# A suggestion is only ever suggested, never applied: the row stays an error until the file says
# what it means. Where an offset was typed no zone with another one is suggested; an abbreviation
# gets a city zone and a note on when its clocks change.

# Abbreviations ignore daylight saving the way people expect ("EST" stays UTC-5 all summer), so
# they are refused even where tzdata knows them, with a city zone to use instead and a note.
_EASTERN = ("America/New_York", "it observes daylight time (EST in winter, EDT in summer)")
_CENTRAL = (
    "America/Chicago",
    "it observes daylight time (CST in winter, CDT in summer); for Saskatchewan, which stays on "
    'CST, use "America/Regina"',
)
_MOUNTAIN = (
    "America/Denver",
    "it observes daylight time (MST in winter, MDT in summer); for Arizona, which stays on MST, "
    'use "America/Phoenix"',
)
_PACIFIC = ("America/Los_Angeles", "it observes daylight time (PST in winter, PDT in summer)")
_ALASKA = ("America/Anchorage", "it observes daylight time (AKST in winter, AKDT in summer)")
_HAWAII = (
    "Pacific/Honolulu",
    "it stays on HST all year; for the Aleutian Islands, which change to HDT in summer, use "
    '"America/Adak"',
)
_ALEUTIAN = (
    "America/Adak",
    "it observes daylight time (HST in winter, HDT in summer); for Hawaii, which stays on HST, "
    'use "Pacific/Honolulu"',
)
_PUERTO_RICO = (
    "America/Puerto_Rico",
    "it stays on AST all year; for Atlantic Canada, which changes to ADT in summer, use "
    '"America/Halifax", and for Arabia Standard Time "Asia/Riyadh"',
)
_ATLANTIC = (
    "America/Halifax",
    "it observes daylight time (AST in winter, ADT in summer); for Puerto Rico, which stays on "
    'AST, use "America/Puerto_Rico"',
)
_NEWFOUNDLAND = ("America/St_Johns", "it observes daylight time (NST in winter, NDT in summer)")
_GUAM = ("Pacific/Guam", "it stays on ChST all year")
_AMERICAN_SAMOA = ("Pacific/Pago_Pago", "American Samoa stays on SST all year")
_UK = (
    "Europe/London",
    'it observes summer time (GMT in winter, BST in summer); for UTC all year use "UTC"',
)
_WESTERN_EUROPE = ("Europe/Lisbon", "it observes summer time (WET in winter, WEST in summer)")
_CENTRAL_EUROPE = ("Europe/Paris", "it observes summer time (CET in winter, CEST in summer)")
_EASTERN_EUROPE = ("Europe/Athens", "it observes summer time (EET in winter, EEST in summer)")
_INDIA = (
    "Asia/Kolkata",
    'India stays on IST all year; for Ireland use "Europe/Dublin", for Israel "Asia/Jerusalem"',
)
_JAPAN = ("Asia/Tokyo", "it stays on JST all year")
_EASTERN_AUSTRALIA = (
    "Australia/Sydney",
    "it observes daylight time (AEST in winter, AEDT in summer); for Queensland, which stays on "
    'AEST, use "Australia/Brisbane"',
)
_ABBREVIATIONS: dict[str, tuple[str, str]] = {
    **dict.fromkeys(("EST", "EDT", "ET", "EST5EDT"), _EASTERN),
    **dict.fromkeys(("CST", "CDT", "CT", "CST6CDT"), _CENTRAL),
    **dict.fromkeys(("MST", "MDT", "MT", "MST7MDT"), _MOUNTAIN),
    **dict.fromkeys(("PST", "PDT", "PT", "PST8PDT"), _PACIFIC),
    **dict.fromkeys(("AKST", "AKDT", "AKT"), _ALASKA),
    **dict.fromkeys(("HST", "HAST"), _HAWAII),
    "HDT": _ALEUTIAN,
    "AST": _PUERTO_RICO,
    "ADT": _ATLANTIC,
    **dict.fromkeys(("NST", "NDT"), _NEWFOUNDLAND),
    "CHST": _GUAM,
    "SST": _AMERICAN_SAMOA,
    **dict.fromkeys(("GMT", "BST"), _UK),
    **dict.fromkeys(("WET", "WEST"), _WESTERN_EUROPE),
    **dict.fromkeys(("CET", "CEST", "MET"), _CENTRAL_EUROPE),
    **dict.fromkeys(("EET", "EEST"), _EASTERN_EUROPE),
    "IST": _INDIA,
    "JST": _JAPAN,
    **dict.fromkeys(("AEST", "AEDT"), _EASTERN_AUSTRALIA),
}
_NOT_PLACES = frozenset({"Factory", "localtime"})
# UTC has no daylight saving to miss, so its names are accepted; tzdata's other fixed offsets
# (Etc/GMT+5 and the like) are refused like abbreviations.
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "UCT", "Etc/UCT", "Universal", "Etc/Universal"})
_UTC_NAMES |= {"Zulu", "Etc/Zulu"}
_FIXED_OFFSET_NAMES = frozenset({"GMT+0", "GMT-0", "GMT0", "Greenwich"})
# An offset as people type it: "GMT+1", "UTC-05:00", "UTC +5:30", "+0100", "(UTC-05:00)".
_TYPED_OFFSET = re.compile(
    r"\(?\s*(?:UTC|GMT|UT)?\s*([+\-\N{MINUS SIGN}\N{EN DASH}])\s*(\d{1,2})(?:[:.h]?(\d{2}))?\s*\)?",
    re.IGNORECASE,
)
# A near spelling costs milliseconds to find, so a file gets them for this many distinct wrong
# names, the rest only the general advice: thousands of them are still answered in seconds.
FUZZY_TIMEZONES_PER_FILE = 200
# A city typed without its area must be this close to one (difflib's ratio): "Pheonix", not "Z".
_CITY_CUTOFF = 0.8
_CITY_ZONE = 'use the recipient\'s city zone instead (Area/City, such as "America/New_York")'


def _is_fixed_offset(name: str) -> bool:
    return name not in _UTC_NAMES and (name.startswith("Etc/") or name in _FIXED_OFFSET_NAMES)


@functools.cache
def _tzdata_names() -> dict[str, str]:
    """Every name tzdata knows, keyed by itself and by its lowercase spelling."""
    names: dict[str, str] = {}
    for name in sorted(zoneinfo.available_timezones() - _NOT_PLACES):
        names[name] = name
        names.setdefault(name.lower(), name)
    return names


@functools.cache
def _timezone_names() -> dict[str, str]:
    """Every name accepted in a file, keyed by itself and by its lowercase spelling."""
    return {
        key: name
        for key, name in _tzdata_names().items()
        if name.upper() not in _ABBREVIATIONS and not _is_fixed_offset(name)
    }


@functools.cache
def _timezone_cities() -> dict[str, str]:
    """Canonical zone names keyed by their lowercase city, such as "new_york"."""
    cities: dict[str, str] = {}
    for name in sorted(set(_timezone_names().values())):
        if "/" in name:
            cities.setdefault(name.rsplit("/", 1)[1].lower(), name)
    return cities


@functools.cache
def _windows_zones() -> dict[str, tuple[str, str]]:
    """CLDR's windowsZones (as tzlocal ships it): lowercase Windows name → (name, IANA zone)."""
    current = _current_names()
    return {name.lower(): (name, current.get(zone, zone)) for name, zone in win_tz.items()}


@functools.cache
def _current_names() -> dict[str, str]:
    """Old tzdata names → the one zone.tab lists for the place now, as Asia/Calcutta → Kolkata."""
    # CLDR keeps old spellings; the CSV template and tzdata's own lists use the current ones.
    files = importlib.resources.files("tzdata.zoneinfo")
    rows = files.joinpath("zone.tab").read_text(encoding="utf-8").splitlines()
    listed = {row.split("\t")[2] for row in rows if row and not row.startswith("#")}
    renamed = {}
    for line in files.joinpath("tzdata.zi").read_text(encoding="utf-8").splitlines():
        if line.startswith("L "):
            _, target, link = line.split()
            if target in listed and link not in listed:
                renamed[link] = target
    return renamed


def _canonical_timezone(value: str) -> str | None:
    # The organization's own timezone may be any tzdata name (orgs validates it), even one that
    # a file may not use.
    names = _tzdata_names()
    return names.get(value) or names.get(value.lower())


def _timezone_reader(default: str) -> Callable[[str], str | _Problem]:
    names = _timezone_names()
    fuzzy: set[str] = set()

    def timezone_for(raw: str) -> str | _Problem:
        if not raw:
            return default
        found = names.get(raw) or names.get(raw.lower())
        if found:
            return found
        if len(fuzzy) < FUZZY_TIMEZONES_PER_FILE:
            fuzzy.add(raw)
        return _timezone_problem(raw, default, fuzzy=raw in fuzzy)

    return timezone_for


@functools.lru_cache(maxsize=4096)
def _timezone_problem(raw: str, default: str, *, fuzzy: bool) -> _Problem:
    advice = _timezone_advice(raw, fuzzy=fuzzy) or (
        'Use a name from the IANA list, such as "America/New_York" or "Europe/London", '
        f"or leave the cell blank to use {default}."
    )
    return _Problem(ErrorKind.INVALID_TIMEZONE, f'"{raw}" is not a timezone name. {advice}')


def _timezone_advice(raw: str, *, fuzzy: bool) -> str | None:
    """What to write instead of `raw`, or None when nothing close is known."""
    if raw.upper() in _ABBREVIATIONS:
        zone, note = _ABBREVIATIONS[raw.upper()]
        return f'Abbreviations are unclear about daylight saving; use "{zone}" instead: {note}.'
    offset = _fixed_offset(raw)
    if offset is not None:
        return _offset_advice(raw, offset)
    windows = _windows_zones().get(" ".join(raw.lower().split()))
    if windows:
        name, zone = windows
        if _is_fixed_offset(zone):
            return _offset_advice(raw, _offset_of(zone))
        zone = "UTC" if zone in _UTC_NAMES else zone
        return f'Did you mean "{zone}"? It is the IANA name of the Windows timezone "{name}".'
    suggestion = _suggest_timezone(raw, fuzzy=fuzzy)
    return f'Did you mean "{suggestion}"?' if suggestion else None


def _fixed_offset(raw: str) -> timedelta | None:
    """The offset from UTC that `raw` names when it is a fixed offset, typed or from tzdata."""
    name = _tzdata_names().get(raw) or _tzdata_names().get(raw.lower())
    if name is not None:
        return _offset_of(name) if _is_fixed_offset(name) else None
    typed = _TYPED_OFFSET.fullmatch(raw.strip())
    if typed is None:
        return None
    sign, hours, minutes = typed.groups()
    offset = timedelta(hours=int(hours), minutes=int(minutes or 0))
    if offset > timedelta(hours=14) or int(minutes or 0) >= 60:
        return None
    return offset if sign == "+" else -offset


def _offset_of(name: str) -> timedelta:
    return datetime(2000, 1, 1, tzinfo=zoneinfo.ZoneInfo(name)).utcoffset() or timedelta()


def _offset_advice(raw: str, offset: timedelta) -> str:
    if not offset:
        return 'Did you mean "UTC"?'
    minutes = int(offset.total_seconds()) // 60
    sign, minutes = ("+" if minutes > 0 else "-"), abs(minutes)
    fixed = f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    if raw.lower().startswith("etc/gmt"):
        # POSIX counts west as positive: "Etc/GMT+5" is five hours behind UTC.
        fixed += " (Etc/GMT names invert the sign)"
    return f"It is a fixed offset, {fixed}, that ignores daylight saving; {_CITY_ZONE}."


def _suggest_timezone(raw: str, *, fuzzy: bool) -> str | None:
    lowered = raw.lower()
    cities = _timezone_cities()
    city = _HEADER_SEPARATORS.sub("_", lowered)
    if city in cities:
        return cities[city]
    # Only a near spelling of a name or a city is a typo's likely fix: fuzzier matches, or any
    # with digits (offsets), would be guesses at another place ("Pacific Time" is not Niue).
    if not fuzzy or any(character.isdigit() for character in raw):
        return None
    if "/" in raw:
        names = _timezone_names()
        keys = [key for key in names if key.islower()]
        # Within a correctly typed area ("america/…") the match is sought among its names only.
        area = lowered.split("/", 1)[0] + "/"
        keys = [key for key in keys if key.startswith(area)] or keys
        close = difflib.get_close_matches(lowered, keys, n=1)
        return names[close[0]] if close else None
    close = difflib.get_close_matches(city, cities, n=1, cutoff=_CITY_CUTOFF)
    return cities[close[0]] if close else None
