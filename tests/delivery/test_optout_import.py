"""Importing a CSV of existing opt-outs: streamed, checked row by row, all or nothing."""

import codecs
import csv
import io
import zipfile
from datetime import UTC, datetime

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.models import ActivityEntry, Status
from delivery.dispatch import dispatch_tick
from delivery.models import Message, MessageStatus, Suppression
from recipients.models import RejectedUpload
from tests.conftest import client_for
from tests.factories import (
    CampaignFactory,
    MessageFactory,
    RecipientListFactory,
    SuppressionFactory,
)


def post_file(client, content: str | bytes, name: str = "optouts.csv"):
    data = content.encode() if isinstance(content, str) else content
    upload = SimpleUploadedFile(name, data, content_type="text/csv")
    return client.post("/opt-outs/import/", {"file": upload}, follow=True)


def numbers(count: int, first: int = 0) -> list[str]:
    """Distinct valid US numbers in E.164."""
    return [f"+1212{200 + n // 10_000:03d}{n % 10_000:04d}" for n in range(first, first + count)]


def error_log(client, page: str) -> list[list[str]]:
    """The rejected file's error log, downloaded through the link on the page."""
    rejected = RejectedUpload.objects.get()
    url = f"/rejected-uploads/{rejected.pk}/error-log.csv"
    assert url in page
    response = client.get(url)
    assert response["Content-Disposition"].startswith("attachment;")
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_it_stores_nothing_from_a_file_with_one_bad_row_among_20000_and_logs_that_row(
    tenants, admin_client
):
    rows = numbers(20_000)
    # Past the first chunk of ten thousand, which has reached the database by then.
    rows[12_344] = "212-555-01"
    response = post_file(admin_client, "Phone\r\n" + "\r\n".join(rows) + "\r\n", name="big.csv")
    page = response.content.decode()
    assert response.status_code == 200
    assert "“big.csv” was not imported" in page and "line 12346" in page
    assert not Suppression.objects.exists()
    log = error_log(admin_client, page)
    assert log[0] == ["reason", "line", "Phone"]
    assert len(log) == 2 and log[1][1:] == ["12346", "212-555-01"]
    assert "is not a valid phone number" in log[1][0]


@pytest.mark.parametrize(
    ("size", "message"),
    [(200 * 1024, "far too long to be real"), (20_000, "the limit is 10,000")],
    ids=["200 KiB, over the CSV parser's limit", "20 KB, over ours"],
)
def test_a_huge_quoted_field_gets_a_clear_message_not_a_server_error(
    tenants, admin_client, size, message
):
    content = 'phone,note\n+12125550101,ok\n+12125550102,"' + "x" * size + '"\n'
    response = post_file(admin_client, content)
    assert response.status_code == 200
    page = response.content.decode()
    assert "was not imported" in page and message in page
    assert not Suppression.objects.exists()


def test_it_lists_every_bad_row_in_the_error_log_with_formulas_neutralised(tenants, admin_client):
    content = (
        "name,phone_number\n"
        "Ana,+12125550101\n"
        'Bob,=HYPERLINK("http://evil")\n'
        "Cy,\n"
        "Di,+1 212 555 0102,extra\n"
        "Ed,not-an@\n"
    )
    page = post_file(admin_client, content, name="mixed.csv").content.decode()
    assert "The file has 4 errors" in page
    log = error_log(admin_client, page)
    assert log[0] == ["reason", "line", "name", "phone_number"]
    assert [row[1] for row in log[1:]] == ["3", "4", "5", "6"]
    assert log[1][2:] == ["Bob", '\'=HYPERLINK("http://evil")']
    assert "no phone number or email" in log[2][0]
    assert "has 3 values but the header has 2 columns" in log[3][0]
    assert "not a valid email address" in log[4][0]
    assert not Suppression.objects.exists()


def test_past_its_limit_the_error_log_only_counts_bad_rows(tenants, admin_client, monkeypatch):
    monkeypatch.setattr("recipients.services.OPT_OUT_ERRORS_LISTED", 3)
    page = post_file(admin_client, "phone\n" + "nope\n" * 5).content.decode()
    assert "The file has 5 errors" in page
    assert "The file has 5 rows with errors; the error log lists the first 3." in page
    assert [row[1] for row in error_log(admin_client, page)[1:]] == ["2", "3", "4"]


