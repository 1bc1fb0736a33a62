"""An Administrator runs an SMS and an email campaign in a real browser, with real Celery
processes sending through the sandbox provider and its signed callbacks updating the page."""

import csv
import io
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import expect

from campaigns.models import Channel
from delivery.links import unsubscribe_url
from delivery.models import Suppression
from delivery.sandbox import render_personalization
from tests.browser.conftest import log_in
from tests.factories import CampaignFactory, MessageFactory, RecipientListFactory

pytestmark = pytest.mark.django_db(transaction=True)

SMS_NUMBER = "+14155550100"
SMS_TEMPLATE = "Hi {{ first_name|there }} from {{ clinic }}"
GOOD_SMS_ROWS = [
    ("America/New_York", "+12125550101", "Ana García", "Midtown"),
    ("America/Los_Angeles", "+14155550123", "Maria Lopez", "Mission"),
    ("Europe/London", "+447911123456", "Oliver Smith", "Soho"),
    ("Asia/Kolkata", "+919876543210", "Priya Patel", "Bandra"),
    ("Australia/Lord_Howe", "+61412345678", "Jack Wilson", "Lagoon"),
    ("Asia/Tokyo", "+819012345678", "Yuki Sato", "Shibuya"),
]
EMAIL_ROWS = [
    ("America/New_York", "ana@example.com", "Ana García"),
    ("Europe/London", "oliver@example.com", "Oliver Smith"),
    ("Asia/Kolkata", "priya@example.com", "Priya Patel"),
    ("Australia/Lord_Howe", "jack@example.com", "Jack Wilson"),
]
UNSUBSCRIBE_HTML = '<p>Hello {{ name }}</p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
# Final states arrive within seconds; the margin absorbs a slow first Celery start.
COMPLETE_TIMEOUT_MS = 60_000


