"""Provider webhooks: signatures checked with the providers' SDK helpers, events applied once."""

import base64
import json
import time
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.test import Client
from twilio.request_validator import RequestValidator

from delivery.models import InboundMessage, Message, MessageStatus, ReplyKind, Suppression
from recipients.models import Contact
from tests.factories import CampaignFactory, MessageFactory, SmsSenderFactory

STATUS_URL = "/webhooks/twilio/status/{}/"
INBOUND_URL = "/webhooks/twilio/inbound/"
EVENTS_URL = "/webhooks/sendgrid/events/"


def twilio_post(path: str, params: dict, *, token: str | None = None, tamper: bool = False):
    url = settings.PUBLIC_BASE_URL + path
    signature = RequestValidator(token or settings.TWILIO_AUTH_TOKEN).compute_signature(url, params)
    if tamper:
        params = {**params, "MessageStatus": "delivered", "Body": "changed"}
    return Client().post(
        path,
        urlencode(params),
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=signature,
    )


def status_params(message: Message, status: str, **extra: str) -> dict:
    return {
        "AccountSid": settings.TWILIO_ACCOUNT_SID,
        "MessageSid": message.provider_id,
        "MessageStatus": status,
        "To": message.address,
        **extra,
    }


@pytest.fixture
def sent_sms(tenants):
    campaign = CampaignFactory(org=tenants.org)
    return MessageFactory(
        recipient_list__campaign=campaign, status="sent", provider_id="SM" + "a" * 32
    )


def test_it_moves_a_message_forward_on_a_signed_callback(sent_sms):
    assert (
        twilio_post(
            STATUS_URL.format(sent_sms.pk), status_params(sent_sms, "delivered")
        ).status_code
        == 204
    )
    sent_sms.refresh_from_db()
    assert sent_sms.status == MessageStatus.DELIVERED and sent_sms.delivered_at


@pytest.mark.parametrize("forgery", ["missing", "wrong_token", "altered"])
def test_it_refuses_a_callback_that_fails_verification(sent_sms, forgery):
    path, params = STATUS_URL.format(sent_sms.pk), status_params(sent_sms, "failed")
    if forgery == "missing":
        response = Client().post(path, params)
    elif forgery == "wrong_token":
        response = twilio_post(path, params, token="not-our-token")
    else:
        response = twilio_post(path, status_params(sent_sms, "failed"), tamper=True)
    assert response.status_code == 403
    sent_sms.refresh_from_db()
    assert sent_sms.status == MessageStatus.SENT


def test_a_late_sent_never_undoes_delivered_and_repeats_are_harmless(sent_sms):
    path = STATUS_URL.format(sent_sms.pk)
    for status in ["delivered", "sent", "delivered", "queued", "undelivered"]:
        assert twilio_post(path, status_params(sent_sms, status)).status_code == 204
    sent_sms.refresh_from_db()
    assert sent_sms.status == MessageStatus.DELIVERED


def test_it_stores_error_codes_and_suppresses_on_21610(sent_sms):
    params = status_params(sent_sms, "failed", ErrorCode="21610", ErrorMessage="Unsubscribed")
    twilio_post(STATUS_URL.format(sent_sms.pk), params)
    sent_sms.refresh_from_db()
    assert (sent_sms.status, sent_sms.error_code) == ("failed", "21610")
    assert Suppression.objects.get(address=sent_sms.address).reason == "provider_opt_out"


def test_a_callback_for_another_organizations_message_changes_nothing(tenants, sent_sms):
    other = MessageFactory(
        recipient_list__campaign=CampaignFactory(org=tenants.other_org),
        status="sent",
        provider_id="SM" + "b" * 32,
    )
    # Our message's id with the other message's SID, and the other way round.
    twilio_post(STATUS_URL.format(sent_sms.pk), status_params(other, "failed"))
    twilio_post(STATUS_URL.format(other.pk), status_params(sent_sms, "failed"))
    assert set(Message.objects.values_list("status", flat=True)) == {"sent"}


def test_an_unknown_message_is_reconciled_by_its_callback(sent_sms):
    Message.objects.filter(pk=sent_sms.pk).update(status="unknown", provider_id="")
    twilio_post(STATUS_URL.format(sent_sms.pk), status_params(sent_sms, "delivered"))
    sent_sms.refresh_from_db()
    assert (sent_sms.status, sent_sms.provider_id) == ("delivered", "SM" + "a" * 32)


