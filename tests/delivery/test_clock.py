"""`dispatch --once --now` is the whole clock: a past day replayed releases and sends as that day.

A list imported with a past start (`--allow-past`), a tick at 2026-03-08 14:00 UTC (a Sunday,
10:00 in New York just after its DST change, 23:00 in Tokyo), and the SMS as the sandbox
received it through the real Twilio SDK: its ValidityPeriod runs to 17:00 New York time that
day, whatever the wall clock says while the test runs.
"""

import io
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from campaigns.models import Channel
from campaigns.services import campaign_run
from delivery.models import Message, MessageStatus
from tests.factories import CampaignFactory, SmsSenderFactory

pytestmark = pytest.mark.django_db(transaction=True)

EVERY_DAY_9_TO_5 = {str(day): ["09:00", "17:00"] for day in range(7)}
TICK = datetime(2026, 3, 8, 14, tzinfo=UTC)
# 17:00 EDT that day is 21:00 UTC: seven hours after the tick.
SECONDS_LEFT = 7 * 3600
# Monday 09:00 in Tokyo, before the list's end (Monday 00:00 in New York, 04:00 UTC).
TOKYO_OPENS = datetime(2026, 3, 9, 0, tzinfo=UTC)


@pytest.fixture
def replayed_campaign(tenants, tmp_path):
    """An SMS campaign running, with a list for 7-9 March 2026 imported with --allow-past."""
    tenants.org.quiet_hours = False
    tenants.org.save()
    campaign = CampaignFactory(
        org=tenants.org,
        channel=Channel.SMS,
        schedule=EVERY_DAY_9_TO_5,
        sender=SmsSenderFactory(org=tenants.org, rate_limit=10),
    )
    path = tmp_path / "march.csv"
    path.write_text(
        "timezone,phone_number,name\n"
        "America/New_York,+12125550101,Ana\n"
        "Asia/Tokyo,+12125550102,Kenji\n",
        encoding="utf-8",
    )
    call_command(
        "import_recipients",
        campaign.pk,
        str(path),
        "--start",
        "2026-03-07",
        "--end",
        "2026-03-09",
        "--allow-past",
        stdout=io.StringIO(),
    )
    campaign_run(campaign=campaign, user=tenants.admin)
    return campaign


def sent_validity(sandbox, message: Message) -> int:
    (record,) = [r for r in sandbox.received if r["message_ids"] == [message.pk]]
    return int(record["payload"]["ValidityPeriod"])


def assert_released_as_on_the_tick_day(sandbox, campaign) -> None:
    new_york = Message.objects.get(campaign=campaign, timezone="America/New_York")
    tokyo = Message.objects.get(campaign=campaign, timezone="Asia/Tokyo")
    # Seconds left at the tick, less the few the tick and the batch took (never more).
    assert SECONDS_LEFT - 60 < sent_validity(sandbox, new_york) <= SECONDS_LEFT
    assert TICK <= new_york.sent_at < TICK + timedelta(minutes=1)
    assert [r["message_ids"] for r in sandbox.received] == [[new_york.pk]]
    assert (tokyo.status, tokyo.eligible_at) == (MessageStatus.QUEUED, TOKYO_OPENS)


def test_it_sends_a_replayed_day_with_the_validity_of_that_day(replayed_campaign, sandbox):
    out = io.StringIO()
    call_command("dispatch", "--once", "--now", "2026-03-08T14:00:00Z", stdout=out)
    assert f"{replayed_campaign.name}: released 1" in out.getvalue()
    assert_released_as_on_the_tick_day(sandbox, replayed_campaign)


def test_a_worker_sends_a_queued_replayed_batch_on_the_ticks_clock(
    replayed_campaign, sandbox, celery_processes
):
    celery_processes.worker()
    out = io.StringIO()
    call_command("dispatch", "--once", "--now", "2026-03-08T14:00:00Z", "--queue", stdout=out)
    assert f"{replayed_campaign.name}: released 1" in out.getvalue()
    deadline = time.monotonic() + 60
    while not Message.objects.filter(sent_at__isnull=False).exists():
        assert time.monotonic() < deadline, "the worker never sent the batch"
        time.sleep(0.1)
    assert_released_as_on_the_tick_day(sandbox, replayed_campaign)
