"""Each malformed input the review found answers 400, 404 or an empty result, never a 500.

tests/security/test_fuzz.py walks every URL with such input; these are the cases by name.
"""

import time
from datetime import datetime

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from campaigns.models import Status
from delivery.models import Message, MessageStatus
from orgs.parsing import local_instant, parse_id, parse_int, parse_timestamp
from recipients.models import RecipientList
from tests.conftest import client_for
from tests.delivery import test_webhooks as webhooks
from tests.factories import CampaignFactory, MessageFactory, RecipientListFactory
from tests.url_walk import all_routes

# Signed SendGrid and Twilio callbacks, made as in the webhooks' own tests.
sendgrid_key = webhooks.sendgrid_key
sent_email = webhooks.sent_email


def no_errors_client(user) -> Client:
    client = client_for(user)
    client.raise_request_exception = False
    return client


# ---------------------------------------------------------------- the parsers


@pytest.mark.parametrize(
    "value", ["²", "٣", "\uff11\uff12", "߁", "", "0", "-1", "+1", " 1", "1.0", "9" * 19]
)
def test_it_takes_only_ascii_digits_within_bigint_as_an_id(value):
    assert parse_id(value) is None


def test_it_parses_ids_integers_and_timestamps_written_in_ascii_digits():
    assert parse_id("42") == 42 and parse_id(42) == 42 and parse_id(True) is None
    assert parse_int("-7") == -7 and parse_int("²") is None and parse_int("1" * 30) is None
    assert parse_timestamp("1767225600").year == 2026
    assert parse_timestamp(1767225600).year == 2026
    assert parse_timestamp("soon") is None and parse_timestamp(float("inf")) is None
    assert parse_timestamp(str(10**12)) is None and parse_timestamp("-1") is None


def test_it_refuses_wall_clock_times_whose_instant_would_overflow(tenants):
    assert local_instant(datetime(9999, 12, 31, 23, 59), tenants.org.tz) is None
    assert local_instant(datetime(1, 1, 1), tenants.org.tz) is None
    assert local_instant(datetime(2031, 3, 2, 9, 30), tenants.org.tz).utcoffset()


# ---------------------------------------------------------------- the review's cases


@pytest.mark.parametrize(
    ("param", "value"),
    [
        *[(param, value) for param in ("after", "before", "list") for value in ("²", "³⁴")],
        ("after", "9" * 30),
        ("list", "9" * 30),
        ("list", "٣"),
    ],
)
def test_it_reads_a_messages_keyset_or_list_that_is_not_an_id_as_none(tenants, param, value):
    message = MessageFactory(recipient_list__campaign=CampaignFactory(org=tenants.org))
    url = f"/campaigns/{message.campaign_id}/messages/"
    response = no_errors_client(tenants.admin).get(url, {param: value})
    assert response.status_code == 200
    assert message.address in response.content.decode()


@pytest.mark.parametrize("value", ["²", "abc", ""])
def test_it_answers_404_to_an_organization_switch_to_anything_but_an_id(tenants, value):
    response = no_errors_client(tenants.admin).post("/org/switch/", {"org": value})
    assert response.status_code == 404


@pytest.mark.parametrize("timestamp", ["²", "¹⁷⁶⁷²²⁵⁶⁰⁰"])
def test_it_refuses_a_sendgrid_timestamp_header_in_other_digits_unauthenticated(
    sendgrid_key, timestamp
):
    response = Client(raise_request_exception=False).post(
        webhooks.EVENTS_URL,
        "[]",
        content_type="application/json",
        HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE="c2lnbmF0dXJl",
        HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP=timestamp,
    )
    assert response.status_code == 403


@pytest.mark.parametrize("timestamp", ["soon", "²", float("inf"), 10**30, [1], {"a": 1}])
def test_it_dates_a_signed_sendgrid_event_without_a_usable_timestamp_on_arrival(
    sendgrid_key, sent_email, timestamp
):
    before = time.time()
    events = [webhooks.event(sent_email, "delivered", timestamp=timestamp)]
    assert webhooks.sendgrid_post(sendgrid_key, events).status_code == 204
    sent_email.refresh_from_db()
    assert sent_email.status == MessageStatus.DELIVERED
    assert sent_email.delivered_at.timestamp() >= before - 1


@pytest.mark.parametrize("junk", [{"event": []}, {"event": {"a": 1}}, {"email": "\x00"}])
def test_it_skips_a_signed_sendgrid_event_it_cannot_read_and_applies_the_rest(
    sendgrid_key, sent_email, junk
):
    events = [
        {**webhooks.event(sent_email, "bounce", n=1), **junk},
        webhooks.event(sent_email, "delivered", n=2),
    ]
    assert webhooks.sendgrid_post(sendgrid_key, events).status_code == 204
    sent_email.refresh_from_db()
    assert sent_email.status == MessageStatus.DELIVERED


