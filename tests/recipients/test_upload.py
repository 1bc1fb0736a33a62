import csv
import io
import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.utils import timezone

from campaigns.models import ActivityEntry, Channel, Status
from delivery.models import Message, MessageStatus
from recipients.models import Contact, ListStatus, RecipientList, RejectedUpload
from recipients.services import ListDatesRefused, recipient_list_import
from tests.conftest import client_for
from tests.factories import CampaignFactory

GOOD_SMS = (
    "\ufeffTimeZone,Phone Number,Name,Clinic\r\n"
    "America/New_York,+1 (212) 555-0123,Ana García,Midtown\r\n"
    ',2125550124,"Smith, Oliver",Uptown\r\n'
    "Asia/Kathmandu,+12125550123,Ana again,Midtown\r\n"
    "\r\n"
)


def upload(client, campaign, content, name="patients.csv", **extra):
    data = content.encode() if isinstance(content, str) else content
    form = {"file": SimpleUploadedFile(name, data, content_type="text/csv"), **extra}
    form.setdefault(
        "start_at", timezone.localtime(timezone.now(), campaign.org.tz).strftime("%Y-%m-%dT%H:%M")
    )
    return client.post(f"/campaigns/{campaign.pk}/lists/new/", form, follow=True)


@pytest.fixture
def sms_campaign(tenants):
    tenants.org.default_region = "US"
    tenants.org.timezone = "America/Chicago"
    tenants.org.save()
    return CampaignFactory(org=tenants.org, channel=Channel.SMS, name="Flu shots")


@pytest.fixture
def email_campaign(tenants):
    return CampaignFactory(org=tenants.org, channel=Channel.EMAIL, name="Newsletter")


def test_it_imports_a_spreadsheet_style_file_as_a_scheduled_list(sms_campaign, admin_client):
    page = upload(admin_client, sms_campaign, GOOD_SMS).content.decode()
    recipient_list = RecipientList.objects.get()
    assert (recipient_list.status, recipient_list.recipient_count) == (ListStatus.SCHEDULED, 2)
    assert recipient_list.duplicate_count == 1
    assert "2 recipients" in page and "1 duplicate rows were kept once" in page
    messages = {m.address: m for m in Message.objects.all()}
    assert set(messages) == {"+12125550123", "+12125550124"}
    ana = messages["+12125550123"]
    assert (ana.name, ana.timezone, ana.status) == ("Ana García", "America/New_York", "queued")
    assert ana.variables["first_name"] == "Ana" and ana.variables["clinic"] == "Midtown"
    assert ana.eligible_at == recipient_list.start_at
    # A blank timezone cell means the organization's timezone.
    assert messages["+12125550124"].timezone == "America/Chicago"
    assert Contact.objects.filter(org=sms_campaign.org).count() == 2
    entry = ActivityEntry.objects.get(verb="added recipient list")
    assert "2 recipients" in entry.detail


def test_it_shows_the_new_list_in_the_scheduled_tab(sms_campaign, admin_client):
    upload(admin_client, sms_campaign, GOOD_SMS, name="march.csv")
    page = admin_client.get(f"/campaigns/{sms_campaign.pk}/").content.decode()
    assert "Scheduled (1)" in page and "march.csv" in page and "0/2" in page
    stopped_tab = admin_client.get(f"/campaigns/{sms_campaign.pk}/?lists=stopped").content
    assert b'data-testid="recipient-lists"' not in stopped_tab
    assert b"No stopped lists" in stopped_tab


def test_it_links_a_repeat_recipient_to_the_same_contact_across_lists(sms_campaign, admin_client):
    upload(admin_client, sms_campaign, GOOD_SMS)
    upload(admin_client, sms_campaign, GOOD_SMS)
    assert Contact.objects.count() == 2
    assert Message.objects.count() == 4
    assert Message.objects.values("contact").distinct().count() == 2


