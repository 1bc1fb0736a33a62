"""The Django admin cannot bypass the console's rules: lifecycle fields stay read-only, saves go
through the console's forms and services, and every change lands in the activity history."""

import pytest
from django.contrib import admin
from django.urls import reverse

from campaigns.models import ActivityEntry, Campaign, Channel, Status
from delivery.models import Message, MessageStatus
from orgs.models import Membership, Role
from tests import factories
from tests.conftest import client_for

OUR_APPS = {"orgs", "campaigns", "recipients", "delivery"}
UNSUBSCRIBE = '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'


@pytest.fixture
def staff(db):
    return factories.UserFactory(username="operator", is_staff=True, is_superuser=True)


@pytest.fixture
def staff_client(staff):
    return client_for(staff)


def change_url(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def campaign_form(campaign: Campaign, **overrides) -> dict:
    """The admin change form of a campaign as a browser posts it, unchanged unless overridden."""
    data = {
        "name": campaign.name,
        "description": campaign.description,
        "sender": campaign.sender_id,
        "language": campaign.language,
        "template": campaign.template_id,
    }
    for day in range(7):
        # A closed day still shows (and posts) the hours it would open.
        hours = campaign.schedule.get(str(day)) or ["09:00", "17:00"]
        data[f"day{day}_open"], data[f"day{day}_close"] = hours
        if str(day) not in campaign.schedule:
            data[f"day{day}_closed"] = "on"
    return {**data, **overrides}


def test_it_ignores_a_posted_status_and_channel_and_records_the_edit(tenants, staff, staff_client):
    campaign = factories.CampaignFactory(org=tenants.org, channel=Channel.EMAIL)
    data = campaign_form(
        campaign,
        name="Renamed",
        status=Status.COMPLETE,
        channel=Channel.SMS,
        org=tenants.other_org.pk,
    )
    response = staff_client.post(change_url(campaign), data)
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert (campaign.name, campaign.status, campaign.channel, campaign.org) == (
        "Renamed",
        Status.READY,
        Channel.EMAIL,
        tenants.org,
    )
    entry = ActivityEntry.objects.get(campaign=campaign)
    assert (entry.actor, entry.verb, entry.detail) == (staff, "edited (admin)", "Changed Name")


def test_it_keeps_a_campaign_s_sender_in_its_organization(tenants, staff_client):
    campaign = factories.CampaignFactory(org=tenants.org)
    stranger = factories.SmsSenderFactory(org=tenants.other_org)
    response = staff_client.post(change_url(campaign), campaign_form(campaign, sender=stranger.pk))
    assert "Select a valid choice" in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.sender.org == tenants.org


def test_it_shows_a_running_campaign_read_only(tenants, staff_client):
    campaign = factories.CampaignFactory(org=tenants.org, status=Status.IN_PROGRESS)
    page = staff_client.get(change_url(campaign))
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    response = staff_client.post(
        change_url(campaign), campaign_form(campaign, name="Renamed", status=Status.READY)
    )
    assert response.status_code == 403
    campaign.refresh_from_db()
    assert (campaign.name, campaign.status) != ("Renamed", Status.READY)
    assert campaign.status == Status.IN_PROGRESS
    assert not ActivityEntry.objects.exists()


def test_it_ignores_a_posted_status_on_a_message(tenants, staff_client):
    message = factories.MessageFactory(recipient_list__campaign__org=tenants.org)
    response = staff_client.post(
        change_url(message), {"status": MessageStatus.DELIVERED, "provider_id": "SMforged"}
    )
    assert response.status_code == 403
    message.refresh_from_db()
    assert (message.status, message.provider_id) == (MessageStatus.QUEUED, "")


def test_it_sanitises_a_template_saved_in_the_admin_and_records_it(tenants, staff, staff_client):
    template = factories.EmailTemplateFactory(org=tenants.org)
    data = {
        "name": template.name,
        "language": template.language,
        "subject": template.subject,
        "html_body": '<p onclick="steal()">Hi</p><script>alert(1)</script>' + UNSUBSCRIBE,
        "text_body": template.text_body,
    }
    assert staff_client.post(change_url(template), data).status_code == 302
    template.refresh_from_db()
    assert "script" not in template.html_body and "onclick" not in template.html_body
    assert template.text_body.startswith("Hi")  # derived again, as the console does
    entry = ActivityEntry.objects.get()
    assert (entry.actor, entry.verb, entry.detail) == (
        staff,
        "edited template (admin)",
        "Changed HTML body",
    )


@pytest.mark.parametrize(
    "html",
    [
        "<p>Hi</p><!-- {{ unsubscribe_url }} -->",
        '<div style="display:none"><a href="{{ unsubscribe_url }}">Unsubscribe</a></div>',
    ],
)
def test_it_refuses_a_template_without_a_visible_unsubscribe_link(tenants, staff_client, html):
    template = factories.EmailTemplateFactory(org=tenants.org)
    data = {
        "name": template.name,
        "language": template.language,
        "subject": template.subject,
        "html_body": html,
        "text_body": template.text_body,
    }
    page = staff_client.post(change_url(template), data).content.decode()
    assert "every campaign email must let its recipients opt out" in page
    template.refresh_from_db()
    assert template.html_body == factories.EmailTemplateFactory.html_body


def test_it_edits_a_sender_with_the_console_s_form(tenants, staff, staff_client):
    sender = factories.SmsSenderFactory(org=tenants.org)
    data = {
        "label": "Renamed line",
        "phone_number": "12",
        "inbox_name": sender.inbox_name,
        "rate_limit": 1,
        "rate_period": "second",
        "org": tenants.other_org.pk,
        "channel": Channel.EMAIL,
    }
    assert (
        "not a valid phone number" in staff_client.post(change_url(sender), data).content.decode()
    )
    data["phone_number"] = "+1 212 555 0199"
    assert staff_client.post(change_url(sender), data).status_code == 302
    sender.refresh_from_db()
    assert (sender.label, sender.phone_number) == ("Renamed line", "+12125550199")
    assert (sender.org, sender.channel) == (tenants.org, Channel.SMS)
    entry = ActivityEntry.objects.get()
    assert (entry.actor, entry.verb) == (staff, "edited sender (admin)")
    assert entry.detail == "Changed Label, Phone number"


def test_it_records_a_membership_s_new_role_and_keeps_its_organization(
    tenants, staff, staff_client
):
    membership = Membership.objects.get(user=tenants.viewer)
    data = {"role": Role.ADMIN, "org": tenants.other_org.pk, "user": tenants.outsider.pk}
    assert staff_client.post(change_url(membership), data).status_code == 302
    membership.refresh_from_db()
    assert (membership.role, membership.org, membership.user) == (
        Role.ADMIN,
        tenants.org,
        tenants.viewer,
    )
    entry = ActivityEntry.objects.get(org=tenants.org)
    assert (entry.actor, entry.verb, entry.detail) == (
        staff,
        "edited membership (admin)",
        "Changed Role",
    )


def test_it_refuses_to_delete_messages_and_history(tenants, staff_client):
    message = factories.MessageFactory(recipient_list__campaign__org=tenants.org)
    entry = ActivityEntry.objects.create(org=tenants.org, verb="ran", subject="Autumn")
    for obj in (message, entry):
        url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_delete", args=[obj.pk])
        assert staff_client.post(url, {"post": "yes"}).status_code == 403
    assert Message.objects.filter(pk=message.pk).exists()
    assert ActivityEntry.objects.filter(pk=entry.pk).exists()


def test_it_deletes_a_campaign_only_when_the_console_would(tenants, staff, staff_client):
    running = factories.CampaignFactory(org=tenants.org, status=Status.IN_PROGRESS)
    ready = factories.CampaignFactory(org=tenants.org, name="Old news")
    delete = "admin:campaigns_campaign_delete"
    assert staff_client.post(reverse(delete, args=[running.pk]), {"post": "yes"}).status_code == 403
    # Nor in bulk, which would skip each campaign's own rules.
    staff_client.post(
        reverse("admin:campaigns_campaign_changelist"),
        {"action": "delete_selected", "_selected_action": [running.pk, ready.pk], "post": "yes"},
    )
    assert Campaign.objects.count() == 2
    assert staff_client.post(reverse(delete, args=[ready.pk]), {"post": "yes"}).status_code == 302
    assert list(Campaign.objects.all()) == [running]
    entry = ActivityEntry.objects.get()
    assert (entry.actor, entry.verb, entry.subject) == (staff, "deleted (admin)", "Old news")


@pytest.fixture
def one_of_each(tenants):
    """At least one row of every model our admins show, in states that change what they allow."""
    org = tenants.org
    email = factories.CampaignFactory(org=org, channel=Channel.EMAIL)
    running = factories.CampaignFactory(org=org, status=Status.IN_PROGRESS)
    recipient_list = factories.RecipientListFactory(campaign=running)
    factories.MessageFactory(recipient_list=recipient_list)
    factories.RejectedUploadFactory(campaign=email)
    factories.ContactFactory(org=org)
    ActivityEntry.objects.create(org=org, campaign=running, verb="ran", subject=running.name)


def test_every_admin_of_ours_opens_its_list_and_its_change_pages(one_of_each, staff_client):
    ours = [model for model in admin.site._registry if model._meta.app_label in OUR_APPS]
    assert len(ours) >= 10
    for model in ours:
        prefix = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        assert staff_client.get(reverse(f"{prefix}_changelist")).status_code == 200, model
        objects = list(model.objects.all())
        assert objects, f"one_of_each needs a {model.__name__}"
        for obj in objects:
            assert staff_client.get(change_url(obj)).status_code == 200, obj


def test_an_empty_to_field_is_ignored_on_every_change_and_delete_page(tenants, staff_client):
    # Django itself answers 500 here (it looks up a field named "").
    campaign = factories.CampaignFactory(org=tenants.org)
    for url in (change_url(campaign), change_url(tenants.admin)):
        assert staff_client.get(url + "?_to_field=").status_code == 200
        delete = url.replace("/change/", "/delete/")
        assert staff_client.post(delete, {"_to_field": ""}).status_code in (200, 302, 403)


def test_a_membership_given_a_user_that_is_not_an_id_is_a_form_error(tenants, staff_client):
    add = reverse("admin:orgs_membership_add")
    assert staff_client.get(add + "?user=Greek&org=%C2%B2").status_code == 200
    page = staff_client.post(add, {"user": "\u00b2", "org": tenants.org.pk, "role": "admin"})
    assert page.status_code == 200 and Membership.objects.count() == 4
