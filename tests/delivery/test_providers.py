"""The provider adapters, through the real Twilio and SendGrid SDKs, against the sandbox."""

import base64
import socket
import time

import pytest

from delivery.providers import get_email_provider, get_sms_provider
from delivery.providers.base import Attachment, OutboundEmail, OutboundSms, ResultKind
from delivery.providers.sendgrid_email import SendGridEmailProvider, plan_requests
from delivery.providers.twilio_sms import TwilioSmsProvider
from delivery.sandbox import (
    SandboxConfig,
    SandboxProvider,
    generate_sendgrid_keypair,
    render_personalization,
)

ACCOUNT_SID = "AC" + "a1" * 16
AUTH_TOKEN = "test-auth-token"
API_KEY = "SG.test-key"
SENDER = "+15005550001"


@pytest.fixture(scope="module")
def sandbox():
    pem, _ = generate_sendgrid_keypair()
    server = SandboxProvider(
        twilio_auth_token=AUTH_TOKEN,
        twilio_account_sid=ACCOUNT_SID,
        sendgrid_api_key=API_KEY,
        sendgrid_private_key_pem=pem,
        sendgrid_webhook_url="http://127.0.0.1:9/unused",
        twilio_inbound_url="http://127.0.0.1:9/unused",
        config=SandboxConfig(callbacks=False),
    ).start()
    yield server
    server.stop()


@pytest.fixture
def fresh(sandbox):
    """The module's sandbox, emptied and back to its default behaviour."""
    sandbox.reset()
    sandbox.config = SandboxConfig(callbacks=False)
    return sandbox


def sms(message_id: int, to: str, sender: str = SENDER, **extra) -> OutboundSms:
    return OutboundSms(
        message_id=message_id,
        to=to,
        sender=sender,
        body=f"Hello {message_id}",
        status_callback=f"https://outreach.example/webhooks/twilio/status/{message_id}/",
        **extra,
    )


def email(message_id: int, **extra) -> OutboundEmail:
    values = {
        "to": f"person{message_id}@example.org",
        "to_name": f"Person {message_id}",
        "from_email": "clinic@example.com",
        "from_name": "Acme Clinic",
        "reply_to": "desk@example.com",
        "subject": f"Your visit, Person {message_id}",
        "html": (
            f"<html><body><p>Dear Person {message_id},</p>\n<p>See you soon.</p>\n"
            f'<a href="https://outreach.example/u/{message_id}/">Unsubscribe</a></body></html>'
        ),
        "text": f"Dear Person {message_id},\nSee you soon.\n",
        "unsubscribe_url": f"https://outreach.example/u/{message_id}/",
    }
    return OutboundEmail(message_id=message_id, **{**values, **extra})


def twilio(sandbox: SandboxProvider, timeout: float = 5) -> TwilioSmsProvider:
    return TwilioSmsProvider(ACCOUNT_SID, AUTH_TOKEN, sandbox.url, timeout)


def sendgrid(sandbox: SandboxProvider, timeout: float = 5) -> SendGridEmailProvider:
    return SendGridEmailProvider(API_KEY, sandbox.url, timeout)


def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# ---------------------------------------------------------------- SMS


def test_it_sends_each_sms_once_and_returns_results_in_input_order(fresh):
    batch = [sms(i, f"+1415555{i:04d}") for i in range(1, 41)]
    results = twilio(fresh).send(batch)

    assert [r.message_id for r in results] == list(range(1, 41))
    assert {r.kind for r in results} == {ResultKind.ACCEPTED}
    assert all(r.provider_id.startswith("SM") and len(r.provider_id) == 34 for r in results)
    assert fresh.requests_per_message() == {i: 1 for i in range(1, 41)}


def test_it_passes_sender_callback_and_validity_to_twilio(fresh):
    provider = twilio(fresh)
    provider.send(
        [
            sms(1, "+14155550101", validity_period=600),
            sms(2, "+14155550102", sender="MG" + "b2" * 16),
        ]
    )

    by_id = {r["message_ids"][0]: r["payload"] for r in fresh.received}
    assert by_id[1]["From"] == SENDER
    assert by_id[1]["ValidityPeriod"] == "600"
    assert by_id[1]["StatusCallback"].endswith("/webhooks/twilio/status/1/")
    assert by_id[2]["MessagingServiceSid"] == "MG" + "b2" * 16
    assert "From" not in by_id[2] and "ValidityPeriod" not in by_id[2]


@pytest.mark.parametrize(
    ("suffix", "kind", "code"),
    [
        ("0021610", ResultKind.OPTED_OUT, "21610"),
        ("0021211", ResultKind.FAILED, "21211"),
        ("0021614", ResultKind.FAILED, "21614"),
        ("0021408", ResultKind.FAILED, "21408"),
    ],
)
def test_it_classifies_twilio_refusals(fresh, suffix, kind, code):
    [result] = twilio(fresh).send([sms(7, "+1415" + suffix)])

    assert (result.kind, result.error_code, result.provider_id) == (kind, code, "")
    assert result.error_message and not result.error_message.startswith("Unable to")
    assert fresh.requests_per_message() == {7: 1}


