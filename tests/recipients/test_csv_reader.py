"""Tests for the streaming recipient CSV reader (pure: no database)."""

import codecs
import csv
import io
import random
import re
import tracemalloc
import zoneinfo
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import phonenumbers
import pytest
from django.core.exceptions import ValidationError
from tzlocal.windows_tz import win_tz

from delivery.models import Message, Suppression
from recipients.csv_reader import (
    CSV_TEMPLATE_ROWS,
    EMAIL_MAX_CHARS,
    FUZZY_TIMEZONES_PER_FILE,
    MAX_FIELD_CHARS,
    NAME_MAX_CHARS,
    ErrorKind,
    OptOut,
    OptOutReader,
    ReaderOptions,
    ReadSummary,
    Recipient,
    RecipientReader,
    RowError,
    normalise_address,
    read_recipients,
    write_error_log,
)
from recipients.models import Contact

SMS = ReaderOptions(
    channel="sms", default_timezone="America/New_York", default_region="US", max_recipients=3500
)
EMAIL = replace(SMS, channel="email")


def read(
    content: str | bytes, options: ReaderOptions = SMS
) -> tuple[list[Recipient], list[RowError], ReadSummary]:
    """Read a whole in-memory file, splitting recipients from errors."""
    data = content.encode() if isinstance(content, str) else content
    reader = RecipientReader(io.BytesIO(data), options)
    results = list(reader)
    recipients = [item for item in results if isinstance(item, Recipient)]
    errors = [item for item in results if isinstance(item, RowError)]
    return recipients, errors, reader.summary


def only_error(content: str | bytes, options: ReaderOptions = SMS) -> RowError:
    _, errors, _ = read(content, options)
    assert len(errors) == 1, errors
    return errors[0]


def sms_rows(count: int, first: int = 0) -> str:
    """Data rows with distinct valid US numbers."""
    return "".join(
        f"America/Chicago,+1212{200 + n // 10000:03d}{n % 10000:04d},Person {n}\n"
        for n in range(first, first + count)
    )


# --- Reading a good file -------------------------------------------------------------------------


def test_it_reads_a_simple_sms_file():
    recipients, errors, summary = read(
        "timezone,phone_number,name\n"
        "America/New_York,+12125550123,Ana García\n"
        "Europe/London,+447911123456,Oliver Smith\n"
    )

    assert errors == []
    assert recipients == [
        Recipient(
            line=2,
            address="+12125550123",
            timezone="America/New_York",
            name="Ana García",
            variables={"name": "Ana García", "first_name": "Ana"},
        ),
        Recipient(
            line=3,
            address="+447911123456",
            timezone="Europe/London",
            name="Oliver Smith",
            variables={"name": "Oliver Smith", "first_name": "Oliver"},
        ),
    ]
    assert summary == ReadSummary(rows=2)
    assert summary.ok


def test_it_keeps_names_and_values_exactly_as_given_apart_from_surrounding_spaces():
    (recipient,), _, _ = read(
        "timezone,phone_number,name,Favourite Colour\n"
        "America/New_York,+12125550123,  Mary-Jane  O'Neil ,  Deep  blue \n"
    )

    assert recipient.name == "Mary-Jane  O'Neil"
    assert recipient.variables == {
        "name": "Mary-Jane  O'Neil",
        "first_name": "Mary-Jane",
        "favourite_colour": "Deep  blue",
    }


def test_it_gives_empty_name_variables_when_there_is_no_name_column():
    (recipient,), _, _ = read("timezone,phone_number\nAmerica/New_York,+12125550123\n")

    assert recipient.name == ""
    assert recipient.variables == {"name": "", "first_name": ""}


def test_it_turns_other_columns_into_variables_keyed_by_normalised_name():
    (recipient,), _, _ = read(
        "timezone,phone_number,Plan-Tier,Next Visit Date,clinic_name,First Name\n"
        "America/New_York,+12125550123,Gold,3 May,Downtown,Annie\n"
    )

    assert recipient.variables == {
        "name": "",
        "first_name": "Annie",
        "plan_tier": "Gold",
        "next_visit_date": "3 May",
        "clinic_name": "Downtown",
    }


@pytest.mark.parametrize(
    "header",
    [
        "timezone,phone_number",
        "TimeZone,Phone Number",
        " TIMEZONE , PHONE_NUMBER ",
        "Time Zone,phone-number",
        "time_zone,Phone",
        "timezone,Mobile Number",
    ],
)
def test_it_matches_column_names_ignoring_case_spaces_dashes_and_underscores(header):
    recipients, errors, _ = read(f"{header}\nAmerica/New_York,+12125550123\n")

    assert errors == []
    assert [r.address for r in recipients] == ["+12125550123"]


@pytest.mark.parametrize("email_title", ["email", "E-mail", " e_mail ", "Email Address", "EMAIL"])
def test_it_accepts_the_usual_spellings_of_the_email_column(email_title):
    recipients, errors, _ = read(
        f"timezone,{email_title}\nAmerica/New_York,ana@example.com\n", EMAIL
    )

    assert errors == []
    assert [r.address for r in recipients] == ["ana@example.com"]


def test_it_ignores_untitled_columns_that_excel_leaves_behind():
    recipients, errors, _ = read(
        "timezone,phone_number,name,,\nAmerica/New_York,+12125550123,Ana,,\n"
    )

    assert errors == []
    assert recipients[0].variables == {"name": "Ana", "first_name": "Ana"}


