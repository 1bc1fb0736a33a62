"""Provider faults during a run: 429 bursts, 500s, timeouts and slow answers."""

import pytest

from delivery.models import Message, MessageStatus
from tests.faults.conftest import (
    accepted_per_message,
    assert_invariants,
    start_campaign,
    wait_until_settled,
)

pytestmark = pytest.mark.django_db(transaction=True)


def run(celery_processes) -> None:
    celery_processes.worker("w1")
    celery_processes.beat()


def test_429_bursts_back_off_and_every_message_still_goes_once(tenants, sandbox, celery_processes):
    sandbox.configure(delivered_ratio=1.0, stop_reply_ratio=0.0, fault_mode="429", fault_ratio=0.3)
    campaign = start_campaign(tenants, n=60, rate=30)
    run(celery_processes)
    wait_until_settled(campaign)
    sandbox.wait_idle(10)
    assert_invariants(campaign, sandbox, rate=30)
    refused = [r for r in sandbox.received if r["status"] == 429]
    assert refused, "the fault mode produced no 429"
    # Throttled messages were queued again and delivered, each accepted exactly once.
    assert set(accepted_per_message(sandbox).values()) == {1}
    assert Message.objects.filter(campaign=campaign, status=MessageStatus.DELIVERED).count() == 60


def test_500s_leave_messages_unknown_and_never_resend_them(tenants, sandbox, celery_processes):
    sandbox.configure(delivered_ratio=1.0, stop_reply_ratio=0.0, fault_mode="500", fault_ratio=0.3)
    campaign = start_campaign(tenants, n=40, rate=40)
    run(celery_processes)
    wait_until_settled(campaign)
    sandbox.wait_idle(10)
    assert_invariants(campaign, sandbox)
    unknown = Message.objects.filter(campaign=campaign, status=MessageStatus.UNKNOWN)
    assert unknown.exists()
    per_message = sandbox.requests_per_message()
    assert all(per_message[m.pk] == 1 for m in unknown)


def test_timeouts_leave_messages_unknown_within_the_time_limit(tenants, sandbox, celery_processes):
    sandbox.configure(
        delivered_ratio=1.0,
        stop_reply_ratio=0.0,
        fault_mode="timeout",
        # Drawn per message id: at 0.4 the chance that none of 20 times out is 1 in 27,000.
        fault_ratio=0.4,
        slow_seconds=5,
    )
    celery_processes.env["PROVIDER_TIMEOUT_SECONDS"] = "1"
    campaign = start_campaign(tenants, n=20, rate=20)
    run(celery_processes)
    wait_until_settled(campaign)
    assert_invariants(campaign, sandbox)
    timed_out = Message.objects.filter(campaign=campaign, status=MessageStatus.UNKNOWN)
    assert timed_out.exists()
    assert set(timed_out.values_list("error_code", flat=True)) == {"timeout"}


def test_slow_answers_slow_nothing_down_twice(tenants, sandbox, celery_processes):
    sandbox.configure(
        delivered_ratio=1.0,
        stop_reply_ratio=0.0,
        fault_mode="slow",
        fault_ratio=0.3,
        slow_seconds=0.5,
    )
    campaign = start_campaign(tenants, n=30, rate=30)
    run(celery_processes)
    wait_until_settled(campaign)
    sandbox.wait_idle(10)
    assert_invariants(campaign, sandbox, rate=30)
    assert Message.objects.filter(campaign=campaign, status=MessageStatus.DELIVERED).count() == 30