def test_it_reports_twilio_throttling_with_retry_after(fresh):
    fresh.configure(fault_mode="429")
    results = twilio(fresh).send([sms(1, "+14155550101"), sms(2, "+14155550102")])

    assert [(r.kind, r.error_code, r.retry_after) for r in results] == [
        (ResultKind.THROTTLED, "20429", 1.0)
    ] * 2


def test_it_reports_a_twilio_server_error_as_unknown(fresh):
    fresh.configure(fault_mode="500")
    [result] = twilio(fresh).send([sms(1, "+14155550101")])

    assert (result.kind, result.error_code) == (ResultKind.UNKNOWN, "20500")
    assert fresh.requests_per_message() == {1: 1}


@pytest.mark.parametrize("fault", ["slow", "timeout"])
def test_it_reports_a_twilio_timeout_as_unknown(fresh, fault):
    fresh.configure(fault_mode=fault, slow_seconds=1.0)
    started = time.monotonic()
    [result] = twilio(fresh, timeout=0.3).send([sms(1, "+14155550101")])

    assert time.monotonic() - started < 0.9
    assert (result.kind, result.error_code) == (ResultKind.UNKNOWN, "timeout")
    # The sandbox got it (and, when only slow, accepted it): resending would duplicate it.
    wait_for(lambda: fresh.requests_per_message() == {1: 1})


def test_it_sends_in_parallel_when_the_provider_is_slow(fresh):
    fresh.configure(fault_mode="slow", slow_seconds=0.25)
    provider = TwilioSmsProvider(ACCOUNT_SID, AUTH_TOKEN, fresh.url, 5, max_workers=8)
    started = time.monotonic()
    results = provider.send([sms(i, f"+1415555{i:04d}") for i in range(1, 18)])

    # One call first, then 16 at 8 at a time: about 3 round trips rather than 17.
    assert time.monotonic() - started < 1.5
    assert [r.message_id for r in results] == list(range(1, 18))
    assert {r.kind for r in results} == {ResultKind.ACCEPTED}
    provider.close()


def test_it_reports_a_refused_connection_as_unknown():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider = TwilioSmsProvider(ACCOUNT_SID, AUTH_TOKEN, f"http://127.0.0.1:{port}", 1)
    [result] = provider.send([sms(1, "+14155550101")])

    assert (result.kind, result.error_code) == (ResultKind.UNKNOWN, "connection")


def test_it_reports_wrong_twilio_credentials_as_failed(fresh):
    provider = TwilioSmsProvider(ACCOUNT_SID, "wrong-token", fresh.url, 5)
    [result] = provider.send([sms(1, "+14155550101")])

    assert (result.kind, result.error_code) == (ResultKind.FAILED, "20003")


# ---------------------------------------------------------------- email


def test_it_sends_emails_in_requests_of_at_most_1000_recipients(fresh):
    batch = [email(i) for i in range(1, 2502)]
    results = sendgrid(fresh).send(batch)

    sizes = [len(r["payload"]["personalizations"]) for r in fresh.received]
    assert sorted(sizes) == [501, 1000, 1000]
    assert fresh.requests_per_message() == {i: 1 for i in range(1, 2502)}
    assert [r.message_id for r in results] == list(range(1, 2502))
    assert {r.kind for r in results} == {ResultKind.ACCEPTED}
    x_message_ids = {r["provider_id"] for r in fresh.received}
    assert {r.provider_id for r in results} == x_message_ids


def test_it_puts_only_our_id_in_custom_args_and_adds_one_click_unsubscribe(fresh):
    sendgrid(fresh).send([email(1), email(2)])

    [request] = fresh.received
    for personalization, message_id in zip(
        request["payload"]["personalizations"], (1, 2), strict=True
    ):
        assert personalization["custom_args"] == {"message_id": str(message_id)}
        assert personalization["headers"] == {
            "List-Unsubscribe": f"<https://outreach.example/u/{message_id}/>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        assert personalization["to"] == [
            {"email": f"person{message_id}@example.org", "name": f"Person {message_id}"}
        ]
    assert request["payload"]["from"] == {"email": "clinic@example.com", "name": "Acme Clinic"}
    assert request["payload"]["reply_to"] == {"email": "desk@example.com"}


def test_it_gives_every_recipient_exactly_their_own_content(fresh):
    shared = "<p>A paragraph every recipient reads, long enough to matter.</p>\n" * 400
    batch = [
        email(i, html=f"<div><p>Hi Person {i}</p>\n{shared}<a href='https://x.example/{i}'>x</a>")
        for i in range(1, 51)
    ]
    # Unique content beyond SendGrid's 10,000-byte substitution cap must still arrive intact.
    batch.append(email(51, html=f"<p>{'personal ' * 2000}</p>"))
    sendgrid(fresh).send(batch)

    assert len(shared) > 20_000
    assert sorted(len(r["payload"]["personalizations"]) for r in fresh.received) == [1, 50]
    rendered = {}
    for record in fresh.received:
        for index, message_id in enumerate(record["message_ids"]):
            rendered[message_id] = render_personalization(record["payload"], index)
    for sent in batch:
        got = rendered[sent.message_id]
        assert (got["subject"], got["html"], got["text"]) == (sent.subject, sent.html, sent.text)