def test_it_imports_emails_normalised(email_campaign, admin_client):
    content = "timezone,email,name\nEurope/London,  Oliver.Smith@Example.COM ,Oliver\n"
    upload(admin_client, email_campaign, content)
    assert Message.objects.get().address == "oliver.smith@example.com"


@pytest.mark.parametrize(
    ("content", "label"),
    [
        ("phone_number,name\n+12125550123,Ana\n", "Missing column"),
        ("timezone,phone_number\nAmerica/New_York,+12125550123,extra\n", "Wrong number of values"),
        ("timezone,phone_number\nAmerica/New_York,12\n", "Invalid phone number"),
        ("timezone,phone_number\nAmerica/New_York,1.55512E+10\n", "scientific notation"),
        ("timezone,phone_number\nAmerica/New_Yrok,+12125550123\n", "Invalid timezone"),
        ("timezone,phone_number\n", "Empty file"),
        (b"PK\x03\x04\x00\x00binary", "Not a CSV file"),
    ],
)
def test_it_rejects_a_bad_file_whole_with_a_summary(sms_campaign, admin_client, content, label):
    page = upload(admin_client, sms_campaign, content, name="bad.csv").content.decode()
    assert "“bad.csv” was not imported" in page
    assert label in page
    assert "Download error log" in page
    assert not RecipientList.objects.exists() and not Message.objects.exists()
    assert not Contact.objects.exists()


def test_it_refuses_a_zero_byte_file(sms_campaign, admin_client):
    page = upload(admin_client, sms_campaign, b"").content.decode()
    assert "The submitted file is empty." in page
    assert not RecipientList.objects.exists() and not RejectedUpload.objects.exists()


def test_it_rejects_an_invalid_email(email_campaign, admin_client):
    page = upload(admin_client, email_campaign, "timezone,email\n,not-an-email\n").content.decode()
    assert "Invalid email address" in page
    assert not Message.objects.exists()


@pytest.mark.parametrize("length", [255, 320])
def test_an_email_longer_than_the_address_column_is_a_row_error(
    email_campaign, admin_client, length
):
    # Django's validate_email allows 320 characters: PostgreSQL refused the row mid-import
    # (a server error) and SQLite stored it.
    address = "a" * (length - len("@example.com")) + "@example.com"
    content = f"timezone,email\n,ana@example.com\n,{address}\n"
    page = upload(admin_client, email_campaign, content, name="long.csv").content.decode()
    assert "“long.csv” was not imported" in page and "Invalid email address" in page
    assert not Message.objects.exists() and not Contact.objects.exists()
    rejected = RejectedUpload.objects.get()
    response = admin_client.get(f"/rejected-uploads/{rejected.pk}/error-log.csv")
    [_, row] = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert row[1] == "3" and "an email address is at most 254 characters" in row[0]


def test_it_rejects_a_file_over_the_size_cap(sms_campaign, admin_client, settings):
    big = (
        "timezone,phone_number,note\n"
        + ("America/New_York,+12125550123," + "x" * 9000 + "\n") * 2400
    )
    page = upload(admin_client, sms_campaign, big).content.decode()
    assert "File too large" in page
    assert not Message.objects.exists()


def test_it_lists_every_bad_row_in_the_error_log(sms_campaign, admin_client):
    content = (
        "timezone,phone_number,name\n"
        "America/New_York,+12125550123,Good\n"
        'Mars/Olympus,+12125550124,=HYPERLINK("x")\n'
        "America/New_York,555,Short\n"
    )
    upload(admin_client, sms_campaign, content, name="mixed.csv")
    rejected = RejectedUpload.objects.get()
    assert rejected.error_count == 2
    response = admin_client.get(f"/rejected-uploads/{rejected.pk}/error-log.csv")
    assert response["Content-Disposition"].startswith('attachment; filename="mixed-errors.csv"')
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["reason", "line", "timezone", "phone_number", "name"]
    assert [row[1] for row in rows[1:]] == ["3", "4"]
    assert "Mars/Olympus" in rows[1][0] and rows[1][2:] == [
        "Mars/Olympus",
        "+12125550124",
        '\'=HYPERLINK("x")',
    ]
    assert "phone" in rows[2][0].lower()
    assert not Message.objects.exists() and not Contact.objects.exists()


