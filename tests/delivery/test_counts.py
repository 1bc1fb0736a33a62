"""The status counters pages read must always equal a real count of the messages."""

import random
import threading

import pytest
from django.db import connection
from django.db.models import Count, Sum

from delivery.models import Message, MessageCount, MessageStatus
from delivery.services import message_status_apply
from tests.factories import CampaignFactory, MessageFactory, RecipientListFactory


def real_counts(campaign) -> dict[str, int]:
    rows = Message.objects.filter(campaign=campaign).values_list("status").annotate(n=Count("id"))
    return {status: n for status, n in rows if n}


def counted(campaign) -> dict[str, int]:
    rows = (
        MessageCount.objects.filter(campaign=campaign)
        .values_list("status")
        .annotate(n=Sum("count"))
        .order_by()
    )
    return {status: n for status, n in rows if n}


def test_counters_follow_inserts_bulk_updates_single_updates_and_deletes(tenants):
    campaign = CampaignFactory(org=tenants.org)
    first, second = (RecipientListFactory(campaign=campaign) for _ in range(2))
    MessageFactory.create_batch(20, recipient_list=first)
    MessageFactory.create_batch(5, recipient_list=second)
    assert counted(campaign) == {"queued": 25}
    Message.objects.filter(recipient_list=first).update(status=MessageStatus.SENDING)
    message = Message.objects.filter(recipient_list=first).first()
    Message.objects.filter(pk=message.pk).update(status=MessageStatus.DELIVERED)
    Message.objects.filter(recipient_list=second).first().delete()
    assert (
        counted(campaign) == real_counts(campaign) == {"sending": 19, "delivered": 1, "queued": 4}
    )


@pytest.mark.django_db(transaction=True)
def test_counters_stay_exact_under_concurrent_status_changes(tenants):
    campaign = CampaignFactory(org=tenants.org)
    recipient_list = RecipientListFactory(campaign=campaign)
    MessageFactory.create_batch(200, recipient_list=recipient_list)
    Message.objects.update(status=MessageStatus.SENT, provider_id="SMx")
    ids = list(Message.objects.values_list("id", flat=True))
    statuses = [MessageStatus.DELIVERED, MessageStatus.UNDELIVERED, MessageStatus.FAILED]

    def storm(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(150):
                message_status_apply(
                    message_id=rng.choice(ids), status=rng.choice(statuses), provider_id="SMx"
                )
        finally:
            connection.close()

    threads = [threading.Thread(target=storm, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counted(campaign) == real_counts(campaign)
    assert sum(counted(campaign).values()) == 200


def test_the_embedded_database_keeps_its_counter_triggers_through_every_migration(tmp_path):
    # SQLite rebuilds a table to alter it, dropping its triggers: the embedded run's pages would
    # then read counters nothing maintains. Checked on a fresh file, forward and back.
    import sqlite3

    from tests.test_configuration import manage

    database = tmp_path / "embedded.sqlite3"
    url = f"sqlite:///{database}"

    def triggers() -> set[str]:
        with sqlite3.connect(database) as db:
            rows = db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger'"
                " AND tbl_name = 'delivery_message'"
            )
            return {name for (name,) in rows}

    expected = {"outreach_counts_insert", "outreach_counts_update", "outreach_counts_delete"}
    result = manage("migrate", "-v0", DATABASE_URL=url, DEBUG="true")
    assert result.returncode == 0, result.stderr
    assert triggers() == expected
    result = manage("migrate", "delivery", "0010", "-v0", DATABASE_URL=url, DEBUG="true")
    assert result.returncode == 0, result.stderr
    assert triggers() == expected
