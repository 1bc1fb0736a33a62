import re

import pytest

from campaigns.models import (
    ALLOWED_ACTIONS,
    ActionNotAllowed,
    ActivityEntry,
    Campaign,
    Channel,
    Status,
)
from tests.conftest import client_for
from tests.factories import (
    CampaignFactory,
    EmailSenderFactory,
    EmailTemplateFactory,
    SmsSenderFactory,
    SmsTemplateFactory,
)

CLOSED_WEEK = {f"day{i}_closed": "on" for i in range(7)}


def campaign_form(sender, template, **overrides):
    data = {
        "name": "Flu shots",
        "description": "Autumn reminders",
        "sender": sender.pk,
        "language": template.language,
        "template": template.pk,
        **CLOSED_WEEK,
    }
    data.pop("day1_closed")  # Tuesday open
    data.update({"day1_open": "10:00", "day1_close": "16:30"})
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


@pytest.fixture
def sms_parts(tenants):
    return SmsSenderFactory(org=tenants.org), SmsTemplateFactory(org=tenants.org)


def test_it_creates_a_ready_campaign_with_a_custom_schedule(tenants, admin_client, sms_parts):
    response = admin_client.post("/campaigns/new/sms/", campaign_form(*sms_parts), follow=True)
    page = response.content.decode()
    assert "Campaign “Flu shots” is Ready." in page
    campaign = Campaign.objects.get()
    assert (campaign.org, campaign.channel, campaign.status) == (tenants.org, "sms", Status.READY)
    assert campaign.schedule == {"1": ["10:00", "16:30"]}
    assert "10:00\N{EN DASH}16:30" in page and page.count("Closed") >= 6
    entry = ActivityEntry.objects.get(campaign=campaign)
    assert (entry.actor, entry.verb) == (tenants.admin, "created")
    assert "acme-admin</strong> created Flu shots" in page


def test_it_says_times_are_the_recipients_own(tenants, admin_client, sms_parts):
    page = admin_client.get("/campaigns/new/sms/").content.decode()
    assert "in each recipient's own timezone" in page
    # Every day starts Closed.
    assert page.count('type="checkbox" name="day') == 7
    assert page.count("checked") == 7


def test_it_refuses_a_schedule_with_no_open_day(tenants, admin_client, sms_parts):
    data = campaign_form(*sms_parts, day1_closed="on")
    page = admin_client.post("/campaigns/new/sms/", data).content.decode()
    assert "Open at least one day: with every day Closed the campaign would never send." in page
    assert not Campaign.objects.exists()


def test_it_refuses_a_close_time_not_after_the_open_time(tenants, admin_client, sms_parts):
    data = campaign_form(*sms_parts, day1_open="17:00", day1_close="09:00")
    page = admin_client.post("/campaigns/new/sms/", data).content.decode()
    assert "Tuesday: the close time must be after the open time." in page
    data = campaign_form(*sms_parts, day1_open="09:00", day1_close="09:00")
    assert (
        "Tuesday: the close time" in admin_client.post("/campaigns/new/sms/", data).content.decode()
    )
    assert not Campaign.objects.exists()


def test_it_fills_weekdays_nine_to_five_from_the_preset(tenants, admin_client, sms_parts):
    data = campaign_form(*sms_parts, preset="weekdays")
    response = admin_client.post("/campaigns/new/sms/", data)
    assert not Campaign.objects.exists(), "a preset only fills the form"
    form = response.context["form"]
    assert [form[f"day{i}_closed"].value() for i in range(7)] == [False] * 5 + [True] * 2
    assert form["day0_open"].value() == "09:00" and form["day4_close"].value() == "17:00"
    assert form["name"].value() == "Flu shots"
    assert not form.errors


def test_it_offers_only_senders_and_templates_of_the_channel_and_organization(
    tenants, admin_client, sms_parts
):
    EmailSenderFactory(org=tenants.org, label="Email only")
    SmsSenderFactory(org=tenants.other_org, label="Other org line")
    EmailTemplateFactory(org=tenants.org, name="Email template")
    page = admin_client.get("/campaigns/new/sms/").content.decode()
    assert sms_parts[0].label in page and sms_parts[1].name in page
    assert "Email only" not in page and "Other org line" not in page
    assert "Email template" not in page
    foreign = SmsSenderFactory(org=tenants.other_org)
    page = admin_client.post(
        "/campaigns/new/sms/", campaign_form(foreign, sms_parts[1])
    ).content.decode()
    assert "Select a valid choice" in page and not Campaign.objects.exists()


def test_it_refuses_a_template_in_another_language(tenants, admin_client, sms_parts):
    spanish = SmsTemplateFactory(org=tenants.org, name="Recordatorio", language="es")
    data = campaign_form(sms_parts[0], spanish, language="en")
    page = admin_client.post("/campaigns/new/sms/", data).content.decode()
    assert "“Recordatorio” is written in Spanish; pick a template in English" in page


def test_it_creates_an_email_campaign(tenants, admin_client):
    sender, template = EmailSenderFactory(org=tenants.org), EmailTemplateFactory(org=tenants.org)
    admin_client.post("/campaigns/new/email/", campaign_form(sender, template))
    assert Campaign.objects.get().channel == Channel.EMAIL