def test_it_accepts_the_limit_and_rejects_one_more(sms_campaign, admin_client):
    def rows(n):
        return "timezone,phone_number\n" + "".join(
            f"America/New_York,+1212555{i:04d}\n" for i in range(n)
        )

    sms_campaign.org.max_recipients_per_list = 3500
    sms_campaign.org.save()
    page = upload(admin_client, sms_campaign, rows(3501)).content.decode()
    assert "Too many recipients" in page
    assert not Message.objects.exists()
    upload(admin_client, sms_campaign, rows(3500))
    assert RecipientList.objects.get().recipient_count == 3500
    assert Message.objects.count() == 3500


def test_it_refuses_an_end_before_the_start(sms_campaign, admin_client):
    now = timezone.localtime(timezone.now(), sms_campaign.org.tz)
    page = upload(
        admin_client,
        sms_campaign,
        GOOD_SMS,
        start_at=(now + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M"),
        has_end="on",
        end_at=(now + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
    ).content.decode()
    assert "The end must be after the start." in page
    assert not RecipientList.objects.exists()


def test_it_reads_start_and_end_in_the_organizations_timezone(sms_campaign, admin_client):
    upload(
        admin_client,
        sms_campaign,
        GOOD_SMS,
        start_at="2030-01-15T09:00",
        has_end="on",
        end_at="2030-01-20T17:30",
    )
    recipient_list = RecipientList.objects.get()
    # America/Chicago is UTC-6 in January.
    assert recipient_list.start_at.isoformat() == "2030-01-15T15:00:00+00:00"
    assert recipient_list.end_at.isoformat() == "2030-01-20T23:30:00+00:00"


@pytest.mark.parametrize("status", [Status.COMPLETE, Status.STOPPED])
def test_it_refuses_lists_once_the_campaign_is_over(tenants, admin_client, status):
    campaign = CampaignFactory(org=tenants.org, status=status)
    page = upload(admin_client, campaign, GOOD_SMS).content.decode()
    assert "cannot be added" in page
    assert not RecipientList.objects.exists()


def test_it_stops_a_list_after_confirmation(sms_campaign, admin_client):
    upload(admin_client, sms_campaign, GOOD_SMS)
    recipient_list = RecipientList.objects.get()
    Message.objects.filter(address="+12125550124").update(status=MessageStatus.SENT)
    confirm = admin_client.get(f"/lists/{recipient_list.pk}/stop/").content.decode()
    assert "Stop “patients.csv”?" in confirm
    assert RecipientList.objects.get().status == ListStatus.SCHEDULED
    page = admin_client.post(f"/lists/{recipient_list.pk}/stop/", follow=True).content.decode()
    assert "1 unsent messages cancelled" in page
    recipient_list.refresh_from_db()
    assert recipient_list.status == ListStatus.STOPPED
    statuses = dict(Message.objects.values_list("address", "status"))
    assert statuses == {"+12125550123": "cancelled", "+12125550124": "sent"}
    assert ActivityEntry.objects.filter(verb="stopped recipient list").exists()
    again = admin_client.post(f"/lists/{recipient_list.pk}/stop/", follow=True).content.decode()
    assert "cannot be stopped" in again


def test_a_viewer_sees_lists_but_cannot_upload_or_stop(tenants, sms_campaign, admin_client):
    upload(admin_client, sms_campaign, GOOD_SMS)
    recipient_list = RecipientList.objects.get()
    viewer = client_for(tenants.viewer)
    page = viewer.get(f"/campaigns/{sms_campaign.pk}/").content.decode()
    assert "patients.csv" in page and "Add recipient list" not in page
    assert "Stop list" not in viewer.get(f"/lists/{recipient_list.pk}/").content.decode()
    assert upload(viewer, sms_campaign, GOOD_SMS).status_code == 403
    assert viewer.post(f"/lists/{recipient_list.pk}/stop/").status_code == 403
    assert RecipientList.objects.get().status == ListStatus.SCHEDULED


def test_another_organization_cannot_upload_to_or_stop_this_ones_lists(
    tenants, sms_campaign, admin_client
):
    upload(admin_client, sms_campaign, GOOD_SMS)
    recipient_list = RecipientList.objects.get()
    other = client_for(tenants.other_admin)
    assert upload(other, sms_campaign, GOOD_SMS).status_code == 404
    assert other.post(f"/lists/{recipient_list.pk}/stop/").status_code == 404
    assert RecipientList.objects.count() == 1


def test_it_offers_a_csv_template_per_channel(sms_campaign, email_campaign, admin_client):
    sms = admin_client.get(f"/campaigns/{sms_campaign.pk}/lists/template.csv")
    assert sms["Content-Type"].startswith("text/csv")
    assert sms.content.decode().splitlines()[0] == "timezone,phone_number,name"
    email = admin_client.get(f"/campaigns/{email_campaign.pk}/lists/template.csv").content.decode()
    assert email.splitlines()[0] == "timezone,email,name"
    # The template itself imports cleanly.
    upload(admin_client, sms_campaign, sms.content)
    assert RecipientList.objects.get().recipient_count == 3


def test_it_shows_names_escaped(sms_campaign, admin_client):
    content = "timezone,phone_number,name\n,+12125550123,<script>alert(1)</script>\n"
    upload(admin_client, sms_campaign, content, name="<i>x.csv")
    file_name = RecipientList.objects.get().file_name
    assert "<i>" in file_name
    page = admin_client.get(f"/campaigns/{sms_campaign.pk}/").content.decode()
    assert file_name not in page and "&lt;i&gt;x.csv" in page
    assert Message.objects.get().name == "<script>alert(1)</script>"


def test_the_command_imports_and_exits_zero(sms_campaign, tmp_path, capsys):
    path = tmp_path / "good.csv"
    path.write_text(GOOD_SMS, encoding="utf-8")
    call_command("import_recipients", sms_campaign.pk, str(path), "--start", "2031-03-01T09:00")
    assert "Accepted" in capsys.readouterr().out
    recipient_list = RecipientList.objects.get()
    assert recipient_list.recipient_count == 2
    assert recipient_list.start_at.isoformat() == "2031-03-01T15:00:00+00:00"


def test_the_command_keeps_a_past_start_when_asked(sms_campaign, tmp_path):
    # To replay a past day with `dispatch --once --now`; the dates are Chicago midnights.
    path = tmp_path / "march.csv"
    path.write_text(GOOD_SMS, encoding="utf-8")
    call_command(
        "import_recipients",
        sms_campaign.pk,
        str(path),
        "--start",
        "2026-03-07",
        "--end",
        "2026-03-09",
        "--allow-past",
        stdout=io.StringIO(),
    )
    recipient_list = RecipientList.objects.get()
    # Chicago moves to daylight time on 8 March: UTC-6, then UTC-5.
    assert recipient_list.start_at.isoformat() == "2026-03-07T06:00:00+00:00"
    assert recipient_list.end_at.isoformat() == "2026-03-09T05:00:00+00:00"
    assert {m.eligible_at for m in Message.objects.all()} == {recipient_list.start_at}


def test_the_command_refuses_an_end_before_a_start_moved_to_now(sms_campaign, tmp_path):
    path = tmp_path / "march.csv"
    path.write_text(GOOD_SMS, encoding="utf-8")
    with pytest.raises(CommandError) as refused:
        call_command(
            "import_recipients",
            sms_campaign.pk,
            str(path),
            "--start",
            "2026-03-07",
            "--end",
            "2026-03-09",
        )
    message = str(refused.value)
    assert "The end (2026-03-09 00:00) must be after the start (a start in the past means now" in (
        message
    )
    assert "--allow-past" in message
    assert not RecipientList.objects.exists() and not Message.objects.exists()


def test_the_import_never_stores_an_end_before_the_start(sms_campaign):
    from recipients.services import ListDatesRefused, recipient_list_import

    now = timezone.now()
    with pytest.raises(ListDatesRefused, match="a start in the past means now"):
        recipient_list_import(
            campaign=sms_campaign,
            stream=io.BytesIO(GOOD_SMS.encode()),
            file_name="late.csv",
            start_at=now - timedelta(days=2),
            end_at=now - timedelta(days=1),
            user=None,
        )
    assert not RecipientList.objects.exists()


def test_it_refuses_an_end_before_a_start_in_the_past_moved_to_now(sms_campaign, admin_client):
    now = timezone.localtime(timezone.now(), sms_campaign.org.tz)
    page = upload(
        admin_client,
        sms_campaign,
        GOOD_SMS,
        start_at=(now - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M"),
        has_end="on",
        end_at=(now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
    )
    assert page.status_code == 200
    assert "The end is already in the past." in page.content.decode()
    assert not RecipientList.objects.exists()


def test_the_command_writes_the_error_log_and_exits_one(sms_campaign, tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("timezone,phone_number\nNowhere,+12125550123\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_:
        call_command("import_recipients", sms_campaign.pk, str(path))
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "Invalid timezone: 1" in err
    log = (tmp_path / "bad-errors.csv").read_text()
    assert "Nowhere" in log
    assert not RecipientList.objects.exists()


def test_the_command_refuses_a_too_long_email_with_exit_one_and_the_error_log(
    email_campaign, tmp_path, capsys
):
    path = tmp_path / "long.csv"
    path.write_text(f"timezone,email\n,{'a' * 243}@example.com\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_:
        call_command("import_recipients", email_campaign.pk, str(path))
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "Invalid email address: 1" in err and "Traceback" not in err
    log = (tmp_path / "long-errors.csv").read_text()
    assert "an email address is at most 254 characters" in log
    assert not RecipientList.objects.exists() and not Contact.objects.exists()


# --- Repeats and the limit, kept by the database ----------------------------------------------


def import_text(campaign, content: str):
    from recipients.services import recipient_list_import

    return recipient_list_import(
        campaign=campaign,
        stream=io.BytesIO(content.encode()),
        file_name="repeats.csv",
        start_at=timezone.now(),
        end_at=None,
        user=None,
    )


def test_it_keeps_the_first_line_of_a_repeated_recipient_even_chunks_apart(
    sms_campaign, monkeypatch
):
    # Chunks of two rows: the repeats land in later chunks than their first line.
    monkeypatch.setattr("recipients.services.CHUNK_ROWS", 2)
    result = import_text(
        sms_campaign,
        "timezone,phone_number,name\n"
        "America/New_York,+12125550123,Ana\n"
        "America/New_York,+12125550124,Bo\n"
        "America/New_York,(212) 555-0123,Ana again\n"
        "Europe/London,12125550123,Ana thrice\n"
        "America/New_York,+12125550125,Cy\n"
        "America/New_York,+12125550124,Bo again\n",
    )

    assert result.summary == {"recipients": 3, "duplicates": 3, "suppressed": 0}
    kept = Message.objects.order_by("line").values_list("line", "name")
    assert list(kept) == [(2, "Ana"), (3, "Bo"), (6, "Cy")]
    # Cy shares a chunk with a repeat, so that chunk took the row-by-row way in: same result.
    assert Message.objects.get(line=6).variables == {"name": "Cy", "first_name": "Cy"}
    assert Contact.objects.count() == 3


def test_repeats_do_not_count_towards_the_limit(sms_campaign, monkeypatch):
    monkeypatch.setattr("recipients.services.CHUNK_ROWS", 1000)
    sms_campaign.org.max_recipients_per_list = 3500
    rows = [f"America/New_York,+1212555{i:04d}\n" for i in range(3500)]
    result = import_text(sms_campaign, "timezone,phone_number\n" + "".join(rows + rows[:10]))

    assert result.accepted
    assert result.recipient_list.recipient_count == 3500
    assert result.recipient_list.duplicate_count == 10


def test_one_distinct_recipient_over_the_limit_rejects_the_file_and_says_how_many(sms_campaign):
    sms_campaign.org.max_recipients_per_list = 3500
    rows = "".join(f"America/New_York,+1212555{i:04d}\n" for i in range(3501))
    result = import_text(sms_campaign, "timezone,phone_number\n" + rows)

    assert not result.accepted
    assert result.rejected.file_errors == [
        "This file has 3,501 recipients; the limit for one list is 3,500 — "
        "split it and add a new recipient list for the rest."
    ]
    assert not Message.objects.exists() and not Contact.objects.exists()


def test_a_file_over_the_limit_with_bad_rows_reports_both(sms_campaign):
    sms_campaign.org.max_recipients_per_list = 3
    result = import_text(
        sms_campaign,
        "timezone,phone_number\n"
        "America/New_York,12345\n"
        + "".join(f"America/New_York,+1212555{i:04d}\n" for i in range(4)),
    )

    assert result.rejected.summary == {"Invalid phone number": 1, "Too many recipients": 1}


def test_a_failure_while_reading_reaches_the_importer_and_stores_nothing(sms_campaign, monkeypatch):
    from recipients import services

    def broken(rows):
        yield from []
        raise RuntimeError("disk gone")

    monkeypatch.setattr(services, "_chunks", broken)
    with pytest.raises(RuntimeError, match="disk gone"):
        import_text(sms_campaign, "timezone,phone_number\nAmerica/New_York,+12125550123\n")
    assert not RecipientList.objects.exists() and not Message.objects.exists()


def test_a_failure_while_a_chunk_is_being_stored_stores_nothing(sms_campaign, monkeypatch):
    # The next chunk is read while the database stores the current one: a failure there must
    # still undo the chunks already stored.
    from recipients import services

    real_chunks = services._chunks

    def failing_after_the_first(rows):
        chunks = real_chunks(rows)
        yield next(chunks)
        raise RuntimeError("disk gone")

    monkeypatch.setattr("recipients.services.CHUNK_ROWS", 2)
    monkeypatch.setattr(services, "_chunks", failing_after_the_first)
    rows = "".join(f"America/New_York,+1212555{i:04d}\n" for i in range(5))
    with pytest.raises(RuntimeError, match="disk gone"):
        import_text(sms_campaign, "timezone,phone_number\n" + rows)
    assert not RecipientList.objects.exists()
    assert not Message.objects.exists() and not Contact.objects.exists()


def import_in_thread(
    campaign, content: str, outcomes: dict, start: threading.Barrier | None = None
) -> threading.Thread:
    """Imports in a thread (and database connection) of its own; outcomes[campaign] says how."""

    def run() -> None:
        try:
            if start is not None:
                start.wait()
            outcomes[campaign] = import_text(campaign, content)
        except Exception as error:  # reported by the caller, with the other threads' outcomes
            outcomes[campaign] = error
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def needs_row_locks() -> None:
    if connection.vendor != "postgresql":
        # SQLite's test database is an in-memory shared cache whose table locks never wait;
        # the embedded run's database file makes a second writer wait its turn.
        pytest.skip("row locks are PostgreSQL's")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("recipients", "chunk_rows"), [(9000, 10_000), (6000, 500)], ids=["one chunk", "many chunks"]
)
def test_two_uploads_sharing_people_at_the_same_moment_both_go_in(
    tenants, monkeypatch, recipients, chunk_rows
):
    needs_row_locks()
    # The same patients for two campaigns, uploaded side by side in opposite orders: each import
    # locks the contacts it creates until it commits. Side by side the two came to wait on each
    # other and PostgreSQL aborted one, every time, before an organization's imports took turns.
    monkeypatch.setattr("recipients.services.CHUNK_ROWS", chunk_rows)
    tenants.org.max_recipients_per_list = recipients
    tenants.org.save()
    first, second = (CampaignFactory(org=tenants.org) for _ in range(2))
    rows = [f"America/New_York,+121255{i:05d}\n" for i in range(recipients)]

    files, outcomes, start = {first: rows, second: rows[::-1]}, {}, threading.Barrier(2)
    threads = [
        import_in_thread(campaign, "timezone,phone_number\n" + "".join(lines), outcomes, start)
        for campaign, lines in files.items()
    ]
    for thread in threads:
        thread.join()

    assert all(getattr(outcome, "accepted", False) for outcome in outcomes.values()), outcomes
    assert Contact.objects.filter(org=tenants.org).count() == recipients
    assert Message.objects.filter(campaign=first).count() == recipients
    assert Message.objects.filter(campaign=second).count() == recipients


@pytest.mark.django_db(transaction=True)
def test_an_import_waits_only_for_its_own_organizations_imports(tenants):
    needs_row_locks()
    from recipients.services import _imports_one_at_a_time

    held, release = threading.Event(), threading.Event()

    def running_import() -> None:  # Acme's turn held, as a running import holds it until commit
        try:
            with transaction.atomic():
                _imports_one_at_a_time(tenants.org.pk)
                held.set()
                release.wait(20)
        finally:
            connection.close()

    holder = threading.Thread(target=running_import, daemon=True)
    holder.start()
    assert held.wait(10)
    content, outcomes = "timezone,phone_number\nAmerica/New_York,+12125550123\n", {}
    globex, acme = CampaignFactory(org=tenants.other_org), CampaignFactory(org=tenants.org)
    try:
        import_in_thread(globex, content, outcomes).join(10)
        assert outcomes[globex].accepted  # another organization's import is not held up
        waiting = import_in_thread(acme, content, outcomes)
        waiting.join(1)
        assert waiting.is_alive() and acme not in outcomes  # Acme's waits for the running one
    finally:
        release.set()
        holder.join(10)
    waiting.join(10)
    assert outcomes[acme].accepted


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--end", "9999-12-31T23:59"),  # year 10000 in UTC, from Chicago
        ("--end", "2999-12-31T23:59-05:00"),
        ("--start", "0001-01-01T00:00"),
        ("--start", "1999-12-31T23:59Z"),
    ],
)
def test_the_command_refuses_dates_outside_the_years_2000_to_2999(
    sms_campaign, tmp_path, flag, value
):
    path = tmp_path / "good.csv"
    path.write_text(GOOD_SMS, encoding="utf-8")
    with pytest.raises(CommandError, match="Give a date between the years 2000 and 2999"):
        call_command("import_recipients", sms_campaign.pk, str(path), flag, value)
    assert not RecipientList.objects.exists()


def test_the_command_refuses_a_day_that_does_not_exist(sms_campaign, tmp_path):
    path = tmp_path / "good.csv"
    path.write_text(GOOD_SMS, encoding="utf-8")
    with pytest.raises(CommandError, match="is not an ISO 8601 date and time"):
        call_command("import_recipients", sms_campaign.pk, str(path), "--end", "2031-02-30T09:00")


def test_the_import_itself_refuses_dates_no_page_could_read(sms_campaign):
    far = datetime(9999, 12, 31, 23, 59, tzinfo=ZoneInfo("America/New_York"))
    with pytest.raises(ListDatesRefused, match="outside the years 2000 to 2999"):
        recipient_list_import(
            campaign=sms_campaign,
            stream=io.BytesIO(GOOD_SMS.encode()),
            file_name="far.csv",
            start_at=timezone.now(),
            end_at=far,
            user=None,
        )