@pytest.mark.parametrize("field", ["MessageSid", "ErrorCode", "To"])
def test_it_refuses_a_signed_twilio_callback_carrying_nul(tenants, field):
    message = MessageFactory(
        recipient_list__campaign=CampaignFactory(org=tenants.org), status="sent"
    )
    params = {**webhooks.status_params(message, "failed"), field: "SM\x00"}
    response = webhooks.twilio_post(webhooks.STATUS_URL.format(message.pk), params)
    assert response.status_code == 400
    message.refresh_from_db()
    assert message.status == MessageStatus.SENT


@pytest.mark.parametrize(
    "url",
    ["/contacts/?q=%00", "/opt-outs/?q=%00", "/campaigns/?search=%00", "/campaigns/?status=a%00"],
)
def test_it_answers_400_to_a_nul_in_a_search_box(tenants, url):
    assert no_errors_client(tenants.viewer).get(url).status_code == 400


def test_it_answers_400_to_a_nul_in_the_messages_search_or_a_form_field(tenants):
    campaign = CampaignFactory(org=tenants.org)
    client = no_errors_client(tenants.admin)
    assert client.get(f"/campaigns/{campaign.pk}/messages/?q=a%00").status_code == 400
    assert client.get(f"/campaigns/{campaign.pk}/messages/?error=%00").status_code == 400
    assert client.post("/opt-outs/new/", {"address": "+12125550100\x00"}).status_code == 400


def test_it_answers_400_to_a_nul_in_a_session_cookie_before_looking_it_up(tenants):
    client = Client(raise_request_exception=False)
    client.cookies["sessionid"] = "abcdefgh\x00ijkl"
    assert client.get("/accounts/login/").status_code == 400


@pytest.mark.parametrize("digits", [19, 30])
def test_it_answers_404_to_an_id_beyond_bigint_in_any_url(tenants, digits):
    client = no_errors_client(tenants.admin)
    for route in all_routes():
        if not route.ours or not any(p.endswith("_id") for p in route.params):
            continue
        kwargs = {p: "1" if p.endswith("_id") else "sms" for p in route.params}
        path = reverse(route.name, kwargs=kwargs).replace("/1/", f"/{'9' * digits}/")
        for method in ("get", "post"):
            status = getattr(client, method)(path).status_code
            assert status == 404, f"{method.upper()} {path} → {status}"


def test_it_answers_404_to_a_signed_twilio_callback_for_an_id_beyond_bigint(tenants):
    message = MessageFactory(recipient_list__campaign=CampaignFactory(org=tenants.org))
    path = webhooks.STATUS_URL.format("9" * 30)
    response = webhooks.twilio_post(path, webhooks.status_params(message, "delivered"))
    assert response.status_code == 404


def test_it_takes_only_ascii_digits_as_message_ids_to_retry(tenants):
    campaign = CampaignFactory(org=tenants.org, status=Status.COMPLETE_WITH_ERRORS)
    failed = MessageFactory(recipient_list__campaign=campaign, status="failed")
    arabic = str(failed.pk).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    response = no_errors_client(tenants.admin).post(
        f"/campaigns/{campaign.pk}/retry/", {"message": [arabic, "9" * 30]}, follow=True
    )
    assert b"Pick the messages to retry." in response.content
    assert Message.objects.get(pk=failed.pk).status == MessageStatus.FAILED


# ---------------------------------------------------------------- dates past what UTC can hold

FAR = ["9999-12-31T23:59", "0001-01-01T00:00", "1999-12-31T23:59"]


def csv_upload() -> SimpleUploadedFile:
    return SimpleUploadedFile(
        "patients.csv", b"timezone,phone_number,name\r\nAmerica/New_York,+13125550100,Ana\r\n"
    )


@pytest.mark.parametrize("start", FAR)
def test_it_refuses_an_outreach_start_outside_the_years_2000_to_2999(tenants, start):
    campaign = CampaignFactory(org=tenants.org)
    response = no_errors_client(tenants.admin).post(
        f"/campaigns/{campaign.pk}/lists/new/", {"file": csv_upload(), "start_at": start}
    )
    assert response.status_code == 200
    assert "Give a date between the years 2000 and 2999." in response.content.decode()
    assert not RecipientList.objects.exists()


def test_it_refuses_an_outreach_end_in_the_year_9999(tenants):
    campaign = CampaignFactory(org=tenants.org)
    response = no_errors_client(tenants.admin).post(
        f"/campaigns/{campaign.pk}/lists/new/",
        {
            "file": csv_upload(),
            "start_at": "2031-03-02T09:30",
            "has_end": "on",
            "end_at": "9999-12-31T23:59",
        },
    )
    assert "Give a date between the years 2000 and 2999." in response.content.decode()
    assert not RecipientList.objects.exists()


@pytest.mark.parametrize("run_at", FAR)
def test_it_refuses_to_schedule_a_campaign_outside_the_years_2000_to_2999(tenants, run_at):
    campaign = CampaignFactory(org=tenants.org)
    RecipientListFactory(campaign=campaign)
    client = no_errors_client(tenants.admin)
    response = client.post(f"/campaigns/{campaign.pk}/schedule/", {"run_at": run_at})
    assert response.status_code == 200
    assert "Give a date between the years 2000 and 2999." in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.status == Status.READY and campaign.run_at is None
    assert client.get(f"/campaigns/{campaign.pk}/").status_code == 200
