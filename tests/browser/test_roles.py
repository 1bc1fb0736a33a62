"""What a Viewer and another organization's Administrator can see and do, in a real browser."""

import re

import pytest
from playwright.sync_api import expect

from campaigns.models import Campaign, Channel, Status
from tests.browser.conftest import log_in
from tests.factories import (
    CampaignFactory,
    MessageFactory,
    RecipientListFactory,
    SmsSenderFactory,
    SmsTemplateFactory,
    SuppressionFactory,
)

pytestmark = pytest.mark.django_db(transaction=True)

# Everything that creates, edits, deletes, runs, stops or uploads, as a link or button starts.
WRITE_CONTROLS = [
    "New campaign",
    "Run now",
    "Delete",
    "Add recipient list",
    "Stop",
    "Edit",
    "Add address",
    "New SMS sender",
    "New SMS template",
    "Import CSV",
    "Pause",
    "Remove",
]
# Texts no read-only page shows anywhere ("Stop" and "Edit" also start "Stopped (0)" or a
# template's words, so those two are checked as controls only).
WRITE_TEXTS = ["New campaign", "Run now", "Delete", "Add recipient list", "Add address"]


def acme_campaigns(tenants) -> tuple[Campaign, Campaign]:
    """A Ready SMS campaign with a list, and an email campaign In Progress (it offers Stop)."""
    sender = SmsSenderFactory(org=tenants.org, label="Main line", phone_number="+14155550100")
    template = SmsTemplateFactory(org=tenants.org, name="Appointment reminder")
    ready = CampaignFactory(
        org=tenants.org, name="Spring reminders", sender=sender, template=template
    )
    MessageFactory(
        recipient_list=RecipientListFactory(campaign=ready, file_name="patients.csv"),
        contact__address="+12125550101",
        contact__name="Ana García",
    )
    running = CampaignFactory(
        org=tenants.org, name="Autumn newsletter", channel=Channel.EMAIL, status=Status.IN_PROGRESS
    )
    SuppressionFactory(org=tenants.org, address="+14155550199")
    return ready, running


def write_controls(page) -> dict[str, int]:
    """How many links and buttons in the page's main part start with each write control's name."""
    main = page.locator("main")
    counts = {}
    for name in WRITE_CONTROLS:
        pattern = re.compile(rf"^{re.escape(name)}\b")
        counts[name] = (
            main.get_by_role("link", name=pattern).count()
            + main.get_by_role("button", name=pattern).count()
        )
    return {name: n for name, n in counts.items() if n}


def console_pages(ready: Campaign, running: Campaign) -> list[tuple[str, str, str]]:
    """(step, path, a text the page shows) for each read-only page both roles visit."""
    return [
        ("campaign list", "/campaigns/", "Spring reminders"),
        ("ready campaign", f"/campaigns/{ready.pk}/", "patients.csv"),
        ("running campaign", f"/campaigns/{running.pk}/", "Autumn newsletter"),
        ("template", f"/message-templates/{ready.template_id}/", "Reply STOP to opt out"),
        ("template list", "/message-templates/", "Appointment reminder"),
        ("senders", "/senders/", "+14155550100"),
        ("opt outs", "/opt-outs/", "+14155550199"),
        ("messages", f"/campaigns/{ready.pk}/messages/", "+12125550101"),
    ]


def test_it_shows_a_viewer_everything_but_no_control_that_changes_anything(
    page, shot, browser, live_server, tenants
):
    ready, running = acme_campaigns(tenants)
    log_in(page, "acme-viewer")
    expect(page.locator(".role-badge")).to_have_text("Viewer")
    for step, path, shown in console_pages(ready, running):
        page.goto(path)
        expect(page.locator("main")).to_contain_text(shown)
        assert write_controls(page) == {}, f"{step} ({path}) offers a Viewer {write_controls(page)}"
        for text in WRITE_TEXTS:
            expect(page.locator("main")).not_to_contain_text(text)
        shot(f"viewer {step}")

    # A forged form post, with a valid CSRF token, is refused by the server itself.
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    response = page.request.post(
        f"{live_server.url}/campaigns/{ready.pk}/run/",
        form={"csrfmiddlewaretoken": token},
        headers={"X-CSRFToken": token},
        max_redirects=0,
    )
    assert response.status == 403
    assert "Only Administrators can do this." in response.text()
    ready.refresh_from_db()
    assert ready.status == Status.READY and ready.started_at is None

    # The same pages offer an Administrator those controls, so the checks above can see them.
    admin = browser.new_context(base_url=live_server.url)
    try:
        admin_page = admin.new_page()
        log_in(admin_page, "acme-admin")
        offered: dict[str, int] = {}
        for _step, path, _shown in console_pages(ready, running):
            admin_page.goto(path)
            for name, n in write_controls(admin_page).items():
                offered[name] = offered.get(name, 0) + n
        assert set(offered) == set(WRITE_CONTROLS), offered
    finally:
        admin.close()


def test_it_answers_404_to_another_organizations_administrator(page, shot, live_server, tenants):
    ready, _ = acme_campaigns(tenants)
    log_in(page, "globex-admin")
    expect(page.get_by_test_id("current-org")).to_have_text("Globex Clinics")
    for step, path in [
        ("campaign", f"/campaigns/{ready.pk}/"),
        ("messages", f"/campaigns/{ready.pk}/messages/"),
    ]:
        response = page.goto(path)
        assert response.status == 404, f"{path}: {response.status}"
        expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
        expect(page.locator("body")).not_to_contain_text("Spring reminders")
        expect(page.locator("body")).not_to_contain_text("+12125550101")
        shot(f"globex {step} not found")

    export = page.request.get(f"{live_server.url}/campaigns/{ready.pk}/messages.csv")
    assert export.status == 404
    assert "+12125550101" not in export.text()

    page.goto("/campaigns/")
    expect(page.locator("main")).to_contain_text("No campaigns yet.")
    shot("globex campaign list")
