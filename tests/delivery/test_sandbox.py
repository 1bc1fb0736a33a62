"""The sandbox provider: what it accepts, and the signed callbacks it posts back."""

import json
import os
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import pytest
import requests
import sendgrid
from python_http_client.exceptions import BadRequestsError
from sendgrid.helpers.eventwebhook import EventWebhook
from twilio.request_validator import RequestValidator

from delivery.providers.base import OutboundEmail, OutboundSms, ResultKind
from delivery.providers.sendgrid_email import SendGridEmailProvider
from delivery.providers.twilio_sms import TwilioSmsProvider
from delivery.sandbox import (
    SandboxConfig,
    SandboxProvider,
    email_outcome,
    generate_sendgrid_keypair,
    load_or_create_keypair,
    message_id_from_callback,
    sms_outcome,
)

ACCOUNT_SID = "AC" + "d4" * 16
AUTH_TOKEN = "sandbox-test-token"
SENDER = "+15005550001"


class Receiver:
    """A tiny webhook endpoint that records every POST (and can fail the first few)."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.fail_next = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    failing = receiver.fail_next > 0
                    receiver.fail_next -= failing
                    receiver.posts.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body}
                    )
                self.send_response(503 if failing else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def under(self, path: str) -> list[dict]:
        return [p for p in self.posts if p["path"].startswith(path)]

    def twilio_forms(self, path: str) -> list[dict]:
        return [dict(parse_qsl(p["body"].decode())) for p in self.under(path)]

    def sendgrid_events(self) -> list[dict]:
        return [e for p in self.under("/sendgrid/") for e in json.loads(p["body"])]


@pytest.fixture(scope="module")
def keys():
    return generate_sendgrid_keypair()


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def sandbox(receiver, keys):
    server = SandboxProvider(
        twilio_auth_token=AUTH_TOKEN,
        sendgrid_private_key_pem=keys[0],
        sendgrid_webhook_url=f"{receiver.url}/sendgrid/events/",
        twilio_inbound_url=f"{receiver.url}/twilio/inbound/",
        config=SandboxConfig(callback_delay=0, stop_reply_ratio=0, seed=7),
    ).start()
    yield server
    server.stop()


def send_sms(sandbox: SandboxProvider, receiver: Receiver, ids, sender: str = SENDER):
    provider = TwilioSmsProvider(ACCOUNT_SID, AUTH_TOKEN, sandbox.url, 5)
    batch = [
        OutboundSms(i, f"+1415555{i:04d}", sender, f"Hi {i}", f"{receiver.url}/status/{i}/")
        for i in ids
    ]
    return provider.send(batch)


def send_email(sandbox: SandboxProvider, ids):
    provider = SendGridEmailProvider("SG.any", sandbox.url, 5)
    batch = [
        OutboundEmail(
            message_id=i,
            to=f"p{i}@example.org",
            to_name="",
            from_email="clinic@example.com",
            from_name="Clinic",
            reply_to="",
            subject="Reminder",
            html=f'<p>Hello {i}</p>\n<a href="https://clinic.example/book/{i}">Book</a>',
            text=f"Hello {i}",
            unsubscribe_url=f"https://outreach.example/u/{i}/",
        )
        for i in ids
    ]
    return provider.send(batch)


# ---------------------------------------------------------------- Twilio


def test_it_posts_signed_status_callbacks_in_order(sandbox, receiver):
    sandbox.configure(delivered_ratio=1.0)
    [result] = send_sms(sandbox, receiver, [1])
    assert sandbox.wait_idle()

    posts = receiver.under("/status/1/")
    forms = receiver.twilio_forms("/status/1/")
    assert [f["MessageStatus"] for f in forms] == ["queued", "sent", "delivered"]
    validator = RequestValidator(AUTH_TOKEN)
    for post, form in zip(posts, forms, strict=True):
        signature = post["headers"]["X-Twilio-Signature"]
        assert validator.validate(receiver.url + post["path"], form, signature)
        assert form["MessageSid"] == result.provider_id == form["SmsSid"]
        assert (form["AccountSid"], form["From"], form["To"]) == (
            ACCOUNT_SID,
            SENDER,
            "+14155550001",
        )
    assert not RequestValidator("another-token").validate(
        receiver.url + posts[0]["path"], forms[0], posts[0]["headers"]["X-Twilio-Signature"]
    )


def test_it_reports_undelivered_and_failed_messages_with_error_codes(sandbox, receiver):
    sandbox.configure(delivered_ratio=0, undelivered_ratio=1.0)
    send_sms(sandbox, receiver, [1])
    sandbox.configure(undelivered_ratio=0, failed_ratio=1.0)
    send_sms(sandbox, receiver, [2])
    assert sandbox.wait_idle()

    undelivered, failed = receiver.twilio_forms("/status/1/"), receiver.twilio_forms("/status/2/")
    assert [f["MessageStatus"] for f in undelivered] == ["queued", "sent", "undelivered"]
    assert undelivered[-1]["ErrorCode"] in {"30003", "30005", "30006"}
    assert [f["MessageStatus"] for f in failed] == ["queued", "failed"]
    assert failed[-1]["ErrorCode"] == "30008"


def test_it_follows_the_seeded_outcome_of_each_message(sandbox, receiver):
    ids = range(1, 81)
    send_sms(sandbox, receiver, ids)
    assert sandbox.wait_idle()

    outcomes = [sms_outcome(sandbox.config, i) for i in ids]
    for i, expected in zip(ids, outcomes, strict=True):
        assert receiver.twilio_forms(f"/status/{i}/")[-1]["MessageStatus"] == expected
    # Reproducible with the same seed, different with another; roughly the configured mix.
    assert outcomes == [sms_outcome(SandboxConfig(seed=7), i) for i in ids]
    assert outcomes != [sms_outcome(SandboxConfig(seed=8), i) for i in ids]
    assert 60 <= outcomes.count("delivered") < 80


def test_it_replies_stop_when_asked_to(sandbox, receiver):
    sandbox.configure(delivered_ratio=1.0, stop_reply_ratio=1.0)
    send_sms(sandbox, receiver, [1, 2], sender="MG" + "e5" * 16)
    assert sandbox.wait_idle()

    posts = receiver.under("/twilio/inbound/")
    forms = receiver.twilio_forms("/twilio/inbound/")
    assert sorted(f["From"] for f in forms) == ["+14155550001", "+14155550002"]
    for post, form in zip(posts, forms, strict=True):
        assert (form["Body"], form["To"], form["AccountSid"]) == (
            "STOP",
            "+15005550006",
            ACCOUNT_SID,
        )
        assert form["MessagingServiceSid"] == "MG" + "e5" * 16
        assert form["MessageSid"].startswith("SM")
        signature = post["headers"]["X-Twilio-Signature"]
        assert RequestValidator(AUTH_TOKEN).validate(receiver.url + post["path"], form, signature)


def test_it_posts_an_inbound_message_from_the_control_api(sandbox, receiver):
    answer = requests.post(
        f"{sandbox.url}/_sandbox/inbound",
        json={"from": "+14155550009", "to": SENDER, "body": "Can I move my visit?"},
        timeout=5,
    ).json()

    assert answer == {"ok": True, "webhook_status": 204}
    [form] = receiver.twilio_forms("/twilio/inbound/")
    assert (form["From"], form["To"], form["Body"]) == (
        "+14155550009",
        SENDER,
        "Can I move my visit?",
    )


def test_it_refuses_wrong_twilio_credentials(sandbox):
    response = requests.post(
        f"{sandbox.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
        data={"To": "+14155550001", "From": SENDER, "Body": "x"},
        auth=(ACCOUNT_SID, "wrong"),
        timeout=5,
    )

    assert response.status_code == 401
    assert response.json()["code"] == 20003
    assert sandbox.received == []


def test_it_retries_a_callback_the_receiver_could_not_take(sandbox, receiver):
    receiver.fail_next = 1
    sandbox.configure(delivered_ratio=0, failed_ratio=1.0)
    send_sms(sandbox, receiver, [1])
    assert sandbox.wait_idle()

    statuses = [f["MessageStatus"] for f in receiver.twilio_forms("/status/1/")]
    assert statuses == ["queued", "queued", "failed"]


# ---------------------------------------------------------------- SendGrid


def test_it_posts_signed_batched_sendgrid_events(sandbox, receiver, keys):
    sandbox.configure(delivered_ratio=1.0, open_ratio=1.0, click_ratio=1.0)
    results = send_email(sandbox, range(1, 6))
    assert sandbox.wait_idle()

    webhook = EventWebhook(keys[1])
    for post in receiver.under("/sendgrid/events/"):
        headers = post["headers"]
        assert webhook.verify_signature(
            post["body"].decode(),
            headers["X-Twilio-Email-Event-Webhook-Signature"],
            headers["X-Twilio-Email-Event-Webhook-Timestamp"],
        )
        assert not webhook.verify_signature(
            post["body"].decode() + " ",
            headers["X-Twilio-Email-Event-Webhook-Signature"],
            headers["X-Twilio-Email-Event-Webhook-Timestamp"],
        )
    events = receiver.sendgrid_events()
    assert len(receiver.under("/sendgrid/events/")) < len(events)
    assert len({e["sg_event_id"] for e in events}) == len(events) == 20
    for i in range(1, 6):
        mine = [e for e in events if e["message_id"] == str(i)]
        assert [e["event"] for e in mine] == ["processed", "delivered", "open", "click"]
        assert all(e["email"] == f"p{i}@example.org" for e in mine)
        assert all(e["sg_message_id"].startswith(results[0].provider_id + ".") for e in mine)
        assert all(isinstance(e["timestamp"], int) for e in mine)
        assert mine[-1]["url"] == f"https://clinic.example/book/{i}"


def test_it_reports_bounces_drops_and_deferrals(sandbox, receiver):
    sandbox.configure(delivered_ratio=0, bounce_ratio=1.0)
    send_email(sandbox, [1])
    sandbox.configure(bounce_ratio=0, failed_ratio=1.0)
    send_email(sandbox, [2])
    sandbox.configure(failed_ratio=0)
    send_email(sandbox, [3])
    assert sandbox.wait_idle()

    final = {e["message_id"]: e for e in receiver.sendgrid_events() if e["event"] != "processed"}
    assert (final["1"]["event"], final["1"]["status"], final["1"]["type"]) == (
        "bounce",
        "5.1.1",
        "bounce",
    )
    assert (final["2"]["event"], final["2"]["reason"]) == ("dropped", "Bounced Address")
    assert final["3"]["event"] == "deferred"


def test_it_refuses_more_than_1000_personalizations(sandbox, receiver):
    client = sendgrid.SendGridAPIClient(api_key="SG.any", host=sandbox.url)
    body = {
        "personalizations": [{"to": [{"email": f"p{i}@example.org"}]} for i in range(1001)],
        "from": {"email": "clinic@example.com"},
        "subject": "Hi",
        "content": [{"type": "text/plain", "value": "Hi"}],
    }
    with pytest.raises(BadRequestsError) as refused:
        client.client.mail.send.post(request_body=body, timeout=5)

    assert "1000" in json.loads(refused.value.body)["errors"][0]["message"]
    assert [r["status"] for r in sandbox.received] == [400]
    assert sandbox.wait_idle() and receiver.posts == []


def test_it_sends_no_callbacks_when_they_are_off(sandbox, receiver):
    sandbox.configure(callbacks=False)
    send_sms(sandbox, receiver, [1])
    send_email(sandbox, [2])
    assert sandbox.wait_idle()

    assert receiver.posts == []
    assert sandbox.requests_per_message() == {1: 1, 2: 1}


# ---------------------------------------------------------------- control API and helpers


def test_it_is_configured_and_inspected_over_http(sandbox, receiver):
    send_sms(sandbox, receiver, [1])
    received = requests.get(f"{sandbox.url}/_sandbox/received", timeout=5).json()["received"]
    changed = requests.post(
        f"{sandbox.url}/_sandbox/config", json={"fault_mode": "429"}, timeout=5
    ).json()
    refused = requests.post(f"{sandbox.url}/_sandbox/config", json={"colour": "red"}, timeout=5)
    requests.post(f"{sandbox.url}/_sandbox/reset", timeout=5)

    assert [r["message_ids"] for r in received] == [[1]]
    assert changed["config"]["fault_mode"] == "429" and sandbox.config.fault_mode == "429"
    assert refused.status_code == 400 and "colour" in refused.json()["error"]
    assert sandbox.received == []
    [throttled] = send_sms(sandbox, receiver, [2])
    assert throttled.kind == ResultKind.THROTTLED


def test_it_rejects_impossible_configurations():
    with pytest.raises(ValueError):
        SandboxConfig(delivered_ratio=1.5)
    with pytest.raises(ValueError):
        SandboxConfig(fault_mode="explode")


def test_it_recovers_our_message_id_from_the_status_callback():
    assert message_id_from_callback("https://o.example/webhooks/twilio/status/42/") == 42
    assert message_id_from_callback("https://o.example/status?message_id=7") == 7
    assert message_id_from_callback("https://o.example/status/") is None


def test_it_draws_email_outcomes_from_the_seed():
    config = SandboxConfig(seed=3)
    outcomes = [email_outcome(config, i) for i in range(1000)]

    assert outcomes == [email_outcome(SandboxConfig(seed=3), i) for i in range(1000)]
    assert 850 < outcomes.count("delivered") < 950
    assert set(outcomes) == {"delivered", "bounce", "dropped", "deferred"}


def test_it_keeps_the_signing_key_in_a_private_file(tmp_path):
    path = tmp_path / "var" / "sandbox-key.pem"
    private_pem, public_key = load_or_create_keypair(path)

    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_keypair(path) == (private_pem, public_key)
    assert "BEGIN" not in public_key and EventWebhook(public_key).public_key is not None
    assert list(path.parent.iterdir()) == [path]