# --- Header errors -------------------------------------------------------------------------------


def test_it_reports_a_duplicate_column_even_when_spelled_differently():
    error = only_error("timezone,phone_number,Phone Number\nAmerica/New_York,+12125550123,x\n")

    assert error.kind == ErrorKind.DUPLICATE_COLUMN
    assert error.message == (
        'The columns "phone_number" and "Phone Number" have the same name. '
        "Rename or remove one of them."
    )
    assert error.line == 1
    assert error.raw == ["timezone", "phone_number", "Phone Number"]


def test_it_reports_each_missing_required_column():
    recipients, errors, summary = read("Name,Mobile Phone\nAna,+12125550123\n")

    assert recipients == []
    assert [e.kind for e in errors] == [ErrorKind.MISSING_COLUMN, ErrorKind.MISSING_COLUMN]
    assert errors[0].message == (
        'The file has no "timezone" column. The first row must name the columns, for example: '
        "timezone,phone_number,name (found: Name, Mobile Phone)."
    )
    assert '"phone_number"' in errors[1].message
    assert summary.errors == {ErrorKind.MISSING_COLUMN: 2}


def test_it_requires_an_email_column_on_the_email_channel():
    error = only_error("timezone,phone_number\nAmerica/New_York,+12125550123\n", EMAIL)

    assert error.kind == ErrorKind.MISSING_COLUMN
    assert '"email"' in error.message
    assert "timezone,email,name" in error.message


# --- What spreadsheets produce -------------------------------------------------------------------


def test_it_reads_utf8_with_a_byte_order_mark():
    recipients, errors, _ = read(
        codecs.BOM_UTF8 + "timezone,phone_number,name\nAsia/Tokyo,+12125550123,Zoé\n".encode()
    )

    assert errors == []
    assert recipients[0].timezone == "Asia/Tokyo"
    assert recipients[0].name == "Zoé"


def test_it_reads_windows_line_endings():
    recipients, errors, _ = read(
        "timezone,phone_number,name\r\nAsia/Tokyo,+12125550123,Ana\r\n"
        "Asia/Tokyo,+12125550124,Bo\r\n"
    )

    assert errors == []
    assert [(r.line, r.name) for r in recipients] == [(2, "Ana"), (3, "Bo")]


def test_it_reads_quoted_values_with_commas_quotes_and_newlines():
    recipients, errors, _ = read(
        "timezone,phone_number,name,note\r\n"
        'America/New_York,"+1 212 555 0123","García, Ana","She said ""hi""\r\nthen left"\r\n'
        "America/New_York,+12125550124,Bo,plain\r\n"
    )

    assert errors == []
    assert recipients[0].name == "García, Ana"
    assert recipients[0].variables["note"] == 'She said "hi"\r\nthen left'
    # Line numbers are the physical line each row starts on, as a text editor shows them.
    assert [r.line for r in recipients] == [2, 4]


def test_it_skips_blank_lines_anywhere_including_rows_of_empty_cells():
    recipients, errors, summary = read(
        "\n"
        "timezone,phone_number,name\n"
        "\n"
        "America/New_York,+12125550123,Ana\n"
        ",,\n"
        "  ,  ,  \n"
        "America/New_York,+12125550124,Bo\n"
        "\n\n\r\n"
    )

    assert errors == []
    assert [r.line for r in recipients] == [4, 7]
    assert summary.rows == 2


@pytest.mark.parametrize("delimiter", [";", "\t", ","])
def test_it_detects_the_delimiter_from_the_header(delimiter):
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter)
    writer.writerows([["timezone", "phone_number", "name"], ["UTC", "+12125550123", "García, Ana"]])

    recipients, errors, _ = read(out.getvalue())

    assert errors == []
    assert recipients[0].name == "García, Ana"


def test_it_reads_excel_semicolon_exports_with_quoted_semicolons():
    recipients, errors, _ = read(
        'Timezone;Phone Number;Name\r\nEurope/Paris;"+33 6 12 34 56 78";"Dupont; Zoé"\r\n'
    )

    assert errors == []
    assert recipients[0].address == "+33612345678"
    assert recipients[0].name == "Dupont; Zoé"


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1"])
def test_it_reads_windows_1252_and_latin_1_files_from_excel(encoding):
    content = "timezone,phone_number,name\nEurope/Paris,+33612345678,Zoé Müller\n"

    recipients, errors, _ = read(content.encode(encoding))

    assert errors == []
    assert recipients[0].name == "Zoé Müller"


def test_it_falls_back_to_windows_1252_when_the_first_accent_is_deep_in_the_file():
    head = "timezone,phone_number,name\n" + sms_rows(40_000)
    tail = "America/New_York,+12125550100,Zoé €uro\n"

    recipients, errors, _ = read(
        (head + tail).encode("cp1252"), replace(SMS, max_recipients=50_000)
    )

    assert len(head.encode()) > 1024 * 1024
    assert errors == []
    assert recipients[-1].name == "Zoé €uro"


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_it_reads_excel_unicode_text_files(encoding):
    bom = codecs.BOM_UTF16_LE if encoding == "utf-16-le" else codecs.BOM_UTF16_BE
    content = "timezone\tphone_number\tname\r\nEurope/Paris\t+33612345678\tZoé Müller\r\n"

    recipients, errors, _ = read(bom + content.encode(encoding))

    assert errors == []
    assert recipients[0].name == "Zoé Müller"
    assert recipients[0].address == "+33612345678"