def csv_bytes(rows: list[tuple[str, ...]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode()


def downloaded_csv(download) -> list[dict[str, str]]:
    text = Path(download.path()).read_text(encoding="utf-8-sig")
    return list(csv.DictReader(io.StringIO(text)))


def send_all_week(tenants, sandbox, celery_processes, **outcomes: float) -> None:
    """Quiet hours off, sandbox outcomes set, and a worker and a beat ticking every second."""
    tenants.org.quiet_hours = False
    tenants.org.save()
    sandbox.configure(callback_delay=0, stop_reply_ratio=0.0, **outcomes)
    celery_processes.worker()
    celery_processes.beat()


def send_inbound(sandbox, **reply: str) -> int | None:
    """The sandbox's inbound SMS webhook, posted from a thread that then ends."""
    # The sandbox keeps one keep-alive HTTP session per calling thread and never closes it: from
    # the test's own thread it would hold a live-server thread, and its database connection,
    # open until the test database is dropped. A finished thread's session is freed and closed.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(sandbox.send_inbound, **reply).result()


def fill_campaign_form(page, *, name: str, sender: str, template: str) -> None:
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Sender").select_option(label=sender)
    page.get_by_label("Language").select_option("en")
    page.get_by_label("Template").select_option(label=template)
    # Open all week, all day: every recipient's window is open now, whatever their timezone.
    for day in range(7):
        page.locator(f"input[name=day{day}_closed]").uncheck()
        page.locator(f"input[name=day{day}_open]").fill("00:00")
        page.locator(f"input[name=day{day}_close]").fill("23:59")


def upload_list(page, file_name: str, content: bytes) -> None:
    page.get_by_label("CSV file").set_input_files(
        files=[{"name": file_name, "mimeType": "text/csv", "buffer": content}]
    )
    page.get_by_role("button", name="Upload and check").click()


def run_now_and_wait_for_complete(page, shot, channel: str) -> None:
    """Runs the campaign, then watches its page update by itself (htmx polling) to Complete."""
    polls = []
    page.on("response", lambda r: polls.append(r.status) if r.url.endswith("/live/") else None)
    page.get_by_role("button", name="Run now").click()
    expect(page.locator(".messages")).to_contain_text("is running")
    shot(f"{channel} campaign running")
    # No reload and no navigation from here on: only the page's own polling can show the end.
    expect(page.get_by_test_id("status-words")).to_contain_text(
        "Complete", timeout=COMPLETE_TIMEOUT_MS
    )
    assert polls and set(polls) == {200}, polls


def test_it_runs_an_sms_campaign_from_csv_upload_to_a_stop_reply(
    page, shot, tenants, sandbox, celery_processes
):
    # Every SMS reaches a final status (80 % delivered, the rest undelivered), so it completes.
    send_all_week(tenants, sandbox, celery_processes, delivered_ratio=0.8, undelivered_ratio=1.0)
    log_in(page, "acme-admin")
    shot("logged in")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Senders").click()
    page.get_by_role("link", name="New SMS sender").click()
    page.get_by_label("Label").fill("Main line")
    page.get_by_label("Phone number").fill(SMS_NUMBER)
    page.get_by_label("Reply inbox").fill("Front desk")
    page.get_by_label("Throughput").fill("20")
    page.get_by_label("Rate period").select_option("second")
    shot("sms sender form")
    page.get_by_role("button", name="Save sender").click()
    expect(page.locator(".messages")).to_contain_text("Sender “Main line” created.")
    expect(page.locator("table")).to_contain_text("20 messages per second")
    shot("senders list")

    page.get_by_role("link", name="Message templates").click()
    page.get_by_role("link", name="New SMS template").click()
    page.get_by_label("Name", exact=True).fill("Appointment reminder")
    counter = page.locator("#sms-counter")
    body = page.get_by_label("Message", exact=True)
    body.fill("Hi")
    expect(counter).to_contain_text("1 segment (GSM-7)")
    first = counter.inner_text()
    body.fill(SMS_TEMPLATE)
    # The counter follows every keystroke, rendered for the sample recipient.
    expect(counter).not_to_have_text(first)
    expect(counter).to_contain_text("characters · 1 segment (GSM-7)")
    expect(page.locator("#live-preview")).to_contain_text("Hi ")
    shot("sms template with live counter")
    body.fill(SMS_TEMPLATE + " " + "x" * 200)
    expect(counter).to_contain_text("2 segments (GSM-7)")
    shot("sms template two segments")
    body.fill(SMS_TEMPLATE)
    page.get_by_role("button", name="Save template").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Appointment reminder")
    shot("sms template saved")

    page.get_by_role("link", name="Campaigns").first.click()
    page.get_by_role("link", name="New campaign").click()
    page.get_by_role("link", name="SMS campaign").click()
    fill_campaign_form(
        page,
        name="Spring reminders",
        sender=f"Main line ({SMS_NUMBER})",
        template="Appointment reminder (en)",
    )
    shot("sms campaign form")
    page.get_by_role("button", name="Create campaign").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Spring reminders")
    expect(page.get_by_test_id("campaign-status")).to_have_text("Ready")
    sunday = page.get_by_test_id("schedule-summary").locator("tr", has_text="Sunday")
    expect(sunday).to_contain_text(re.compile(r"00:00.23:59"))
    campaign_url = page.url
    shot("sms campaign ready")

    page.get_by_role("link", name="Add recipient list").click()
    with page.expect_download() as template_download:
        page.get_by_role("link", name="Download the CSV template").click()
    lines = Path(template_download.value.path()).read_text(encoding="utf-8").splitlines()
    assert lines[0] == "timezone,phone_number,name"
    shot("upload form")

    broken = [
        ("timezone", "phone_number", "name", "clinic"),
        ("Mars/Olympus_Mons", "+12125550101", "Bad Zone", "Midtown"),
        ("America/New_York", "12", "Bad Phone", "Midtown"),
        ("America/New_York", "+12125550102", "Fine Row", "Midtown"),
    ]
    upload_list(page, "broken.csv", csv_bytes(broken))
    expect(page.get_by_role("heading", level=1)).to_have_text("“broken.csv” was not imported")
    expect(page.get_by_role("alert")).to_contain_text("The file has 2 errors")
    shot("upload rejected")
    with page.expect_download() as error_download:
        page.get_by_role("link", name="Download error log").click()
    assert error_download.value.suggested_filename == "broken-errors.csv"
    error_rows = list(
        csv.reader(io.StringIO(Path(error_download.value.path()).read_text("utf-8-sig")))
    )
    # Reason, line of the file, then the row as uploaded: only the two bad rows.
    assert error_rows[0] == ["reason", "line", "timezone", "phone_number", "name", "clinic"]
    by_line = {row[1]: row for row in error_rows[1:]}
    assert set(by_line) == {"2", "3"}, error_rows
    assert "timezone" in by_line["2"][0].lower(), by_line["2"]
    assert by_line["2"][2:] == list(broken[1])
    assert "phone" in by_line["3"][0].lower(), by_line["3"]
    assert by_line["3"][2:] == list(broken[2])

    page.get_by_role("link", name="Upload a corrected file").click()
    good = [("timezone", "phone_number", "name", "clinic"), *GOOD_SMS_ROWS]
    upload_list(page, "patients.csv", csv_bytes(good))
    expect(page.locator(".messages")).to_contain_text("“patients.csv” imported: 6 recipients.")
    shot("upload accepted")

    page.goto(campaign_url)
    expect(page.get_by_test_id("recipient-lists")).to_contain_text("patients.csv")
    expect(page.get_by_test_id("campaign-progress")).to_contain_text("0/6")
    shot("campaign with list")
    run_now_and_wait_for_complete(page, shot, "sms")
    expect(page.get_by_test_id("campaign-progress")).to_contain_text("6/6")
    figures = page.get_by_test_id("figures")
    expect(figures).to_contain_text("Sent")
    shot("sms campaign complete live")
    sandbox.wait_idle(10)
    per_message = sandbox.requests_per_message()
    assert len(per_message) == 6 and set(per_message.values()) == {1}
    sent_bodies = {r["payload"]["To"]: r["body"] for r in sandbox.received}
    assert sent_bodies["+447911123456"] == "Hi Oliver from Soho"

    page.locator("#delivery").get_by_role("link", name="Messages").click()
    expect(page.get_by_test_id("messages").locator("tbody tr")).to_have_count(6)
    shot("messages page")
    with page.expect_download() as export_download:
        page.get_by_role("link", name="Export CSV").click()
    exported = downloaded_csv(export_download.value)
    assert list(exported[0])[:5] == ["recipient", "name", "timezone", "list", "status"]
    assert {row["recipient"] for row in exported} == {row[1] for row in GOOD_SMS_ROWS}
    assert {row["status"] for row in exported} <= {"Delivered", "Undelivered"}, exported
    assert all(row["list"] == "patients.csv" and row["sent_at_utc"] for row in exported)
    lord_howe = next(row for row in exported if row["timezone"] == "Australia/Lord_Howe")
    assert lord_howe["sent_at_local"] != lord_howe["sent_at_utc"]

    page.get_by_role("link", name="+447911123456").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Oliver Smith")
    expect(page.get_by_test_id("timeline")).to_contain_text("Spring reminders")
    shot("recipient timeline")

    assert send_inbound(sandbox, from_="+447911123456", to=SMS_NUMBER, body="STOP") == 200
    page.get_by_role("link", name="Opt-outs").click()
    expect(page.get_by_test_id("suppressions")).to_contain_text("+447911123456")
    shot("opt outs after stop")
    page.go_back()
    page.reload()
    expect(page.locator(".notice")).to_contain_text("On the opt-out list")
    expect(page.get_by_test_id("timeline")).to_contain_text("STOP")
    shot("timeline after stop")


def test_it_runs_an_email_campaign_and_honours_an_unsubscribe_link(
    page, shot, browser, live_server, tenants, sandbox, celery_processes
):
    send_all_week(
        tenants, sandbox, celery_processes, delivered_ratio=1.0, open_ratio=1.0, click_ratio=1.0
    )
    log_in(page, "acme-admin")

    page.goto("/senders/")
    page.get_by_role("link", name="New email sender").click()
    page.get_by_label("Label").fill("Newsletter")
    page.get_by_label("From name").fill("Acme Health")
    page.get_by_label("From address").fill("news@acme.example")
    page.get_by_label("Throughput").fill("100")
    shot("email sender form")
    page.get_by_role("button", name="Save sender").click()
    expect(page.locator("table")).to_contain_text("news@acme.example")

    page.goto("/message-templates/")
    page.get_by_role("link", name="New email template").click()
    page.get_by_label("Name", exact=True).fill("Spring newsletter")
    page.get_by_label("Subject").fill("News for {{ first_name|you }}")
    page.get_by_label("HTML body").fill(UNSUBSCRIBE_HTML)
    expect(page.frame_locator("#live-preview iframe").locator("body")).to_contain_text(
        "Unsubscribe"
    )
    shot("email template form")
    page.get_by_role("button", name="Save template").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Spring newsletter")
    shot("email template saved")

    page.goto("/campaigns/new/email/")
    fill_campaign_form(
        page,
        name="Spring newsletter",
        sender="Newsletter (news@acme.example)",
        template="Spring newsletter (en)",
    )
    page.get_by_role("button", name="Create campaign").click()
    expect(page.get_by_test_id("campaign-status")).to_have_text("Ready")
    campaign_url = page.url
    shot("email campaign ready")

    page.get_by_role("link", name="Add recipient list").click()
    with page.expect_download() as template_download:
        page.get_by_role("link", name="Download the CSV template").click()
    first_line = Path(template_download.value.path()).read_text("utf-8").splitlines()[0]
    assert first_line == "timezone,email,name"
    upload_list(page, "subscribers.csv", csv_bytes([("timezone", "email", "name"), *EMAIL_ROWS]))
    expect(page.locator(".messages")).to_contain_text("“subscribers.csv” imported: 4 recipients")
    shot("email upload accepted")

    page.goto(campaign_url)
    run_now_and_wait_for_complete(page, shot, "email")
    expect(page.get_by_test_id("campaign-progress")).to_contain_text("4/4")
    shot("email campaign complete live")

    # Opens and clicks can land just after the last delivery; the page stops polling once the
    # campaign is complete, so it is read again after the sandbox has posted everything.
    sandbox.wait_idle(10)
    page.reload()
    engagement = page.locator("#delivery dl").nth(1)
    expect(engagement.locator("dt:text-is('Opens') + dd")).to_have_text("4")
    expect(engagement.locator("dt:text-is('Clicks') + dd")).to_have_text("4")
    expect(page.get_by_test_id("figures").locator("dt:text-is('Delivered') + dd")).to_contain_text(
        "4"
    )
    shot("email opens and clicks")

    request = next(r for r in sandbox.received if r["api"] == "sendgrid" and r["status"] == 202)
    personalization = request["payload"]["personalizations"][0]
    address = personalization["to"][0]["email"]
    link = personalization["headers"]["List-Unsubscribe"].strip("<>")
    assert link.startswith(f"{live_server.url}/u/"), link
    # The link in the HTML part, as the sandbox renders it for this recipient, is the same one.
    assert f'href="{link}"' in render_personalization(request["payload"], 0)["html"]

    # The recipient opens the link in a browser of their own, not signed in to the console.
    recipient = browser.new_context()
    try:
        inbox = recipient.new_page()
        inbox.goto(link)
        expect(inbox.get_by_role("heading", level=1)).to_have_text("Unsubscribe?")
        expect(inbox.locator("body")).to_contain_text(address)
        shot("unsubscribe confirmation", page=inbox)
        # Opening the link (mail scanners do) changes nothing: only the button unsubscribes.
        assert not Suppression.objects.filter(org=tenants.org, address=address).exists()
        inbox.get_by_role("button", name="Unsubscribe").click()
        expect(inbox.get_by_role("heading", level=1)).to_have_text("You are unsubscribed")
        expect(inbox.get_by_test_id("unsubscribed")).to_contain_text(address)
        shot("unsubscribed", page=inbox)
    finally:
        recipient.close()

    page.goto("/opt-outs/")
    row = page.get_by_test_id("suppressions").locator("tr", has_text=address)
    expect(row).to_contain_text("Unsubscribe link")
    shot("opt outs after unsubscribe")


def test_it_shows_the_unsubscribe_page_to_a_signed_in_member_too(
    page, shot, settings, live_server, tenants
):
    settings.PUBLIC_BASE_URL = live_server.url
    campaign = CampaignFactory(org=tenants.org, channel=Channel.EMAIL)
    message = MessageFactory(
        recipient_list=RecipientListFactory(campaign=campaign), contact__address="ana@example.com"
    )
    # An Administrator trying the link of a test email sent to their own address.
    log_in(page, "acme-admin")
    page.goto(unsubscribe_url(message.pk))
    shot("unsubscribe signed in")
    expect(page.get_by_role("button", name="Unsubscribe")).to_be_visible(timeout=2_000)
