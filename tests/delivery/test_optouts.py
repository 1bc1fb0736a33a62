from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from delivery.links import unsubscribe_token, unsubscribe_url
from delivery.models import Message, Suppression
from tests.conftest import client_for
from tests.factories import CampaignFactory, MessageFactory, SuppressionFactory


def email_message(org):
    return MessageFactory(
        recipient_list__campaign=CampaignFactory(org=org, channel="email"),
        address="ana@example.com",
        contact__address="ana@example.com",
    )


def test_unsubscribe_get_asks_and_changes_nothing(tenants):
    message = email_message(tenants.org)
    path = unsubscribe_url(message.pk).split("127.0.0.1:8000")[-1]
    page = Client().get(path).content.decode()
    assert "Unsubscribe?" in page and "Acme Health" in page
    assert not Suppression.objects.exists()


def test_unsubscribe_post_unsubscribes_idempotently(tenants):
    message = email_message(tenants.org)
    queued_later = MessageFactory(
        recipient_list__campaign=CampaignFactory(org=tenants.org, channel="email"),
        address="ana@example.com",
        contact=message.contact,
    )
    path = f"/u/{unsubscribe_token(message.pk)}/"
    for _ in range(2):
        response = Client(enforce_csrf_checks=True).post(path)
        assert response.status_code == 200 and b"You are unsubscribed" in response.content
    suppression = Suppression.objects.get()
    assert (suppression.org, suppression.reason) == (tenants.org, "unsubscribe")
    queued_later.refresh_from_db()
    assert queued_later.status == "opted_out"


def test_one_click_unsubscribe_works_without_cookie_or_csrf(tenants):
    message = email_message(tenants.org)
    response = Client(enforce_csrf_checks=True).post(
        f"/u/{unsubscribe_token(message.pk)}/",
        "List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    assert Suppression.objects.filter(address="ana@example.com").exists()


def test_a_link_from_an_email_sent_with_the_earlier_token_format_still_unsubscribes(tenants):
    from django.core import signing

    from delivery.links import _UNSUBSCRIBE_SALT

    message = email_message(tenants.org)
    earlier = signing.dumps(message.pk, salt=_UNSUBSCRIBE_SALT, compress=True)
    assert Client(enforce_csrf_checks=True).post(f"/u/{earlier}/").status_code == 200
    assert Suppression.objects.filter(address="ana@example.com").exists()
    forged = signing.dumps(message.pk, salt="another purpose", compress=True)
    assert Client().post(f"/u/{forged}/").status_code == 404


def test_a_forged_or_altered_token_does_nothing(tenants):
    message = email_message(tenants.org)
    token = unsubscribe_token(message.pk)
    for bad in [token[:-2] + "xx", "1", unsubscribe_token(message.pk).replace(token[:3], "eyJ")]:
        assert Client().post(f"/u/{bad}/").status_code == 404
    assert not Suppression.objects.exists()
    assert Message.objects.get().status == "queued"


def test_an_admin_adds_searches_and_removes_opt_outs(tenants, admin_client):
    response = admin_client.post("/opt-outs/new/", {"address": "(212) 555-0199"}, follow=True)
    assert "+12125550199 added to the opt-out list" in response.content.decode()
    page = admin_client.get("/opt-outs/?q=0199").content.decode()
    assert "+12125550199" in page and "Added by hand" in page
    bad = admin_client.post("/opt-outs/new/", {"address": "nope"}).content.decode()
    assert "Give a phone number" in bad
    suppression = Suppression.objects.get()
    assert (
        "Remove +12125550199"
        in admin_client.get(f"/opt-outs/{suppression.pk}/delete/").content.decode()
    )
    admin_client.post(f"/opt-outs/{suppression.pk}/delete/")
    assert not Suppression.objects.exists()


def test_an_admin_imports_existing_opt_outs(tenants, admin_client):
    upload = SimpleUploadedFile(
        "optouts.csv", b"address\n+12125550101\nBOB@example.com\n+12125550101\n"
    )
    response = admin_client.post("/opt-outs/import/", {"file": upload}, follow=True)
    assert "2 addresses added" in response.content.decode()
    assert set(Suppression.objects.values_list("address", "reason")) == {
        ("+12125550101", "csv_import"),
        ("bob@example.com", "csv_import"),
    }
    broken = SimpleUploadedFile("bad.csv", b"address\n+12125550101\nnot a number\n")
    page = admin_client.post("/opt-outs/import/", {"file": broken}).content.decode()
    assert "“bad.csv” was not imported" in page and "line 3" in page
    assert Suppression.objects.count() == 2


def test_viewers_see_opt_outs_but_cannot_change_them(tenants):
    SuppressionFactory(org=tenants.org, address="+12125550100")
    viewer = client_for(tenants.viewer)
    page = viewer.get("/opt-outs/").content.decode()
    assert "+12125550100" in page and "Add address" not in page and "Remove" not in page
    assert viewer.post("/opt-outs/new/", {"address": "+12125550101"}).status_code == 403
    assert Suppression.objects.count() == 1


def test_contacts_are_searchable_by_phone_email_or_name(tenants, admin_client):
    message = email_message(tenants.org)
    page = admin_client.get("/contacts/?q=ANA@example").content.decode()
    assert f"/contacts/{message.contact_id}/" in page
    assert "No contact matches" in admin_client.get("/contacts/?q=zed").content.decode()
    other = client_for(tenants.other_admin)
    assert other.get(f"/contacts/{message.contact_id}/").status_code == 404