def test_it_rejects_utf16_without_a_byte_order_mark_and_says_how_to_save():
    content = "timezone,phone_number\r\nEurope/Paris,+33612345678\r\n".encode("utf-16-le")

    error = only_error(content)

    assert error.kind == ErrorKind.ENCODING
    assert 'File → Save As → "CSV UTF-8 (Comma delimited) (*.csv)"' in error.message


def test_it_rejects_text_that_is_neither_utf8_nor_windows_1252():
    # 0x81 is undefined in Windows-1252 and invalid alone in UTF-8.
    error = only_error(b"timezone,phone_number,name\nEurope/Paris,+33612345678,Zo\x81\n")

    assert error.kind == ErrorKind.ENCODING
    assert error.line is None
    assert "CSV UTF-8" in error.message


# --- Not a CSV, empty, too large -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "looks_like"),
    [
        (b"PK\x03\x04\x14\x00\x06\x00[Content_Types].xml", "an Excel .xlsx workbook"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00\x00", "an old Excel .xls workbook"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "a PDF document"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "an image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "an image"),
        (b"timezone,phone\x00\x01\x02\x03 and more binary", "binary data"),
    ],
)
def test_it_rejects_files_that_are_not_csv(content, looks_like):
    error = only_error(content)

    assert error.kind == ErrorKind.NOT_CSV
    assert error.message.startswith("This file is not a CSV (")
    assert looks_like in error.message
    assert "CSV UTF-8" in error.message
    assert (error.line, error.raw) == (None, [])


@pytest.mark.parametrize("content", [b"", b"\n\r\n  \n", codecs.BOM_UTF8, codecs.BOM_UTF16_LE])
def test_it_rejects_an_empty_file(content):
    error = only_error(content)

    assert error.kind == ErrorKind.EMPTY_FILE
    assert error.message == "The file is empty."


def test_it_rejects_a_file_with_only_a_header():
    error = only_error("timezone,phone_number,name\n\n,,\n")

    assert error.kind == ErrorKind.EMPTY_FILE
    assert error.message == "The file has a header row but no recipients below it."


def test_it_rejects_a_file_larger_than_the_limit_in_megabytes():
    content = ("timezone,phone_number\n" + "x" * (3 * 1024 * 1024)).encode()

    error = only_error(content, replace(SMS, max_bytes=2 * 1024 * 1024))

    assert error.kind == ErrorKind.FILE_TOO_LARGE
    assert error.message == (
        "This file is 3.0 MB; the limit is 2 MB. "
        "Split it into smaller files and add each as its own recipient list."
    )


# --- Row shape -----------------------------------------------------------------------------------


def test_it_reports_rows_with_too_many_or_too_few_values():
    recipients, errors, summary = read(
        "timezone,phone_number,name\n"
        "America/New_York,+12125550123,García, Ana\n"
        "America/New_York,+12125550124\n"
        "America/New_York,+12125550125,Bo\n"
    )

    assert [r.line for r in recipients] == [4]
    assert [(e.kind, e.line) for e in errors] == [
        (ErrorKind.WRONG_FIELD_COUNT, 2),
        (ErrorKind.WRONG_FIELD_COUNT, 3),
    ]
    assert errors[0].message == (
        "This row has 4 values but the header has 3 columns. Check for a stray comma, "
        "or put quotes around any value that contains a comma."
    )
    assert errors[1].message.startswith("This row has 2 values but the header has 3 columns.")
    assert errors[0].raw == ["America/New_York", "+12125550123", "García", " Ana"]
    assert summary.rows == 3


def test_it_reports_a_value_that_is_too_long_and_keeps_reading():
    long_note = "n" * (MAX_FIELD_CHARS + 1)
    recipients, errors, _ = read(
        "timezone,phone_number,note\n"
        f"America/New_York,+12125550123,{long_note}\n"
        "America/New_York,+12125550124,ok\n"
    )

    assert [r.line for r in recipients] == [3]
    assert [(e.kind, e.line) for e in errors] == [(ErrorKind.FIELD_TOO_LARGE, 2)]
    assert "10,001 characters long" in errors[0].message
    assert "the limit is 10,000" in errors[0].message


def test_it_stops_at_an_unclosed_quote_that_swallows_the_rest_of_the_file():
    content = 'timezone,phone_number,note\nAmerica/New_York,+12125550123,"oops\n' + sms_rows(5000)

    recipients, errors, _ = read(content)

    assert recipients == []
    assert [(e.kind, e.line) for e in errors] == [(ErrorKind.FIELD_TOO_LARGE, 2)]
    assert "quote mark" in errors[0].message