# ---------------------------------------------------------------- inbound SMS


def inbound(sender_number: str, from_number: str, body: str, sid: str = "SMin1"):
    return twilio_post(
        INBOUND_URL,
        {
            "AccountSid": settings.TWILIO_ACCOUNT_SID,
            "MessageSid": sid,
            "From": from_number,
            "To": sender_number,
            "Body": body,
        },
    )


@pytest.mark.parametrize(
    "body",
    [
        "STOP",
        "stop",
        " Stop ",
        "STOPALL",
        "stop all",
        "UNSUBSCRIBE",
        "cancel",
        "END",
        "quit",
        "REVOKE",
        "OPTOUT",
        "opt out",
        "Opt-Out".replace("-", " "),
    ],
)
def test_every_opt_out_keyword_suppresses_the_number(tenants, body):
    sender = SmsSenderFactory(org=tenants.org, phone_number="+14155550100")
    assert inbound(sender.phone_number, "+12125550123", body).status_code == 200
    assert Suppression.objects.get(org=tenants.org, address="+12125550123").reason == "stop_reply"
    assert InboundMessage.objects.get().kind == ReplyKind.OPT_OUT


@pytest.mark.parametrize(
    "body",
    [
        "STOP please",
        "please stop",
        "stop texting me",
        "Unsubscribe me",
        "Opt-Out",
        "\uff33\uff34\uff2f\uff30",  # full-width STOP
        "STOP \U0001f6d1",
        "STOP\u200b",
        "\u200bstop\u200d!",
        "Stop!!!",
        "I want to unsubscribe",
        "Don\u2019t text me",
        "remove me from this list",
    ],
)
def test_a_short_message_built_around_an_opt_out_keyword_suppresses_the_number(tenants, body):
    sender = SmsSenderFactory(org=tenants.org, phone_number="+14155550100")
    inbound(sender.phone_number, "+12125550123", body)
    assert InboundMessage.objects.get().kind == ReplyKind.OPT_OUT
    assert Suppression.objects.get(org=tenants.org, address="+12125550123").reason == "stop_reply"


@pytest.mark.parametrize(
    "body",
    [
        "Stop by tomorrow at 3?",
        "Can you stop by the clinic on Monday",
        "I will end up late, is 4pm ok?",
        "Please don't stop reminding me, it helps a lot with my schedule",
    ],
)
def test_a_sentence_that_merely_contains_a_keyword_stays_a_reply(tenants, body):
    sender = SmsSenderFactory(org=tenants.org, phone_number="+14155550100")
    inbound(sender.phone_number, "+12125550123", body)
    assert InboundMessage.objects.get().kind == ReplyKind.REPLY
    assert not Suppression.objects.exists()


def test_an_inbound_sms_is_recorded_only_in_the_organization_owning_the_number(tenants):
    sender = SmsSenderFactory(org=tenants.org, phone_number="+14155550100")
    # Another organization's sender on a Messaging Service that the number is part of.
    SmsSenderFactory(org=tenants.other_org, phone_number="", messaging_service_sid="MG" + "1" * 32)
    twilio_post(
        INBOUND_URL,
        {
            "AccountSid": settings.TWILIO_ACCOUNT_SID,
            "MessageSid": "SMin1",
            "From": "+12125550123",
            "To": sender.phone_number,
            "MessagingServiceSid": "MG" + "1" * 32,
            "Body": "STOP",
        },
    )
    assert list(InboundMessage.objects.values_list("org", flat=True)) == [tenants.org.pk]
    assert list(Suppression.objects.values_list("org", flat=True)) == [tenants.org.pk]
    assert not Contact.objects.filter(org=tenants.other_org).exists()


@pytest.mark.parametrize("body", ["START", "unstop", "Yes"])
def test_every_opt_in_keyword_lifts_the_suppression(tenants, body):
    sender = SmsSenderFactory(org=tenants.org, phone_number="+14155550100")
    inbound(sender.phone_number, "+12125550123", "STOP", sid="SM1")
    inbound(sender.phone_number, "+12125550123", body, sid="SM2")
    assert not Suppression.objects.exists()


