"""Real Celery workers and beats against the sandbox: nothing lost, nothing sent twice."""

import signal
import time

import pytest

from campaigns.models import Campaign
from campaigns.services import campaign_stop
from delivery.models import Message, MessageStatus
from tests.faults.conftest import (
    accepted_per_message,
    assert_invariants,
    start_campaign,
    wait_until_settled,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_workers_and_two_beats_send_each_message_once(tenants, sandbox, celery_processes):
    sandbox.configure(delivered_ratio=1.0, stop_reply_ratio=0.0)
    campaign = start_campaign(tenants, n=150, rate=40)
    for name in ("w1", "w2"):
        celery_processes.worker(name)
    celery_processes.beat("beat1")
    celery_processes.beat("beat2")
    wait_until_settled(campaign)
    sandbox.wait_idle(10)
    assert_invariants(campaign, sandbox, rate=40)
    assert set(sandbox.requests_per_message().values()) == {1}
    assert Message.objects.filter(campaign=campaign, status=MessageStatus.DELIVERED).count() == 150


def wait_for(predicate, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail("the condition never came true")


def test_a_worker_killed_between_claim_and_send_loses_nothing(tenants, sandbox, celery_processes):
    sandbox.configure(delivered_ratio=1.0, stop_reply_ratio=0.0)
    # A slow sender: claims wait in the worker for their throttle slot before being handed over.
    campaign = start_campaign(tenants, n=24, rate=4)
    first = celery_processes.worker("w1")
    celery_processes.beat()
    waiting = Message.objects.filter(
        campaign=campaign, status=MessageStatus.SENDING, handed_at__isnull=True
    )
    wait_for(lambda: waiting.exists() and Message.objects.filter(handed_at__isnull=False).exists())
    celery_processes.kill(first, signal.SIGKILL)
    # Claimed but not handed over: these must go out later, exactly once.
    never_handed = set(
        Message.objects.filter(campaign=campaign, handed_at__isnull=True).values_list(
            "id", flat=True
        )
    )
    celery_processes.worker("w2")
    wait_until_settled(campaign, timeout=120)
    sandbox.wait_idle(10)
    assert_invariants(campaign, sandbox, rate=4)
    statuses = dict(Message.objects.filter(pk__in=never_handed).values_list("id", "status"))
    assert set(statuses.values()) == {MessageStatus.DELIVERED}
    assert len(never_handed) >= 10


def test_a_worker_killed_between_send_and_record_never_sends_twice(
    tenants, sandbox, celery_processes
):
    # Every provider call takes 3 s, so the worker dies while the provider has the request.
    sandbox.configure(
        delivered_ratio=1.0, stop_reply_ratio=0.0, fault_mode="slow", slow_seconds=3.0
    )
    campaign = start_campaign(tenants, n=10, rate=10)
    first = celery_processes.worker("w1")
    celery_processes.beat()
    handed = Message.objects.filter(campaign=campaign, handed_at__isnull=False)
    wait_for(handed.exists)
    in_flight = set(handed.values_list("id", flat=True))
    celery_processes.kill(first, signal.SIGKILL)
    sandbox.configure(fault_mode=None)
    celery_processes.worker("w2")
    wait_until_settled(campaign, timeout=120)
    sandbox.wait_idle(10)
    assert_invariants(campaign, sandbox)
    # What was in flight went once: the provider's callback reconciled it, or it is "unknown".
    statuses = dict(Message.objects.filter(pk__in=in_flight).values_list("id", "status"))
    assert set(statuses.values()) <= {MessageStatus.DELIVERED, MessageStatus.UNKNOWN}
    assert all(accepted_per_message(sandbox)[mid] <= 1 for mid in in_flight)


def test_stop_while_claims_are_orphaned_cancels_them_within_the_claim_lease(
    tenants, sandbox, celery_processes
):
    sandbox.configure(delivered_ratio=1.0, stop_reply_ratio=0.0)
    # Claims go back (here: cancelled) five seconds, plus a tick, after their worker died.
    celery_processes.env["DISPATCH_CLAIM_LEASE_SECONDS"] = "5"
    campaign = start_campaign(tenants, n=24, rate=4)
    first = celery_processes.worker("w1")
    celery_processes.beat()
    claimed = Message.objects.filter(
        campaign=campaign, status=MessageStatus.SENDING, handed_at__isnull=True
    )
    wait_for(lambda: claimed.exists() and Message.objects.filter(handed_at__isnull=False).exists())
    celery_processes.kill(first, signal.SIGKILL)
    orphans = set(claimed.values_list("id", flat=True))
    stopped_at = time.time()
    campaign_stop(campaign=Campaign.objects.get(pk=campaign.pk), user=tenants.admin)
    # The beat ticks on through another worker; nothing of the campaign may stay queued.
    celery_processes.worker("w2")
    pending = Message.objects.filter(
        campaign=campaign, status__in=[MessageStatus.QUEUED, MessageStatus.SENDING]
    )
    wait_for(lambda: not pending.exists(), timeout=60)
    sandbox.wait_idle(10)
    assert orphans
    statuses = set(Message.objects.filter(pk__in=orphans).values_list("status", flat=True))
    assert statuses == {MessageStatus.CANCELLED}
    late = [r for r in sandbox.received if r["at"] > stopped_at and set(r["message_ids"]) & orphans]
    assert not late
    assert_invariants(campaign, sandbox, rate=4)
