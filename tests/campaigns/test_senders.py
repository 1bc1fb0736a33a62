import pytest
from django.db import IntegrityError, transaction

from campaigns.models import ActivityEntry, Sender
from tests.conftest import free_port
from tests.factories import CampaignFactory, SmsSenderFactory


def test_it_stores_an_sms_number_in_e164_with_the_default_throughput(tenants, admin_client):
    page = admin_client.get("/senders/new/sms/").content.decode()
    assert 'name="rate_limit" value="1"' in page
    response = admin_client.post(
        "/senders/new/sms/",
        {
            "label": "Front desk",
            "phone_number": "(212) 555-0123",
            "inbox_name": "Reception",
            "rate_limit": 1,
            "rate_period": "second",
        },
        follow=True,
    )
    assert "Sender “Front desk” created." in response.content.decode()
    sender = Sender.objects.get()
    assert (sender.org, sender.channel, sender.phone_number) == (tenants.org, "sms", "+12125550123")
    assert "1 message per second" in response.content.decode()
    assert ActivityEntry.objects.get().verb == "created sender"


def test_it_refuses_a_number_that_is_not_valid(tenants, admin_client):
    response = admin_client.post(
        "/senders/new/sms/",
        {"label": "X", "phone_number": "+1 555 12", "rate_limit": 1, "rate_period": "second"},
    )
    assert "“+1 555 12” is not a valid phone number." in response.content.decode()
    assert not Sender.objects.exists()


def test_it_accepts_a_messaging_service_instead_of_a_number(tenants, admin_client):
    sid = "MG" + "a" * 32
    admin_client.post(
        "/senders/new/sms/",
        {"label": "Pool", "messaging_service_sid": sid, "rate_limit": 10, "rate_period": "second"},
    )
    assert Sender.objects.get().address == sid
    response = admin_client.post(
        "/senders/new/sms/",
        {
            "label": "Bad",
            "messaging_service_sid": "MG123",
            "rate_limit": 1,
            "rate_period": "second",
        },
    )
    assert "A Messaging Service SID is MG and 32 more characters." in response.content.decode()


def test_it_needs_a_number_or_a_messaging_service(tenants, admin_client):
    response = admin_client.post(
        "/senders/new/sms/", {"label": "Empty", "rate_limit": 1, "rate_period": "second"}
    )
    assert "Give a phone number or a Twilio Messaging Service SID." in response.content.decode()


def test_it_creates_an_email_sender_with_a_faster_default(tenants, admin_client):
    page = admin_client.get("/senders/new/email/").content.decode()
    assert 'name="rate_limit" value="100"' in page
    admin_client.post(
        "/senders/new/email/",
        {
            "label": "News",
            "from_name": "Acme",
            "from_email": "news@acme.example",
            "reply_to": "help@acme.example",
            "rate_limit": 20,
            "rate_period": "minute",
        },
    )
    sender = Sender.objects.get()
    assert sender.channel == "email" and sender.messages_per_second == 20 / 60
    response = admin_client.post(
        "/senders/new/email/", {"label": "No from", "rate_limit": 1, "rate_period": "second"}
    )
    assert "An email sender needs a from address." in response.content.decode()


def test_it_confirms_before_deleting_a_sender(tenants, admin_client):
    sender = SmsSenderFactory(org=tenants.org)
    page = admin_client.get(f"/senders/{sender.pk}/delete/").content.decode()
    assert "cannot be undone" in page and Sender.objects.exists()
    admin_client.post(f"/senders/{sender.pk}/delete/")
    assert not Sender.objects.exists()


def test_it_refuses_to_delete_a_sender_campaigns_use(tenants, admin_client):
    campaign = CampaignFactory(org=tenants.org, name="Flu shots")
    response = admin_client.post(f"/senders/{campaign.sender_id}/delete/")
    page = response.content.decode()
    assert "cannot be deleted while campaigns use it" in page and "Flu shots" in page
    assert Sender.objects.filter(pk=campaign.sender_id).exists()


def test_it_shows_viewers_senders_without_edit_controls(tenants, viewer_client):
    SmsSenderFactory(org=tenants.org, label="Main line")
    SmsSenderFactory(org=tenants.other_org, label="Their line")
    page = viewer_client.get("/senders/").content.decode()
    assert "Main line" in page and "Their line" not in page
    assert "New SMS sender" not in page and "Edit" not in page


# ---------------------------------------------------------------- one organization per identity


def sms_sender_post(client, **fields):
    data = {"label": "Line", "rate_limit": 1, "rate_period": "second", **fields}
    return client.post("/senders/new/sms/", data)