@pytest.mark.parametrize("body", ["HELP", "info"])
def test_help_is_recorded_not_acted_on(tenants, body):
    sender = SmsSenderFactory(org=tenants.org, phone_number="+14155550100")
    inbound(sender.phone_number, "+12125550123", body)
    assert InboundMessage.objects.get().kind == ReplyKind.HELP
    assert not Suppression.objects.exists()


def test_a_reply_lands_on_the_timeline_of_the_campaign_that_last_wrote(tenants, admin_client):
    sender = SmsSenderFactory(org=tenants.org, phone_number="+14155550100", inbox_name="Front desk")
    message = MessageFactory(
        recipient_list__campaign=CampaignFactory(org=tenants.org, sender=sender, name="Flu"),
        status="delivered",
        sent_at="2026-03-03T12:00:00Z",
    )
    inbound(sender.phone_number, message.address, "Can I come <b>Tuesday</b>?")
    reply = InboundMessage.objects.get()
    assert (reply.campaign, reply.inbox, reply.kind) == (message.campaign, "Front desk", "reply")
    page = admin_client.get(f"/contacts/{message.contact_id}/").content.decode()
    assert "Can I come &lt;b&gt;Tuesday&lt;/b&gt;?" in page and "Flu" in page
    assert page.index("Can I come") < page.index("Campaign message")  # newest first


def test_a_redelivered_inbound_webhook_is_recorded_once(tenants):
    sender = SmsSenderFactory(org=tenants.org, phone_number="+14155550100")
    inbound(sender.phone_number, "+12125550123", "Thanks", sid="SMsame")
    inbound(sender.phone_number, "+12125550123", "Thanks", sid="SMsame")
    assert InboundMessage.objects.count() == 1


def test_an_unsigned_inbound_sms_changes_nothing(tenants):
    SmsSenderFactory(org=tenants.org, phone_number="+14155550100")
    response = Client().post(
        INBOUND_URL, {"From": "+12125550123", "To": "+14155550100", "Body": "STOP"}
    )
    assert response.status_code == 403
    assert not Suppression.objects.exists()


# ---------------------------------------------------------------- SendGrid events


@pytest.fixture
def sendgrid_key(settings):
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    settings.SENDGRID_WEBHOOK_PUBLIC_KEY = base64.b64encode(public).decode()
    return private


def sendgrid_post(private_key, events, *, timestamp=None, tamper=False):
    body = json.dumps(events)
    timestamp = str(timestamp or int(time.time()))
    signature = base64.b64encode(
        private_key.sign((timestamp + body).encode(), ec.ECDSA(hashes.SHA256()))
    ).decode()
    if tamper:
        body = body.replace("delivered", "bounce")
    return Client().post(
        EVENTS_URL,
        body,
        content_type="application/json",
        HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE=signature,
        HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP=timestamp,
    )


@pytest.fixture
def sent_email(tenants):
    campaign = CampaignFactory(org=tenants.org, channel="email")
    return MessageFactory(
        recipient_list__campaign=campaign,
        status="sent",
        provider_id="xmsgid1",
        address="ana@example.com",
        contact__address="ana@example.com",
    )


def event(message, kind, n=1, **extra):
    return {
        "event": kind,
        "email": message.address,
        "timestamp": int(time.time()),
        "sg_event_id": f"ev-{kind}-{n}",
        "sg_message_id": f"{message.provider_id}.filter0001.1.2",
        "message_id": str(message.pk),
        **extra,
    }


def test_it_applies_signed_sendgrid_events(sendgrid_key, sent_email):
    events = [
        event(sent_email, "processed"),
        event(sent_email, "delivered"),
        event(sent_email, "open"),
        event(sent_email, "click", url="https://x"),
    ]
    assert sendgrid_post(sendgrid_key, events).status_code == 204
    sent_email.refresh_from_db()
    assert sent_email.status == "delivered" and sent_email.opened_at and sent_email.clicked_at


@pytest.mark.parametrize("forgery", ["altered", "old", "unsigned", "other_key"])
def test_it_refuses_forged_sendgrid_events(sendgrid_key, sent_email, forgery):
    events = [event(sent_email, "delivered")]
    if forgery == "altered":
        response = sendgrid_post(sendgrid_key, events, tamper=True)
    elif forgery == "old":
        response = sendgrid_post(sendgrid_key, events, timestamp=int(time.time()) - 3600)
    elif forgery == "unsigned":
        response = Client().post(EVENTS_URL, json.dumps(events), content_type="application/json")
    else:
        response = sendgrid_post(ec.generate_private_key(ec.SECP256R1()), events)
    assert response.status_code == 403
    sent_email.refresh_from_db()
    assert sent_email.status == "sent"