# --- Phone numbers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "e164"),
    [
        ("+12125550123", "+12125550123"),
        ("+1 (212) 555-0123", "+12125550123"),
        ("(212) 555-0123", "+12125550123"),
        ("212.555.0123", "+12125550123"),
        ("2125550123", "+12125550123"),
        ("1-212-555-0123", "+12125550123"),
        ("12125550123", "+12125550123"),
        ("011 44 7911 123456", "+447911123456"),
        ("+44 7911 123456", "+447911123456"),
        ("447911123456", "+447911123456"),
        ("+91 98765 43210", "+919876543210"),
        ("919876543210", "+919876543210"),
        ("+39 06 1234 5678", "+390612345678"),
        ("+1 212 555 0123 ext. 45", "+12125550123"),
    ],
)
def test_it_normalises_phone_numbers_to_e164(given, e164):
    (recipient,), errors, _ = read(f'timezone,phone_number\nAmerica/New_York,"{given}"\n')

    assert errors == []
    assert recipient.address == e164


def test_it_reads_national_numbers_with_the_default_region():
    options = replace(SMS, default_region="GB")

    recipients, errors, _ = read(
        "timezone,phone_number\nEurope/London,07911 123456\nEurope/London,+12125550123\n", options
    )

    assert errors == []
    assert [r.address for r in recipients] == ["+447911123456", "+12125550123"]


@pytest.mark.parametrize("given", ["12345", "call me", "+15551234567", "2120550123", "+999123"])
def test_it_reports_invalid_phone_numbers_naming_the_value(given):
    error = only_error(f"timezone,phone_number\nAmerica/New_York,{given}\n")

    assert error.kind == ErrorKind.INVALID_PHONE
    assert error.message == (
        f'"{given}" is not a valid phone number. Write it with its country code, for example '
        "+12125550123."
    )
    assert error.line == 2


def test_it_reports_a_missing_phone_number():
    error = only_error("timezone,phone_number,name\nAmerica/New_York,,Ana\n")

    assert error.kind == ErrorKind.INVALID_PHONE
    assert error.message == "The phone number is missing."


@pytest.mark.parametrize("given", ["1.55512E+10", "4.47911E+11", "4,47911E+11", "1E+10"])
def test_it_explains_numbers_that_excel_turned_into_scientific_notation(given):
    error = only_error(f'timezone,phone_number\nAmerica/New_York,"{given}"\n')

    assert error.kind == ErrorKind.EXCEL_SCIENTIFIC_PHONE
    assert error.message == (
        f'"{given}" is a phone number that Excel turned into scientific notation, rounding away '
        "its last digits. In Excel, format the phone number column as Text, type the numbers "
        "again, and save."
    )


def test_it_agrees_with_phonenumbers_on_every_region_example_number():
    rng = random.Random(20240501)
    checked = 0
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
        if example is None:
            continue
        e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
        for given in [e164, e164[:-1], e164 + "7", e164[:-3] + f"{rng.randrange(1000):03d}"]:
            content = f"timezone,phone_number\nAmerica/New_York,{given}\n"
            recipients, _, _ = read(content)
            number = phonenumbers.parse(given, "US")
            if phonenumbers.is_valid_number(number):
                expected = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
                assert [r.address for r in recipients] == [expected], given
            else:
                assert recipients == [], given
            checked += 1
    assert checked > 800


# --- Email addresses -----------------------------------------------------------------------------


def test_it_normalises_email_addresses_to_lowercase():
    recipients, errors, _ = read(
        "timezone,email\nAmerica/New_York,  Ana.Garcia@Example.COM \n"
        "America/New_York,Zoe@EXÄMPLE.fr\n",
        EMAIL,
    )

    assert errors == []
    assert [r.address for r in recipients] == ["ana.garcia@example.com", "zoe@exämple.fr"]


@pytest.mark.parametrize(
    "given",
    [
        "ana",
        "ana@",
        "@example.com",
        "ana @example.com",
        "ana@example",
        "a@b@c.com",
        "zoé@example.fr",
    ],
)
def test_it_reports_invalid_email_addresses_naming_the_value(given):
    error = only_error(f"timezone,email\nAmerica/New_York,{given}\n", EMAIL)

    assert error.kind == ErrorKind.INVALID_EMAIL
    assert error.message == (
        f'"{given}" is not a valid email address. Check it for typos and spaces, like '
        "name@example.com."
    )


def test_it_reports_a_missing_email_address():
    error = only_error("timezone,email\nAmerica/New_York,\n", EMAIL)

    assert error.kind == ErrorKind.INVALID_EMAIL
    assert error.message == "The email address is missing."


@pytest.mark.parametrize("length", [255, 320])
def test_it_refuses_an_email_longer_than_the_address_columns(length):
    # Django's validate_email allows 320 characters; the columns hold 254.
    given = "a" * (length - len("@example.com")) + "@example.com"

    error = only_error(f"timezone,email\nAmerica/New_York,{given}\n", EMAIL)

    assert error.kind == ErrorKind.INVALID_EMAIL
    assert error.message == (
        f'"{"a" * 40}…" is {length} characters long; an email address is at most 254 characters.'
    )


def test_it_measures_an_email_as_it_is_stored_lowercased():
    fits = "A" * 242 + "@example.com"
    # "İ" lower-cases to two characters: 254 as typed, 255 as stored.
    grows = "a" * 241 + "@İexample.com"

    recipients, errors, _ = read(f"timezone,email\nUTC,{fits}\nUTC,{grows}\n", EMAIL)

    assert [r.address for r in recipients] == [fits.lower()]
    assert len(grows) == 254 and [e.line for e in errors] == [3]
    assert "255 characters long" in errors[0].message