@pytest.mark.parametrize(
    ("field", "held", "typed"),
    [
        ("phone_number", "+14155550100", "(415) 555-0100"),
        ("messaging_service_sid", "MG" + "b" * 32, "MG" + "b" * 32),
    ],
)
def test_it_refuses_a_number_or_service_another_organization_holds_without_naming_it(
    tenants, admin_client, field, held, typed
):
    SmsSenderFactory(org=tenants.other_org, **{"phone_number": "", field: held})
    page = sms_sender_post(admin_client, **{field: typed}).content.decode()
    assert "already registered as a sender" in page
    assert tenants.other_org.name not in page and "globex" not in page.lower()
    assert Sender.objects.filter(org=tenants.org).count() == 0


def test_it_refuses_the_same_number_twice_in_one_organization(tenants, admin_client):
    SmsSenderFactory(org=tenants.org, phone_number="+14155550100")
    page = sms_sender_post(admin_client, phone_number="+14155550100").content.decode()
    assert "already registered as a sender" in page
    assert Sender.objects.count() == 1


def test_editing_a_sender_keeps_its_own_number(tenants, admin_client):
    sender = SmsSenderFactory(org=tenants.org, phone_number="+14155550100")
    admin_client.post(
        f"/senders/{sender.pk}/edit/",
        {
            "label": "Renamed",
            "phone_number": "+14155550100",
            "rate_limit": 2,
            "rate_period": "second",
        },
    )
    sender.refresh_from_db()
    assert (sender.label, sender.rate_limit) == ("Renamed", 2)


def test_the_database_holds_one_sender_per_number_whatever_the_caller(tenants):
    SmsSenderFactory(org=tenants.org, phone_number="+14155550100")
    with pytest.raises(IntegrityError), transaction.atomic():
        SmsSenderFactory(org=tenants.other_org, phone_number="+14155550100")
    # Blank numbers (a sender on a Messaging Service only) are not an identity.
    SmsSenderFactory(org=tenants.org, phone_number="", messaging_service_sid="MG" + "c" * 32)
    SmsSenderFactory(org=tenants.other_org, phone_number="", messaging_service_sid="MG" + "d" * 32)


# ---------------------------------------------------------------- live mode: the account owns it


@pytest.fixture
def live_twilio(settings, sandbox):
    """Live mode with the real Twilio SDK pointed at the sandbox's account."""
    settings.DELIVERY_BACKEND = "live"
    sandbox.configure(twilio_numbers=["+14155550100"], twilio_services=["MG" + "e" * 32])
    return sandbox


def test_live_mode_accepts_a_number_and_a_service_the_twilio_account_owns(
    tenants, admin_client, live_twilio
):
    sms_sender_post(admin_client, phone_number="+14155550100")
    sms_sender_post(admin_client, label="Pool", messaging_service_sid="MG" + "e" * 32)
    assert Sender.objects.filter(org=tenants.org).count() == 2


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"phone_number": "+14155550199"}, "+14155550199 is not a number of the Twilio account"),
        (
            {"messaging_service_sid": "MG" + "f" * 32},
            "is not a Messaging Service of the Twilio account",
        ),
    ],
)
def test_live_mode_refuses_a_sender_the_twilio_account_does_not_own(
    tenants, admin_client, live_twilio, fields, message
):
    page = sms_sender_post(admin_client, **fields).content.decode()
    assert message in page
    assert not Sender.objects.exists()


def test_live_mode_says_so_when_twilio_cannot_be_reached(tenants, admin_client, settings):
    settings.DELIVERY_BACKEND = "live"
    settings.TWILIO_API_BASE_URL = f"http://127.0.0.1:{free_port()}"
    page = sms_sender_post(admin_client, phone_number="+14155550100").content.decode()
    assert "Twilio could not be reached to check this sender" in page
    assert not Sender.objects.exists()


def test_live_mode_does_not_ask_twilio_again_when_an_edit_keeps_the_number(
    tenants, admin_client, settings
):
    sender = SmsSenderFactory(org=tenants.org, phone_number="+14155550100")
    settings.DELIVERY_BACKEND = "live"
    # Nothing listens there: a check with Twilio would refuse the edit.
    settings.TWILIO_API_BASE_URL = f"http://127.0.0.1:{free_port()}"
    admin_client.post(
        f"/senders/{sender.pk}/edit/",
        {
            "label": "Renamed",
            "phone_number": "(415) 555-0100",
            "rate_limit": 1,
            "rate_period": "second",
        },
    )
    sender.refresh_from_db()
    assert sender.label == "Renamed"