def test_it_edits_a_ready_campaign_but_never_its_channel(tenants, admin_client, sms_parts):
    campaign = CampaignFactory(org=tenants.org, name="Old name")
    other_template = SmsTemplateFactory(org=tenants.org, name="Second")
    data = campaign_form(campaign.sender, other_template, name="New name", channel="email")
    admin_client.post(f"/campaigns/{campaign.pk}/edit/", data)
    campaign.refresh_from_db()
    assert (campaign.name, campaign.template, campaign.channel) == (
        "New name",
        other_template,
        "sms",
    )
    entry = ActivityEntry.objects.get(verb="edited")
    assert "Name" in entry.detail and "Template" in entry.detail


@pytest.mark.parametrize("status", [s for s in Status if s != Status.READY])
def test_it_refuses_to_edit_a_campaign_that_is_not_ready(tenants, admin_client, status):
    campaign = CampaignFactory(org=tenants.org, status=status, name="Running")
    response = admin_client.post(
        f"/campaigns/{campaign.pk}/edit/",
        campaign_form(campaign.sender, campaign.template, name="Changed"),
        follow=True,
    )
    assert f"A campaign that is {status.label} cannot be edited." in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.name == "Running"


def test_it_confirms_and_deletes_a_ready_campaign(tenants, admin_client):
    campaign = CampaignFactory(org=tenants.org, name="Spring")
    page = admin_client.get(f"/campaigns/{campaign.pk}/delete/").content.decode()
    assert "Delete “Spring”?" in page and "cannot be undone" in page
    assert Campaign.objects.exists()
    response = admin_client.post(f"/campaigns/{campaign.pk}/delete/", follow=True)
    assert "Campaign “Spring” deleted." in response.content.decode()
    assert not Campaign.objects.exists()
    entry = ActivityEntry.objects.get(verb="deleted")
    assert (entry.subject, entry.actor, entry.org) == ("Spring", tenants.admin, tenants.org)


@pytest.mark.parametrize(
    "status", [Status.SCHEDULED, Status.IN_PROGRESS, Status.PAUSED, Status.STOPPED]
)
def test_it_refuses_a_forged_delete_with_a_message(tenants, admin_client, status):
    campaign = CampaignFactory(org=tenants.org, status=status)
    response = admin_client.post(f"/campaigns/{campaign.pk}/delete/", follow=True)
    assert response.status_code == 200
    assert f"A campaign that is {status.label} cannot be deleted." in response.content.decode()
    assert Campaign.objects.filter(pk=campaign.pk).exists()


def test_it_shows_only_the_buttons_the_status_allows(tenants):
    ready = CampaignFactory(org=tenants.org)
    running = CampaignFactory(org=tenants.org, status=Status.IN_PROGRESS)
    admin = client_for(tenants.admin)
    page = admin.get(f"/campaigns/{ready.pk}/").content.decode()
    assert f"/campaigns/{ready.pk}/edit/" in page and f"/campaigns/{ready.pk}/delete/" in page
    page = admin.get(f"/campaigns/{running.pk}/").content.decode()
    assert "/edit/" not in page and "/delete/" not in page
    page = client_for(tenants.viewer).get(f"/campaigns/{ready.pk}/").content.decode()
    assert "/edit/" not in page and "/delete/" not in page


# The lifecycle table from the product's rules, stated independently of the model's data.
EXPECTED_ALLOWED = {
    "edit": {Status.READY},
    "delete": {Status.READY, Status.COMPLETE, Status.COMPLETE_WITH_ERRORS},
}


@pytest.mark.parametrize("action", sorted(EXPECTED_ALLOWED))
@pytest.mark.parametrize("status", list(Status))
def test_it_allows_each_action_only_in_its_statuses(action, status):
    campaign = Campaign(status=status)
    allowed = status in EXPECTED_ALLOWED[action]
    assert campaign.can(action) is allowed
    if allowed:
        campaign.require(action)
    else:
        with pytest.raises(
            ActionNotAllowed, match=re.escape(f"A campaign that is {status.label} cannot")
        ):
            campaign.require(action)


def test_it_writes_every_action_once_as_data():
    assert set(ALLOWED_ACTIONS) >= {"edit", "delete", "run", "stop", "pause", "resume", "retry"}


def test_it_filters_searches_and_pages_the_campaign_list(tenants, viewer_client):
    for i in range(30):
        CampaignFactory(org=tenants.org, name=f"Reminder {i:02d}")
    CampaignFactory(org=tenants.org, name="Autumn email", channel=Channel.EMAIL)
    CampaignFactory(org=tenants.org, name="Stopped one", status=Status.STOPPED)
    CampaignFactory(org=tenants.other_org, name="Not ours")
    page = viewer_client.get("/campaigns/").content.decode()
    assert "32 campaigns" in page and "Page 1 of 2" in page and "Not ours" not in page
    page = viewer_client.get("/campaigns/?page=2").content.decode()
    assert "Page 2 of 2" in page
    page = viewer_client.get("/campaigns/?channel=email").content.decode()
    assert "1 campaign matching" in page and "Autumn email" in page
    page = viewer_client.get("/campaigns/?status=stopped").content.decode()
    assert "Stopped one" in page and "Reminder" not in page
    page = viewer_client.get("/campaigns/?search=reminder+2").content.decode()
    assert "Reminder 20" in page and "Reminder 19" not in page
    page = viewer_client.get("/campaigns/?search=nothing-like-this").content.decode()
    assert "No campaign matches these filters." in page
