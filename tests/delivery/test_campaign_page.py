from datetime import UTC, datetime, timedelta

from django.utils import timezone

from campaigns.models import Campaign, Status
from recipients.models import ListStatus
from tests.factories import CampaignFactory, MessageFactory, RecipientListFactory

WEEKDAYS = {str(d): ["09:00", "17:00"] for d in range(5)}


def test_the_page_warns_when_the_end_date_cuts_recipients_off(tenants, admin_client):
    campaign = CampaignFactory(org=tenants.org, schedule=WEEKDAYS)
    now = timezone.now()
    recipient_list = RecipientListFactory(
        campaign=campaign, start_at=now, end_at=now + timedelta(days=1), recipient_count=50_000
    )
    for _ in range(3):
        MessageFactory(recipient_list=recipient_list)
    # 3 messages fit easily; the warning needs a queue larger than a day's windows.
    page = admin_client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "3 queued at 1 message per second" in page
    assert 'data-testid="forecast-warning"' not in page
    recipient_list.end_at = now + timedelta(minutes=1)
    recipient_list.save()
    Campaign.objects.filter(pk=campaign.pk).update(
        schedule={str(d): ["00:00", "23:59"] for d in range(7)}
    )
    tenants.org.quiet_hours = False
    tenants.org.save()
    MessageFactory.create_batch(100, recipient_list=recipient_list)
    page = admin_client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "recipients will not be contacted before the end date at 1 message/second" in page


def test_the_page_says_when_quiet_hours_narrow_the_schedule(tenants, admin_client):
    campaign = CampaignFactory(
        org=tenants.org, schedule={str(d): ["07:00", "22:00"] for d in range(5)}
    )
    page = admin_client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "Legal quiet hours" in page
    tenants.org.quiet_hours = False
    tenants.org.save()
    assert (
        "Legal quiet hours" not in admin_client.get(f"/campaigns/{campaign.pk}/").content.decode()
    )


def test_a_scheduled_campaign_says_what_it_waits_for(tenants, admin_client):
    CampaignFactory(org=tenants.org, name="Holder", status=Status.IN_PROGRESS)
    waiting = CampaignFactory(
        org=tenants.org,
        status=Status.SCHEDULED,
        run_at=timezone.now() - timedelta(minutes=5),
    )
    RecipientListFactory(campaign=waiting, status=ListStatus.SCHEDULED)
    page = admin_client.get(f"/campaigns/{waiting.pk}/").content.decode()
    assert "Waiting for “Holder” to finish" in page


def test_the_live_figures_follow_every_change_of_the_queue_and_the_failures(tenants, admin_client):
    # The groupings behind them are cached while the counts stand still: a change must show.
    campaign = CampaignFactory(
        org=tenants.org,
        status=Status.IN_PROGRESS,
        schedule={str(d): ["00:00", "23:59"] for d in range(7)},
    )
    recipient_list = RecipientListFactory(campaign=campaign, status=ListStatus.IN_PROGRESS)
    MessageFactory(recipient_list=recipient_list, timezone="Asia/Kathmandu")
    MessageFactory(recipient_list=recipient_list, status="failed", error_code="30003")

    def live() -> str:
        return admin_client.get(f"/campaigns/{campaign.pk}/live/").content.decode()

    first = live()
    assert "Asia/Kathmandu" in first and "Europe/Paris" not in first
    assert "30003" in first and "30005" not in first
    MessageFactory(recipient_list=recipient_list, timezone="Europe/Paris")
    MessageFactory.create_batch(
        2, recipient_list=recipient_list, status="undelivered", error_code="30005"
    )
    second = live()
    assert "Europe/Paris" in second
    assert second.index("30005") < second.index("30003")  # the commonest reason first


def test_times_are_shown_in_the_organizations_timezone(tenants, admin_client):
    # Administrators type dates in their organization's timezone, so pages show them that way.
    campaign = CampaignFactory(org=tenants.org)
    Campaign.objects.filter(pk=campaign.pk).update(created_at=datetime(2026, 1, 15, 15, tzinfo=UTC))
    page = admin_client.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "2026-01-15 10:00 EST" in page  # America/New_York in January
    assert "15:00 UTC" not in page