def test_it_stores_a_valid_file_in_one_go_and_counts_those_already_there(tenants, admin_client):
    SuppressionFactory(org=tenants.org, address="+12125550101", reason="stop_reply")
    export = "".join(f"Person {n},{phone},\r\n" for n, phone in enumerate(numbers(1_200)))
    content = (
        "\ufeffName,Mobile,E-mail\r\n"
        "Ana,+1 (212) 555-0101,ANA@Example.com\r\n"
        "Bob,(212) 555-0102,\r\n"
        "Ana again,,ana@example.com\r\n"
        "\r\n" + export
    )
    with CaptureQueriesContext(connection) as queries:
        page = post_file(admin_client, content, name="contacts.csv").content.decode()
    assert (
        "“contacts.csv” imported: 1,202 addresses added to the opt-out list, 2 already there"
        in (page)
    )
    assert Suppression.objects.filter(org=tenants.org).count() == 1_203
    # A few statements for the whole file, not a few per row.
    assert len(queries) < 40, len(queries)
    ana = Suppression.objects.get(address="ana@example.com")
    assert (ana.reason, ana.detail, ana.created_by) == ("csv_import", "contacts.csv", tenants.admin)
    assert Suppression.objects.get(address="+12125550101").reason == "stop_reply"
    entry = ActivityEntry.objects.get(verb="imported opt-outs")
    assert entry.subject == "contacts.csv" and "1202 added, 2 already on the list" in entry.detail


@pytest.mark.parametrize(
    "content",
    [
        "+12125550101\nbob@example.com\n",
        "Name,Phone Number\r\nAna,2125550101\r\nBob,bob@example.com\r\n",
        "email;name\nbob@example.com;Bob\n+12125550101;Ana\n",
        "recipient,name,status\n+12125550101,Ana,delivered\nbob@example.com,Bob,opened\n",
        "address\n\n+12125550101\n\nBOB@EXAMPLE.COM\n\n\n",
    ],
    ids=["bare values", "a titled column", "semicolons", "a messages export", "blank lines"],
)
def test_it_finds_the_addresses_with_or_without_a_header(tenants, admin_client, content):
    page = post_file(admin_client, content).content.decode()
    assert "2 addresses added" in page
    assert set(Suppression.objects.values_list("address", flat=True)) == {
        "+12125550101",
        "bob@example.com",
    }


def test_a_first_row_that_is_neither_a_header_nor_an_address_is_refused(tenants, admin_client):
    page = post_file(admin_client, "Opt-outs\n+12125550101\n").content.decode()
    assert "was not imported" in page and "Missing column" in page
    assert "neither a phone number or email address nor a header" in page
    assert not Suppression.objects.exists()


def _zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("optouts.csv", "phone\n+12125550101\n")
    return out.getvalue()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(
            ("phone\n" + "+12125550101\n" * (21 * 1024 * 1024 // 13)).encode(),
            "the limit is 20 MB",
            id="oversize",
        ),
        pytest.param(_zip(), "an Excel .xlsx workbook or a zip file", id="xlsx"),
        pytest.param(bytes(range(256)) * 64, "This file is not a CSV", id="binary"),
        pytest.param(
            "phone\n+12125550101\n+12125550102\n".encode("utf-16-le"),
            "saved as UTF-16 text",
            id="utf16-without-bom",
        ),
        pytest.param(b"phone\n+12125550101\n+1212\x00555\n", "This file is not a CSV", id="nul"),
        pytest.param(b"   \n\n", "The file is empty", id="blank"),
        pytest.param(b"phone\n\n", "a header row but no phone numbers", id="header-only"),
    ],
)
def test_a_file_that_cannot_be_read_gets_the_recipient_uploads_message(
    tenants, admin_client, content, message
):
    response = post_file(admin_client, content, name="hostile.csv")
    page = response.content.decode()
    assert response.status_code == 200
    assert "“hostile.csv” was not imported" in page and message in page
    assert not Suppression.objects.exists()


def test_it_reads_excel_unicode_text_and_windows_1252(tenants, admin_client):
    post_file(admin_client, codecs.BOM_UTF16_LE + "phone\n+12125550101\n".encode("utf-16-le"))
    post_file(admin_client, "name,email\nZoë,zoe@example.com\n".encode("cp1252"))
    assert set(Suppression.objects.values_list("address", flat=True)) == {
        "+12125550101",
        "zoe@example.com",
    }