def test_every_value_it_yields_fits_the_column_it_is_stored_in():
    for model in (Contact, Message, Suppression):
        assert model._meta.get_field("address").max_length == EMAIL_MAX_CHARS
    for model in (Contact, Message):
        assert model._meta.get_field("name").max_length == NAME_MAX_CHARS
        assert model._meta.get_field("timezone").max_length >= max(
            map(len, zoneinfo.available_timezones())
        )
    recipients, errors, _ = read(f"timezone,phone_number,name\nUTC,+12125550123,{'N' * 300}\n")

    assert errors == []
    assert recipients[0].name == "N" * NAME_MAX_CHARS
    assert recipients[0].variables["name"] == recipients[0].name


# --- Timezones -----------------------------------------------------------------------------------

GENERIC_ADVICE = (
    'Use a name from the IANA list, such as "America/New_York" or "Europe/London", '
    "or leave the cell blank to use America/New_York."
)
CITY_ZONE = 'use the recipient\'s city zone instead (Area/City, such as "America/New_York").'


def timezone_error(given: str) -> str:
    error = only_error(f"timezone,phone_number\n{given},+12125550123\n")
    assert error.kind == ErrorKind.INVALID_TIMEZONE
    prefix = f'"{given}" is not a timezone name. '
    assert error.message.startswith(prefix)
    return error.message.removeprefix(prefix)


def suggested(advice: str) -> list[str]:
    """The zones an error's advice names, each of which the reader must accept."""
    zones = re.findall(r'"([A-Za-z_]+(?:/[A-Za-z_\-]+)*)"', advice)
    for zone in zones:
        (recipient,), _, _ = read(f"timezone,phone_number\n{zone},+12125550123\n")
        assert recipient.timezone == zone
    return zones


def offsets(zone: str) -> list[timedelta | None]:
    """A zone's UTC offsets on the first of each month of 2026 and 2027, to compare clocks."""
    tz = zoneinfo.ZoneInfo(zone)
    return [
        datetime(year, month, 1, 12, tzinfo=UTC).astimezone(tz).utcoffset()
        for year in (2026, 2027)
        for month in range(1, 13)
    ]


def test_it_uses_the_default_timezone_for_blank_cells():
    (recipient,), _, _ = read("timezone,phone_number\n  ,+12125550123\n")

    assert recipient.timezone == "America/New_York"


@pytest.mark.parametrize("default", ["EST", "Etc/GMT+5", "GMT"])
def test_it_uses_any_timezone_the_organization_has_for_blank_cells(default):
    # The organization's setting takes any tzdata name; a file may not use these itself.
    options = replace(SMS, default_timezone=default)
    (recipient,), _, _ = read("timezone,phone_number\n,+12125550123\n", options)

    assert recipient.timezone == default


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("america/new_york", "America/New_York"),
        ("EUROPE/LONDON", "Europe/London"),
        ("US/Eastern", "US/Eastern"),
        ("UTC", "UTC"),
        ("utc", "UTC"),
        ("Etc/UTC", "Etc/UTC"),
    ],
)
def test_it_accepts_iana_timezone_names_in_any_case(given, canonical):
    (recipient,), _, _ = read(f"timezone,phone_number\n{given},+12125550123\n")

    assert recipient.timezone == canonical


@pytest.mark.parametrize(
    ("given", "advice"),
    [
        ("America/New_Yrok", 'Did you mean "America/New_York"?'),
        ("europe/londn", 'Did you mean "Europe/London"?'),
        ("New York", 'Did you mean "America/New_York"?'),
        ("Pheonix", 'Did you mean "America/Phoenix"?'),
        # Not a near spelling of any place: Pacific/Niue is UTC-11, Pacific Time UTC-8.
        ("Pacific Time", GENERIC_ADVICE),
        ("Mars/Olympus_Mons", GENERIC_ADVICE),
    ],
)
def test_it_reports_invalid_timezones_with_a_suggestion(given, advice):
    assert timezone_error(given) == advice


def test_it_suggests_near_spellings_for_a_files_first_distinct_wrong_names_only():
    letters = "abcdefghijklmnop"
    typos = [f"America/New_Yor{a}{b}" for a in letters for b in letters]
    typos = typos[: FUZZY_TIMEZONES_PER_FILE + 1]
    rows = [f"{typo},+1212555{n:04d}\n" for n, typo in enumerate([*typos, typos[0]])]
    _, errors, _ = read("timezone,phone_number\n" + "".join(rows))
    advice = [error.message.split(". ", 1)[1] for error in errors]

    did_you_mean = 'Did you mean "America/New_York"?'
    assert advice[:FUZZY_TIMEZONES_PER_FILE] == [did_you_mean] * FUZZY_TIMEZONES_PER_FILE
    assert advice[FUZZY_TIMEZONES_PER_FILE] == GENERIC_ADVICE
    # A name already given a suggestion keeps it.
    assert advice[-1] == did_you_mean


