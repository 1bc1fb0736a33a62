"""Real Celery workers holding claimed batches while the world moves on: the window closes, the
campaign is paused. What may no longer go never reaches the provider."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.services import campaign_pause, campaign_resume
from delivery.dispatch import dispatch_tick
from delivery.models import Message, MessageStatus
from delivery.throttle import RedisThrottle
from tests.faults.conftest import assert_invariants, start_campaign, wait_until_settled

pytestmark = pytest.mark.django_db(transaction=True)


def wait_for(predicate, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail("the condition never came true")


def ready_worker(celery_processes) -> None:
    celery_processes.worker("w1")
    wait_for(lambda: " ready." in celery_processes.logs(), timeout=60)


def test_a_worker_late_past_its_window_sends_nothing_after_the_close(
    tenants, sandbox, celery_processes, redis_url
):
    sandbox.configure(delivered_ratio=1.0, stop_reply_ratio=0.0)
    campaign = start_campaign(tenants, n=10, rate=20)
    ready_worker(celery_processes)
    # The worker will wait: its sender's slots are taken for the next four seconds.
    RedisThrottle(redis_url).penalise(campaign.sender_id, 4)
    # The window (the list's end) closes a second and a half from now, while it waits.
    closes = timezone.now() + timedelta(seconds=1.5)
    campaign.recipient_lists.update(end_at=closes)
    dispatch_tick(timezone.now())
    sending = Message.objects.filter(campaign=campaign, status=MessageStatus.SENDING)
    assert sending.count() == 10
    wait_for(lambda: not sending.exists())
    assert sandbox.received == []
    queued = Message.objects.filter(campaign=campaign, status=MessageStatus.QUEUED)
    assert set(queued.values_list("eligible_at", "handed_at")) == {(closes, None)}
    # The next tick finds the end passed: not contacted, never sent.
    wait_for(lambda: timezone.now() > closes)
    dispatch_tick(timezone.now())
    statuses = set(Message.objects.filter(campaign=campaign).values_list("status", flat=True))
    assert statuses == {MessageStatus.NOT_CONTACTED}


def test_pause_during_a_claimed_batch_holds_the_rest_until_resume(
    tenants, sandbox, celery_processes
):
    sandbox.configure(delivered_ratio=1.0, stop_reply_ratio=0.0)
    # Ten claimed at once, sent one per fifth of a second: two seconds for the batch.
    campaign = start_campaign(tenants, n=10, rate=5)
    ready_worker(celery_processes)
    dispatch_tick(timezone.now())
    assert Message.objects.filter(campaign=campaign, status=MessageStatus.SENDING).count() == 10
    wait_for(lambda: len(sandbox.received) >= 1)
    campaign_pause(campaign=campaign, user=tenants.admin)
    wait_for(lambda: not Message.objects.filter(status=MessageStatus.SENDING).exists())
    # Only what was handed over before the Pause went; the rest of the batch is queued again.
    received = {i for record in sandbox.received for i in record["message_ids"]}
    handed = set(
        Message.objects.filter(campaign=campaign, handed_at__isnull=False).values_list(
            "id", flat=True
        )
    )
    queued = Message.objects.filter(campaign=campaign, status=MessageStatus.QUEUED)
    assert received == handed and queued.exists() and len(handed) + queued.count() == 10
    campaign.refresh_from_db()
    campaign_resume(campaign=campaign, user=tenants.admin)
    celery_processes.beat()
    wait_until_settled(campaign)
    sandbox.wait_idle(10)
    assert_invariants(campaign, sandbox, rate=5)
    assert set(sandbox.requests_per_message().values()) == {1}
    assert Message.objects.filter(campaign=campaign, status=MessageStatus.DELIVERED).count() == 10