@pytest.mark.parametrize("length", [255, 320])
def test_an_email_longer_than_the_address_column_is_refused(tenants, admin_client, length):
    address = "a" * (length - len("@example.com")) + "@example.com"
    fits = "b" * (254 - len("@example.com")) + "@example.com"
    page = post_file(admin_client, f"email\n{fits}\n{address}\n").content.decode()
    assert "was not imported" in page and "an email address is at most 254 characters" in page
    form = admin_client.post("/opt-outs/new/", {"address": address}).content.decode()
    assert "an email address is at most 254 characters" in form
    assert not Suppression.objects.exists()
    admin_client.post("/opt-outs/new/", {"address": fits})
    assert Suppression.objects.get().address == fits


def test_a_viewer_cannot_import_and_another_organization_is_untouched(tenants, admin_client):
    SuppressionFactory(org=tenants.other_org, address="+12125550101", reason="manual")
    elsewhere = MessageFactory(
        recipient_list__campaign=CampaignFactory(org=tenants.other_org),
        contact__address="+12125550102",
    )
    viewer = client_for(tenants.viewer)
    assert viewer.get("/opt-outs/import/").status_code == 403
    assert post_file(viewer, "+12125550101\n").status_code == 403
    assert not Suppression.objects.filter(org=tenants.org).exists()

    post_file(admin_client, "+12125550101\n+12125550102\n")
    assert Suppression.objects.filter(org=tenants.org).count() == 2
    [theirs] = Suppression.objects.filter(org=tenants.other_org)
    assert (theirs.address, theirs.reason) == ("+12125550101", "manual")
    elsewhere.refresh_from_db()
    assert elsewhere.status == MessageStatus.QUEUED

    page = post_file(admin_client, "phone\nnope\n").content.decode()
    rejected = RejectedUpload.objects.get()
    assert f"/rejected-uploads/{rejected.pk}/error-log.csv" in page
    other_admin = client_for(tenants.other_admin)
    assert other_admin.get(f"/rejected-uploads/{rejected.pk}/error-log.csv").status_code == 404
    # Its page is the import page; the recipient lists' rejection page does not show it.
    assert admin_client.get(f"/rejected-uploads/{rejected.pk}/").status_code == 404


def test_queued_messages_to_imported_addresses_are_opted_out_and_never_sent(tenants, admin_client):
    every_day = {str(d): ["00:00", "23:59"] for d in range(7)}
    campaign = CampaignFactory(org=tenants.org, schedule=every_day, status=Status.IN_PROGRESS)
    recipient_list = RecipientListFactory(
        campaign=campaign, start_at=datetime(2026, 3, 1, tzinfo=UTC)
    )

    def queued(address: str, **extra) -> Message:
        return MessageFactory(
            recipient_list=recipient_list,
            contact__address=address,
            timezone="UTC",
            eligible_at=recipient_list.start_at,
            **extra,
        )

    ana = queued("+12125550177")
    bob = queued("+12125550178", status=MessageStatus.SENT)
    cy = queued("+12125550179")
    page = post_file(admin_client, "name,phone_number\nAna,+12125550177\nBob,+12125550178\n")
    assert "1 queued messages will not be sent" in page.content.decode()
    for message in (ana, bob, cy):
        message.refresh_from_db()
    assert ana.status == MessageStatus.OPTED_OUT and ana.final_at is not None
    assert (bob.status, cy.status) == (MessageStatus.SENT, MessageStatus.QUEUED)

    released: list[int] = []
    dispatch_tick(datetime(2026, 3, 3, 12, tzinfo=UTC), send=released.extend)
    assert released == [cy.pk]


def test_it_imports_a_100000_row_file_through_the_view(tenants, admin_client, on_postgres):
    content = "phone_number\n" + "\n".join(numbers(100_000)) + "\n"
    page = post_file(admin_client, content, name="100k.csv").content.decode()
    assert "100,000 addresses added to the opt-out list, 0 already there" in page
    assert Suppression.objects.filter(org=tenants.org, reason="csv_import").count() == 100_000
