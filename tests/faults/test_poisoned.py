"""Real Celery workers and beat with one campaign whose stored schedule cannot be read, beside
healthy campaigns of its own organization and of another: the tick goes on for them."""

from types import SimpleNamespace

import pytest
from django.db import connection

from campaigns.models import Campaign, Channel
from delivery.models import Message, MessageStatus
from tests.faults.conftest import ALL_WEEK, assert_invariants, start_campaign, wait_until_settled
from tests.faults.test_workers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_poisoned_campaign_beside_healthy_ones_stops_only_itself(
    tenants, sandbox, celery_processes
):
    sandbox.configure(delivered_ratio=1.0, stop_reply_ratio=0.0)
    poisoned = start_campaign(tenants, n=10, rate=20)
    email = start_campaign(tenants, channel=Channel.EMAIL, n=10, rate=50)
    other = SimpleNamespace(org=tenants.other_org, admin=tenants.other_admin)
    theirs = start_campaign(other, n=10, rate=20)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE campaigns_campaign SET schedule = %s WHERE id = %s",
            ['{"0": ["9am", "17:00"]}', poisoned.pk],
        )
    celery_processes.worker("w1")
    celery_processes.beat()
    for healthy in (theirs, email):
        wait_until_settled(healthy)
    wait_for(lambda: Campaign.objects.filter(pk=poisoned.pk, error_at__isnull=False).exists())
    sandbox.wait_idle(10)
    for healthy, rate in ((theirs, 20), (email, 50)):
        assert_invariants(healthy, sandbox, rate=rate)
        statuses = set(healthy.messages.values_list("status", flat=True))
        assert statuses == {MessageStatus.DELIVERED}
    statuses = set(poisoned.messages.values_list("status", flat=True))
    assert statuses == {MessageStatus.QUEUED}
    assert not sandbox.requests_per_message().keys() & set(
        poisoned.messages.values_list("id", flat=True)
    )
    # Mended, it goes on by itself, and the mark is gone.
    Campaign.objects.filter(pk=poisoned.pk).update(schedule=ALL_WEEK)
    wait_until_settled(poisoned)
    sandbox.wait_idle(10)
    assert_invariants(poisoned, sandbox, rate=20)
    poisoned.refresh_from_db()
    assert (poisoned.error, poisoned.error_at) == ("", None)
    assert not Message.objects.exclude(status=MessageStatus.DELIVERED).exists()