@pytest.mark.parametrize(
    ("given", "advice"),
    [
        (
            "EST",
            'Abbreviations are unclear about daylight saving; use "America/New_York" instead: it '
            "observes daylight time (EST in winter, EDT in summer).",
        ),
        (
            "pst",
            'Abbreviations are unclear about daylight saving; use "America/Los_Angeles" instead: '
            "it observes daylight time (PST in winter, PDT in summer).",
        ),
        (
            "MST",
            'Abbreviations are unclear about daylight saving; use "America/Denver" instead: it '
            "observes daylight time (MST in winter, MDT in summer); for Arizona, which stays on "
            'MST, use "America/Phoenix".',
        ),
        (
            "HST",
            'Abbreviations are unclear about daylight saving; use "Pacific/Honolulu" instead: it '
            "stays on HST all year; for the Aleutian Islands, which change to HDT in summer, use "
            '"America/Adak".',
        ),
        (
            "GMT",
            'Abbreviations are unclear about daylight saving; use "Europe/London" instead: it '
            'observes summer time (GMT in winter, BST in summer); for UTC all year use "UTC".',
        ),
    ],
)
def test_it_names_a_city_zone_with_a_note_for_an_abbreviation(given, advice):
    assert timezone_error(given) == advice


@pytest.mark.parametrize(
    ("abbreviation", "zone", "winter"),
    [
        *[(a, "America/New_York", -5) for a in ("EST", "EDT", "ET", "EST5EDT")],
        *[(a, "America/Chicago", -6) for a in ("CST", "CDT", "CT", "CST6CDT")],
        *[(a, "America/Denver", -7) for a in ("MST", "MDT", "MT", "MST7MDT")],
        *[(a, "America/Los_Angeles", -8) for a in ("PST", "PDT", "PT", "PST8PDT")],
        *[(a, "America/Anchorage", -9) for a in ("AKST", "AKDT")],
        ("HST", "Pacific/Honolulu", -10),
        ("HDT", "America/Adak", -10),
        ("AST", "America/Puerto_Rico", -4),
        ("ADT", "America/Halifax", -4),
        ("ChST", "Pacific/Guam", 10),
    ],
)
def test_it_maps_us_abbreviations_to_a_city_zone_on_their_standard_time(abbreviation, zone, winter):
    first, *_ = suggested(timezone_error(abbreviation))

    assert first == zone
    assert offsets(zone)[0] == timedelta(hours=winter)


@pytest.mark.parametrize(
    ("given", "offset"),
    [
        ("GMT+1", "UTC+01:00"),
        ("gmt+1", "UTC+01:00"),
        ("UTC-5", "UTC-05:00"),
        ("UTC+05:30", "UTC+05:30"),
        ("UTC +5:45", "UTC+05:45"),
        ("UTC\N{MINUS SIGN}3", "UTC-03:00"),
        ("+01:00", "UTC+01:00"),
        ("(UTC-05:00)", "UTC-05:00"),
        ("UTC-11", "UTC-11:00"),  # also a Windows name
        ("Dateline Standard Time", "UTC-12:00"),  # Windows: Etc/GMT+12
    ],
)
def test_it_refuses_a_typed_fixed_offset_without_suggesting_another(given, offset):
    advice = timezone_error(given)

    assert advice == f"It is a fixed offset, {offset}, that ignores daylight saving; {CITY_ZONE}"
    assert "Did you mean" not in advice


@pytest.mark.parametrize(
    "name", sorted(n for n in zoneinfo.available_timezones() if re.fullmatch(r"Etc/GMT[+-]\d+", n))
)
def test_it_refuses_tzdata_fixed_offsets_stating_their_real_offset(name):
    advice = timezone_error(name)
    hours = -int(name.removeprefix("Etc/GMT"))  # POSIX: Etc/GMT+5 is five hours behind UTC

    if hours:
        sign = "+" if hours > 0 else "-"
        offset = f"UTC{sign}{abs(hours):02d}:00 (Etc/GMT names invert the sign)"
        assert (
            advice == f"It is a fixed offset, {offset}, that ignores daylight saving; {CITY_ZONE}"
        )
    else:
        assert advice == 'Did you mean "UTC"?'


@pytest.mark.parametrize(
    "given", ["UTC+0", "GMT-0", "GMT+0", "GMT0", "Etc/GMT", "Etc/GMT0", "Greenwich", "+00:00"]
)
def test_it_suggests_utc_for_a_zero_offset(given):
    assert timezone_error(given) == 'Did you mean "UTC"?'


def test_it_never_suggests_a_zone_with_another_offset_than_the_one_typed():
    wrong = []
    for hours, minutes in [(h, m) for h in range(15) for m in (0, 30, 45) if h < 14 or not m]:
        for sign, prefix in [(sign, prefix) for sign in "+-" for prefix in ("GMT", "UTC ", "")]:
            typed = f"{prefix}{sign}{hours}" + (f":{minutes:02d}" if minutes else "")
            advice = timezone_error(typed)
            if hours == minutes == 0:
                right = suggested(advice) == ["UTC"]
            else:
                right = "Did you mean" not in advice
                right &= f"UTC{sign}{hours:02d}:{minutes:02d}" in advice
            if not right:
                wrong.append((typed, advice))

    assert wrong == []


@pytest.mark.parametrize(
    ("windows", "zone"),
    [
        ("Eastern Standard Time", "America/New_York"),
        ("Pacific Standard Time", "America/Los_Angeles"),
        ("US Mountain Standard Time", "America/Phoenix"),
        ("GMT Standard Time", "Europe/London"),
        ("India Standard Time", "Asia/Kolkata"),
        ("eastern standard time", "America/New_York"),
    ],
)
def test_it_maps_windows_timezone_names_to_the_iana_zone(windows, zone):
    advice = timezone_error(windows)

    assert advice.startswith(f'Did you mean "{zone}"? It is the IANA name of the Windows timezone')


