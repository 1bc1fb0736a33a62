"""Benchmark data, made fast: organizations and campaigns by the factories, messages by SQL.

Messages are written the way the import writes them (`recipients.services._store`): one
contact per address, every message of a list due at the list's start, variables as JSON, and
the status-count triggers on delivery_message keeping the counters exact.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime

# Recipients spread over a few timezones, as real lists are.
ZONES = ["America/New_York", "America/Chicago", "America/Los_Angeles", "Europe/London"]


@dataclass
class BenchCampaign:
    org: object
    user: object
    campaign: object
    recipient_list: object


def make_campaign(
    prefix: str,
    *,
    channel: str = "sms",
    rate: int = 1,
    schedule: dict | None = None,
    start_at: datetime | None = None,
) -> BenchCampaign:
    """A Ready campaign with an Administrator, an empty Scheduled list and no quiet hours."""
    from django.utils import timezone

    from bench.common import ALL_WEEK
    from campaigns.models import Channel
    from orgs.models import Role
    from tests.factories import (
        CampaignFactory,
        EmailSenderFactory,
        MembershipFactory,
        OrganizationFactory,
        RecipientListFactory,
        SmsSenderFactory,
    )

    slug = f"{prefix}{uuid.uuid4().hex[:10]}"
    org = OrganizationFactory(slug=slug, name=slug, quiet_hours=False)
    user = MembershipFactory(org=org, role=Role.ADMIN, user__username=slug).user
    sender_factory = SmsSenderFactory if channel == Channel.SMS else EmailSenderFactory
    campaign = CampaignFactory(
        org=org,
        channel=channel,
        sender=sender_factory(org=org, rate_limit=rate),
        schedule=schedule if schedule is not None else ALL_WEEK,
        created_by=user,
    )
    recipient_list = RecipientListFactory(
        campaign=campaign, start_at=start_at or timezone.now(), created_by=user
    )
    return BenchCampaign(org, user, campaign, recipient_list)


def add_messages(
    bench: BenchCampaign, count: int, *, status_sql: str = "'queued'", first: int = 0
) -> int:
    """Adds `count` contacts and their messages to the campaign's list, in two statements.

    `status_sql` is an SQL expression of `i` (the row number) giving each message's status.
    """
    from django.db import connection, transaction
    from django.utils import timezone

    from campaigns.models import Channel

    campaign, recipient_list = bench.campaign, bench.recipient_list
    if campaign.channel == Channel.SMS:
        # +1 415 2xx xxxx: valid E.164, and no suffix the sandbox turns into an error.
        address = "'+1415' || (2000000 + i)::text"
    else:
        address = "'person' || i || '@example.org'"
    zones = "ARRAY[" + ", ".join(f"'{z}'" for z in ZONES) + "]"
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE bench_rows ON COMMIT DROP AS"
            f" SELECT i, {address} AS address, 'Patient ' || i || ' García' AS name,"
            f" ({zones})[1 + mod(i, {len(ZONES)})] AS timezone, {status_sql} AS status"
            f" FROM generate_series(%s, %s) AS i",
            [first, first + count - 1],
        )
        cursor.execute(
            "INSERT INTO recipients_contact (org_id, address, name, timezone, created_at)"
            " SELECT %s, address, name, timezone, %s FROM bench_rows"
            " ON CONFLICT (org_id, address) DO NOTHING",
            [campaign.org_id, now],
        )
        cursor.execute(
            "INSERT INTO delivery_message (org_id, campaign_id, recipient_list_id, contact_id,"
            " address, name, timezone, variables, line, status, provider_id, error_code,"
            " error_message, eligible_at, attempts, created_at)"
            " SELECT %s, %s, %s, c.id, r.address, r.name, r.timezone,"
            " jsonb_build_object('clinic', 'Clinic ' || mod(r.i, 7)), r.i + 2, r.status, '',"
            " CASE WHEN r.status = 'failed' THEN '30003' ELSE '' END, '', %s, 0, %s"
            " FROM bench_rows r JOIN recipients_contact c"
            " ON c.org_id = %s AND c.address = r.address ORDER BY r.i",
            [
                campaign.org_id,
                campaign.pk,
                recipient_list.pk,
                recipient_list.start_at,
                now,
                campaign.org_id,
            ],
        )
        added = cursor.rowcount
        cursor.execute(
            "UPDATE recipients_recipientlist SET recipient_count = recipient_count + %s"
            " WHERE id = %s",
            [added, recipient_list.pk],
        )
    return added


def analyze() -> None:
    """Fresh planner statistics after a bulk load, as autovacuum would give them soon after."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE delivery_message")
        cursor.execute("ANALYZE recipients_contact")
        cursor.execute("ANALYZE delivery_messagecount")
