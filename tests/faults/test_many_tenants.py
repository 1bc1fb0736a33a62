"""Many organizations sending at once through the ready queues, real workers and beat: each
message once, each sender's rate kept in every sliding second, nothing stuck, a worker killed
mid-run included."""

import signal

import pytest
from django.utils import timezone

from campaigns.models import Channel
from campaigns.services import campaign_run
from delivery.models import Message, MessageStatus
from tests.conftest import assert_provider_kept_rate
from tests.factories import (
    CampaignFactory,
    MembershipFactory,
    MessageFactory,
    OrganizationFactory,
    RecipientListFactory,
    SmsSenderFactory,
)
from tests.faults.conftest import (
    ALL_WEEK,
    SANDBOX_LAG,
    accepted_per_message,
    assert_invariants,
    wait_until_settled,
)
from tests.faults.test_workers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

# Messages a second of each organization's sender, and how many each sends.
RATES = [1, 2, 3, 5, 8, 13]
PER_TENANT = 12


def tenant_campaign(rate: int, index: int):
    org = OrganizationFactory(quiet_hours=False)
    admin = MembershipFactory(org=org, role="admin").user
    campaign = CampaignFactory(
        org=org,
        channel=Channel.SMS,
        schedule=ALL_WEEK,
        sender=SmsSenderFactory(org=org, rate_limit=rate),
    )
    recipient_list = RecipientListFactory(campaign=campaign, start_at=timezone.now())
    for i in range(PER_TENANT):
        address = f"+1212{index:03d}{i:04d}"
        MessageFactory(recipient_list=recipient_list, contact__address=address)
    campaign_run(campaign=campaign, user=admin)
    return campaign


def test_many_organizations_at_once_each_message_once_each_rate_kept_across_a_killed_worker(
    sandbox, celery_processes
):
    sandbox.configure(delivered_ratio=1.0, stop_reply_ratio=0.0)
    campaigns = [tenant_campaign(rate, i) for i, rate in enumerate(RATES)]
    first = celery_processes.worker("w1")
    celery_processes.beat()
    wait_for(
        lambda: Message.objects.filter(status=MessageStatus.DELIVERED).count() >= len(RATES),
        timeout=60,
    )
    celery_processes.kill(first, signal.SIGKILL)
    celery_processes.worker("w2")
    for campaign in campaigns:
        wait_until_settled(campaign, timeout=120)
    sandbox.wait_idle(10)
    for campaign, rate in zip(campaigns, RATES, strict=True):
        assert_invariants(campaign, sandbox)
        ours = set(campaign.messages.values_list("id", flat=True))
        arrivals = [
            record["at"]
            for record in sandbox.received
            for message_id in record["message_ids"]
            if message_id in ours
        ]
        assert_provider_kept_rate(arrivals, rate, lag=SANDBOX_LAG)
    # Every delivered message reached the provider exactly once; the rest (the killed worker's
    # hand-overs whose request may or may not have left: "unknown") at most once.
    accepted = accepted_per_message(sandbox)
    statuses = dict(Message.objects.values_list("id", "status"))
    assert {accepted[mid] for mid, s in statuses.items() if s == MessageStatus.DELIVERED} == {1}
    assert set(statuses.values()) <= {MessageStatus.DELIVERED, MessageStatus.UNKNOWN}, statuses
    assert all(accepted[mid] <= 1 for mid in statuses)