def test_it_suggests_for_every_windows_name_a_zone_keeping_its_clock():
    for windows, cldr in sorted(win_tz.items()):
        if windows == "UTC":
            continue  # the reader accepts it as it is
        advice = timezone_error(windows)
        if cldr.startswith("Etc/GMT"):
            assert "Did you mean" not in advice and "fixed offset" in advice, windows
        else:
            zone, *_ = suggested(advice)
            assert offsets(zone) == offsets(cldr), windows


# --- Duplicates, limits and reporting every bad row ----------------------------------------------


def test_it_normalises_repeats_of_one_number_to_one_address():
    recipients, errors, summary = read(
        "timezone,phone_number,name\n"
        "America/New_York,+12125550123,Ana\n"
        "America/New_York,(212) 555-0123,Ana again\n"
        "Europe/London,12125550123,Ana thrice\n"
    )

    # Keeping one of them is the importer's (tests/recipients/test_upload.py).
    assert errors == []
    assert {r.address for r in recipients} == {"+12125550123"}
    assert summary.rows == 3


def test_it_normalises_emails_differing_only_in_case_to_one_address():
    recipients, _, _ = read("timezone,email\nUTC,ana@example.com\nUTC,ANA@Example.com\n", EMAIL)

    assert [r.address for r in recipients] == ["ana@example.com", "ana@example.com"]


def test_it_reports_every_bad_row_and_counts_errors_by_kind():
    recipients, errors, summary = read(
        "timezone,phone_number,name\n"
        "America/New_York,+12125550123,Ana\n"
        "Nowhere/Land,+12125550124,Bo\n"
        "America/New_York,12345,Cy\n"
        "America/New_York,1.55512E+10,Di\n"
        "America/New_York,+12125550125\n"
        "Mars,nope,Ed\n"
        "America/New_York,+12125550126,Flo\n"
    )

    assert [r.line for r in recipients] == [2, 8]
    assert [(e.line, e.kind) for e in errors] == [
        (3, ErrorKind.INVALID_TIMEZONE),
        (4, ErrorKind.INVALID_PHONE),
        (5, ErrorKind.EXCEL_SCIENTIFIC_PHONE),
        (6, ErrorKind.WRONG_FIELD_COUNT),
        (7, ErrorKind.INVALID_PHONE),
        (7, ErrorKind.INVALID_TIMEZONE),
    ]
    assert summary.errors == {
        ErrorKind.INVALID_TIMEZONE: 2,
        ErrorKind.INVALID_PHONE: 2,
        ErrorKind.EXCEL_SCIENTIFIC_PHONE: 1,
        ErrorKind.WRONG_FIELD_COUNT: 1,
    }
    assert summary.error_count == 6
    assert not summary.ok
    assert summary.rows == 7


def test_it_streams_a_large_file_with_flat_memory():
    content = ("timezone,phone_number,name\n" + sms_rows(100_000)).encode()
    stream = io.BytesIO(content)
    tracemalloc.start()
    try:
        count = sum(1 for _ in read_recipients(stream, SMS))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # The rows checked (ten per allowed recipient), then the error for the unchecked rest.
    assert count == 35_001
    assert peak < 3 * 1024 * 1024 < len(content)


# --- The error log -------------------------------------------------------------------------------


def test_it_writes_an_error_log_with_reason_line_and_original_values():
    _, errors, _ = read(
        "timezone,phone_number,name\n"
        "America/New_York,+12125550123,Ana\n"
        'Nowhere/Land,+12125550124,"García, Bo"\n'
        "America/New_York,12345\n"
    )
    out = io.StringIO()

    write_error_log(errors, out)

    assert list(csv.reader(io.StringIO(out.getvalue()))) == [
        ["reason", "line", "original row"],
        [
            '"Nowhere/Land" is not a timezone name. Use a name from the IANA list, such as '
            '"America/New_York" or "Europe/London", or leave the cell blank to use '
            "America/New_York.",
            "3",
            "Nowhere/Land",
            "+12125550124",
            "García, Bo",
        ],
        [
            "This row has 2 values but the header has 3 columns. Check for a stray comma, "
            "or put quotes around any value that contains a comma.",
            "4",
            "America/New_York",
            "12345",
        ],
    ]


def test_it_titles_the_error_log_with_the_original_header_and_leaves_file_errors_lineless():
    content = b"Time Zone,Phone,Name\n" + sms_rows(35_001).encode()
    reader = RecipientReader(io.BytesIO(content), SMS)
    errors = [item for item in reader if isinstance(item, RowError)]
    out = io.StringIO()

    write_error_log(errors, out, reader.header)

    assert out.getvalue().splitlines() == [
        "reason,line,Time Zone,Phone,Name",
        '"This file has 35,001 rows; the limit for one list is 3,500 recipients, so only the first '
        '35,000 rows were checked — split it and add a new recipient list for each part.",',
    ]


