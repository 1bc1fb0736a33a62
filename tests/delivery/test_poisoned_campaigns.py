"""One campaign's or list's bad data never stops the tick for the others, and its pages say so."""

import logging
from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, connection, transaction

from campaigns.models import Campaign, Channel, Status
from delivery.dispatch import dispatch_tick
from delivery.models import MessageStatus
from recipients.models import ListStatus, RecipientList
from tests.conftest import client_for
from tests.factories import CampaignFactory, MessageFactory, RecipientListFactory, UserFactory

ALL_WEEK = {str(d): ["00:00", "23:59"] for d in range(7)}
NOW = datetime(2026, 3, 3, 12, tzinfo=UTC)


def running(org, *, channel=Channel.SMS, lists=1, name="Campaign"):
    org.quiet_hours = False
    org.save()
    campaign = CampaignFactory(
        org=org, channel=channel, schedule=ALL_WEEK, status=Status.IN_PROGRESS, name=name
    )
    for _ in range(lists):
        recipient_list = RecipientListFactory(
            campaign=campaign, start_at=NOW - timedelta(days=1), status=ListStatus.IN_PROGRESS
        )
        address = "+1212555{:04d}" if channel == Channel.SMS else "p{}@example.com"
        for i in range(2):
            MessageFactory(
                recipient_list=recipient_list,
                contact__address=address.format(recipient_list.pk * 10 + i),
                eligible_at=recipient_list.start_at,
            )
    return campaign


def tick(now=NOW):
    released: list[int] = []
    report = dispatch_tick(now, send=released.extend)
    return set(released), report


def poison_schedule(campaign):
    # What no form writes, and the database cannot check: an open time that does not parse.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE campaigns_campaign SET schedule = %s WHERE id = %s",
            ['{"0": ["9am", "17:00"], "1": ["09:00", "17:00"]}', campaign.pk],
        )


@pytest.fixture
def poisoned(tenants):
    """A running campaign of one organization whose stored schedule cannot be read, beside a
    healthy one of another organization and a healthy email campaign of the first."""
    bad = running(tenants.org, name="Poisoned")
    healthy = running(tenants.other_org, name="Healthy")
    email = running(tenants.org, channel=Channel.EMAIL, name="Email")
    poison_schedule(bad)
    return bad, healthy, email


def test_a_campaign_that_cannot_be_read_stops_only_itself(poisoned, caplog):
    bad, healthy, email = poisoned
    with caplog.at_level(logging.ERROR, logger="delivery.dispatch"):
        released, report = tick()
    theirs = set(healthy.messages.values_list("id", flat=True))
    ours = set(email.messages.values_list("id", flat=True))
    assert theirs | ours <= released
    assert not released & set(bad.messages.values_list("id", flat=True))
    bad.refresh_from_db()
    assert bad.error_at == NOW and bad.error.startswith("ValueError")
    assert bad.stopped_by_error and not Campaign.objects.get(pk=healthy.pk).error_at
    [logged] = [r for r in caplog.records if "stopped by an error" in r.getMessage()]
    assert logged.levelno == logging.ERROR and logged.exc_info is not None
    assert any("error in campaign" in line for line in report.lines())


def test_it_logs_a_failure_once_keeps_when_it_began_and_clears_it_once_fixed(poisoned, caplog):
    bad, _, _ = poisoned
    tick()
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="delivery.dispatch"):
        tick(NOW + timedelta(seconds=2))
    assert not caplog.records
    bad.refresh_from_db()
    assert bad.error_at == NOW
    Campaign.objects.filter(pk=bad.pk).update(schedule=ALL_WEEK)
    released, _ = tick(NOW + timedelta(seconds=4))
    assert set(bad.messages.values_list("id", flat=True)) & released
    bad.refresh_from_db()
    assert (bad.error, bad.error_at) == ("", None)


@pytest.fixture
def staff(tenants):
    return UserFactory(username="operator", is_staff=True, is_superuser=True)


def test_a_poisoned_campaigns_pages_answer_and_say_that_sending_is_stopped(
    tenants, poisoned, staff
):
    bad, _, _ = poisoned
    tick()
    recipient_list = bad.recipient_lists.first()
    client = client_for(tenants.viewer)
    pages = {
        f"/campaigns/{bad.pk}/": "Sending is stopped for this campaign because of an error",
        f"/campaigns/{bad.pk}/live/": "Sending is stopped for this campaign",
        f"/lists/{recipient_list.pk}/": "Sending is stopped for its campaign",
        f"/campaigns/{bad.pk}/messages/": "",
        f"/campaigns/{bad.pk}/messages.csv": "",
        "/campaigns/": "Stopped by an error",
        "/": "Stopped by an error",
    }
    for url, says in pages.items():
        response = client.get(url)
        assert response.status_code == 200, url
        if says:
            assert says in b"".join(response).decode(), url
    page = client.get(f"/campaigns/{bad.pk}/").content.decode()
    assert "The weekly schedule stored for this campaign cannot be read." in page
    admin_page = client_for(staff).get(f"/admin/campaigns/campaign/{bad.pk}/change/")
    assert admin_page.status_code == 200 and "ValueError" in admin_page.content.decode()
    # Another organization sees none of it.
    assert "Poisoned" not in client_for(tenants.other_viewer).get("/").content.decode()


def test_a_list_that_cannot_be_read_stops_only_that_list(tenants, on_postgres):
    bad = running(tenants.org, lists=2, name="Year 10000")
    healthy = running(tenants.other_org, name="Healthy")
    poisoned, sound = bad.recipient_lists.order_by("id")
    with connection.cursor() as cursor:
        # What the database now refuses (below), as a database upgraded without it would hold;
        # the rows' pending foreign-key checks first, or PostgreSQL refuses to alter the table.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            "ALTER TABLE recipients_recipientlist DROP CONSTRAINT recipient_list_end_in_range"
        )
        # 9999-12-31 23:59 in New York: year 10000 in UTC, stored, never read back by psycopg.
        cursor.execute(
            "UPDATE recipients_recipientlist SET end_at = '10000-01-01 04:59:00+00' WHERE id = %s",
            [poisoned.pk],
        )
    released, _ = tick()
    assert set(healthy.messages.values_list("id", flat=True)) <= released
    assert set(sound.messages.values_list("id", flat=True)) <= released
    assert not set(poisoned.messages.values_list("id", flat=True)) & released
    error_at, error = RecipientList.objects.filter(pk=poisoned.pk).values_list("error_at", "error")[
        0
    ]
    assert error_at == NOW and "DataError" in error
    assert not Campaign.objects.filter(pk=bad.pk, error_at__isnull=False).exists()


def test_the_database_refuses_dates_whose_instant_no_page_could_read(tenants, on_postgres):
    campaign = running(tenants.org)
    for sql in (
        "UPDATE recipients_recipientlist SET end_at = '10000-01-01 04:59:00+00'",
        "UPDATE recipients_recipientlist SET start_at = '0001-01-01 00:00:00+00 BC'",
        "UPDATE campaigns_campaign SET run_at = '10000-01-01 04:59:00+00'",
    ):
        with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
    assert campaign.recipient_lists.get().end_at is None
    assert MessageStatus.QUEUED in set(campaign.messages.values_list("status", flat=True))