def test_a_redelivered_event_is_applied_once(sendgrid_key, sent_email):
    # The same sg_event_id twice; the open is cleared in between to prove the second is skipped.
    sendgrid_post(sendgrid_key, [event(sent_email, "open", 7)])
    sent_email.refresh_from_db()
    assert sent_email.opened_at is not None
    Message.objects.filter(pk=sent_email.pk).update(opened_at=None)
    sendgrid_post(sendgrid_key, [event(sent_email, "open", 7)])
    sent_email.refresh_from_db()
    assert sent_email.opened_at is None


@pytest.mark.parametrize(
    ("kind", "extra", "status", "reason"),
    [
        (
            "bounce",
            {"type": "bounce", "reason": "550 5.1.1", "status": "5.1.1"},
            "bounced",
            "bounce",
        ),
        ("dropped", {"reason": "Bounced Address"}, "failed", "bounce"),
        ("dropped", {"reason": "Invalid"}, "failed", "invalid"),
        ("spamreport", {}, "sent", "spam_report"),
        ("unsubscribe", {}, "sent", "unsubscribe"),
    ],
)
def test_it_suppresses_on_bounces_spam_reports_and_unsubscribes(
    sendgrid_key, sent_email, kind, extra, status, reason
):
    sendgrid_post(sendgrid_key, [event(sent_email, kind, **extra)])
    sent_email.refresh_from_db()
    assert sent_email.status == status
    assert Suppression.objects.get(address="ana@example.com").reason == reason


def test_deferred_then_delivered(sendgrid_key, sent_email):
    sendgrid_post(sendgrid_key, [event(sent_email, "deferred")])
    sent_email.refresh_from_db()
    assert sent_email.status == "deferred"
    sendgrid_post(sendgrid_key, [event(sent_email, "delivered")])
    sent_email.refresh_from_db()
    assert sent_email.status == "delivered"


def test_an_event_naming_another_organizations_message_changes_nothing(
    tenants, sendgrid_key, sent_email
):
    other = MessageFactory(
        recipient_list__campaign=CampaignFactory(org=tenants.other_org, channel="email"),
        status="sent",
        provider_id="xmsgid2",
        address="bob@example.com",
        contact__address="bob@example.com",
    )
    forged = {**event(other, "bounce", type="bounce"), "message_id": str(sent_email.pk)}
    sendgrid_post(sendgrid_key, [forged])
    assert set(Message.objects.values_list("status", flat=True)) == {"sent"}
    assert not Suppression.objects.exists()


def test_a_callback_signed_over_the_url_with_its_port_is_accepted(sent_sms, settings):
    # Twilio has signed some callbacks over the URL with an explicit port; the SDK's validate()
    # accepts both forms, and the fast single-signature check must not lose that.
    settings.PUBLIC_BASE_URL = "https://hooks.example.org"
    path = STATUS_URL.format(sent_sms.pk)
    params = status_params(sent_sms, "delivered")
    signed_url = f"https://hooks.example.org:443{path}"
    signature = RequestValidator(settings.TWILIO_AUTH_TOKEN).compute_signature(signed_url, params)
    response = Client().post(
        path,
        urlencode(params),
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=signature,
    )
    assert response.status_code == 204
    sent_sms.refresh_from_db()
    assert sent_sms.status == MessageStatus.DELIVERED


def test_webhooks_skip_the_browser_middleware_and_unknown_ones_are_not_found(sent_sms):
    response = twilio_post(STATUS_URL.format(sent_sms.pk), status_params(sent_sms, "delivered"))
    assert response.status_code == 204
    # No session, CSRF cookie or page policy for a provider's machine-to-machine call.
    assert not response.cookies
    assert "Content-Security-Policy" not in response.headers
    assert "X-Frame-Options" not in response.headers
    assert Client().get("/accounts/login/").headers["Content-Security-Policy"]
    assert Client().post("/webhooks/nobody/").status_code == 404
    assert Client().get(STATUS_URL.format(sent_sms.pk)).status_code == 405