def test_it_defuses_spreadsheet_formulas_in_the_error_log_but_not_phone_numbers():
    error = RowError(
        ErrorKind.INVALID_PHONE,
        "bad",
        2,
        ["=HYPERLINK(1)", "+cmd|' /C calc'!A0", "@SUM(A1)", "+1 212-555-0123", "-5", "Ana"],
    )
    out = io.StringIO()

    write_error_log([error], out)

    assert list(csv.reader(io.StringIO(out.getvalue())))[1] == [
        "bad",
        "2",
        "'=HYPERLINK(1)",
        "'+cmd|' /C calc'!A0",
        "'@SUM(A1)",
        "+1 212-555-0123",
        "-5",
        "Ana",
    ]


# --- Opt-out files -------------------------------------------------------------------------------


def read_opt_outs(content: str) -> tuple[list[OptOut], list[RowError]]:
    reader = OptOutReader(io.BytesIO(content.encode()), default_region="US")
    items = list(reader)
    return [i for i in items if isinstance(i, OptOut)], [i for i in items if type(i) is RowError]


def test_it_reads_opt_outs_from_every_address_column_the_header_names():
    opt_outs, errors = read_opt_outs(
        "Name,Phone,Email Address,Note\n"
        "Ana,(212) 555-0101,Ana@Example.com,x\n"
        'Bob,,bob@example.com,"a, b"\n'
    )

    assert errors == []
    assert opt_outs == [
        OptOut(2, "+12125550101"),
        OptOut(2, "ana@example.com"),
        OptOut(3, "bob@example.com"),
    ]


def test_it_reads_bare_opt_outs_from_column_a_from_the_first_line():
    opt_outs, errors = read_opt_outs("2125550101,STOP 2024-01-02\n\nbob@example.com\n")

    assert errors == []
    assert opt_outs == [OptOut(1, "+12125550101"), OptOut(3, "bob@example.com")]


def test_it_reports_each_bad_opt_out_row_with_its_line():
    opt_outs, errors = read_opt_outs(
        "phone_number\n+12125550101\n12\n\n" + "a" * 250 + "@example.com\n" + '"' + "x" * 200_000
    )

    assert [(e.kind, e.line) for e in errors] == [
        (ErrorKind.INVALID_PHONE, 3),
        (ErrorKind.INVALID_EMAIL, 5),
        (ErrorKind.FIELD_TOO_LARGE, 6),
    ]
    assert opt_outs == [OptOut(2, "+12125550101")]


def test_normalise_address_is_the_readers_check_for_one_address():
    assert normalise_address(" (212) 555-0199 ", "US") == "+12125550199"
    assert normalise_address("Bob@Example.COM", "US") == "bob@example.com"
    with pytest.raises(ValidationError) as long_email:
        normalise_address("a" * 243 + "@example.com", "US")
    assert long_email.value.code == ErrorKind.INVALID_EMAIL
    assert "an email address is at most 254 characters" in long_email.value.messages[0]
    with pytest.raises(ValidationError) as not_a_number:
        normalise_address("nope", "US")
    assert not_a_number.value.code == ErrorKind.INVALID_PHONE


# --- Public surface ------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["sms", "email"])
def test_it_reads_its_own_template_without_errors(channel):
    out = io.StringIO()
    csv.writer(out).writerows(CSV_TEMPLATE_ROWS[channel])

    recipients, errors, _ = read(out.getvalue(), replace(SMS, channel=channel))

    assert errors == []
    assert [r.address for r in recipients] == [row[1] for row in CSV_TEMPLATE_ROWS[channel][1:]]
    assert CSV_TEMPLATE_ROWS[channel][0][0] == "timezone"


def test_it_labels_every_error_kind_for_people():
    assert {kind.value for kind in ErrorKind} >= {
        "too_many_recipients",
        "missing_column",
        "duplicate_column",
        "wrong_field_count",
        "invalid_phone",
        "excel_scientific_phone",
        "invalid_email",
        "invalid_timezone",
        "empty_file",
        "not_csv",
        "file_too_large",
        "field_too_large",
        "encoding",
    }
    assert ErrorKind.INVALID_TIMEZONE.label == "Invalid timezone"


def test_it_leaves_the_uploaded_stream_open():
    stream = io.BytesIO(b"timezone,phone_number\nUTC,+12125550123\n")

    assert len(list(read_recipients(stream, SMS))) == 1
    assert not stream.closed


def test_it_refuses_bad_options_and_unseekable_streams():
    class Unseekable(io.RawIOBase):
        def seekable(self) -> bool:
            return False

    with pytest.raises(ValueError, match="seekable"):
        RecipientReader(Unseekable(), SMS)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone"):
        RecipientReader(io.BytesIO(), replace(SMS, default_timezone="Nowhere"))
    with pytest.raises(ValueError, match="region"):
        RecipientReader(io.BytesIO(), replace(SMS, default_region="XX"))


def test_it_counts_but_does_not_check_rows_far_past_the_limit():
    content = "timezone,phone_number,name\n" + "America/New_York,12,Bad\n" * 200 + sms_rows(30)
    options = ReaderOptions("sms", "America/New_York", "US", max_recipients=10)

    items = list(read_recipients(io.BytesIO(content.encode()), options))

    # The first 100 rows (10 per allowed recipient) are checked, the other 130 only counted.
    assert [e.kind for e in items[:-1]] == [ErrorKind.INVALID_PHONE] * 100
    assert items[-1].message == (
        "This file has 230 rows; the limit for one list is 10 recipients, so only the first "
        "100 rows were checked — split it and add a new recipient list for each part."
    )