def test_it_sends_identical_content_without_substitutions(fresh):
    batch = [email(i, html="<p>Same for all</p>", text="Same for all") for i in range(1, 4)]
    sendgrid(fresh).send(batch)

    [request] = fresh.received
    assert request["payload"]["content"] == [
        {"type": "text/plain", "value": "Same for all"},
        {"type": "text/html", "value": "<p>Same for all</p>"},
    ]
    assert not any("substitutions" in p for p in request["payload"]["personalizations"])


def test_it_sends_attachments_and_separates_different_senders(fresh):
    leaflet = Attachment("leaflet.pdf", "application/pdf", b"%PDF-1.4 leaflet")
    batch = [email(1, attachments=(leaflet,)), email(2, from_email="other@example.com")]
    results = sendgrid(fresh).send(batch)

    assert {r.kind for r in results} == {ResultKind.ACCEPTED}
    by_id = {r["message_ids"][0]: r["payload"] for r in fresh.received}
    assert by_id[1]["attachments"] == [
        {
            "content": base64.b64encode(b"%PDF-1.4 leaflet").decode(),
            "type": "application/pdf",
            "filename": "leaflet.pdf",
            "disposition": "attachment",
        }
    ]
    assert by_id[2]["from"]["email"] == "other@example.com" and "attachments" not in by_id[2]


def test_it_plans_no_request_over_the_limits():
    batch = [email(i, html=f"<p>{i}</p>\n" * 150) for i in range(1, 1202)]
    for request in plan_requests(batch):
        assert len(request.body["personalizations"]) <= 1000
        for personalization in request.body["personalizations"]:
            substitutions = personalization.get("substitutions", {})
            assert len(substitutions) <= 100
            assert sum(len(k) + len(v) for k, v in substitutions.items()) <= 10_000


def test_it_reports_sendgrid_throttling_with_retry_after(fresh):
    fresh.configure(fault_mode="429")
    results = sendgrid(fresh).send([email(1), email(2)])

    assert {(r.kind, r.error_code) for r in results} == {(ResultKind.THROTTLED, "429")}
    assert all(r.retry_after is not None and 0 <= r.retry_after <= 2 for r in results)


def test_it_reports_a_sendgrid_server_error_as_unknown(fresh):
    fresh.configure(fault_mode="500")
    results = sendgrid(fresh).send([email(1), email(2)])

    assert {(r.kind, r.error_code) for r in results} == {(ResultKind.UNKNOWN, "500")}
    assert fresh.requests_per_message() == {1: 1, 2: 1}


@pytest.mark.parametrize("fault", ["slow", "timeout"])
def test_it_reports_a_sendgrid_timeout_as_unknown(fresh, fault):
    fresh.configure(fault_mode=fault, slow_seconds=1.0)
    started = time.monotonic()
    results = sendgrid(fresh, timeout=0.3).send([email(1), email(2)])

    assert time.monotonic() - started < 0.9
    assert {(r.kind, r.error_code) for r in results} == {(ResultKind.UNKNOWN, "timeout")}
    wait_for(lambda: fresh.requests_per_message() == {1: 1, 2: 1})


def test_it_reports_sendgrid_refusals_as_failed(fresh):
    [bad_address] = sendgrid(fresh).send([email(1, to="not-an-address")])
    [bad_key] = SendGridEmailProvider("SG.wrong", fresh.url, 5).send([email(2)])

    assert (bad_address.kind, bad_address.error_code) == (ResultKind.FAILED, "400")
    assert "valid address" in bad_address.error_message
    assert fresh.requests_per_message() == {1: 1}
    assert (bad_key.kind, bad_key.error_code) == (ResultKind.FAILED, "401")


def test_it_reports_a_refused_email_connection_as_unknown():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    [result] = SendGridEmailProvider(API_KEY, f"http://127.0.0.1:{port}", 1).send([email(1)])

    assert (result.kind, result.error_code) == (ResultKind.UNKNOWN, "connection")


# ---------------------------------------------------------------- factories


def test_it_builds_providers_from_settings(fresh, settings):
    settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.TWILIO_API_BASE_URL = fresh.url
    settings.SENDGRID_API_KEY = API_KEY
    settings.SENDGRID_API_HOST = fresh.url
    settings.PROVIDER_TIMEOUT_SECONDS = 3

    assert get_sms_provider() is get_sms_provider()
    assert get_email_provider().client.client.timeout == 3
    [sent_sms] = get_sms_provider().send([sms(1, "+14155550101", sender="MG" + "c3" * 16)])
    [sent_email] = get_email_provider().send([email(2)])

    assert (sent_sms.kind, sent_email.kind) == (ResultKind.ACCEPTED, ResultKind.ACCEPTED)
    assert fresh.requests_per_message() == {1: 1, 2: 1}
