"""Tick cost: one dispatch_tick for a campaign with 10,000 queued messages beside one with
1,000,000 (100,000 with --quick), in the same database.

Run: .venv/bin/python -m bench.tick_bench [--quick] [--explain]

Each campaign is measured alone (the other is set back to Ready, so the tick skips it). The
sender sends 500/s and the tick is 2 s, so a tick claims 1,000 messages; the claims are put back
to queued between repeats, untimed. A second figure times a tick in which every due message is
outside its window (the schedule opens on one day only, three days ahead), so the tick moves
the messages it reads to their next window; they are made due again between repeats. Messages
are written as the import writes them: all of a list due at the list's start.
"""

import argparse
import statistics
import time
from datetime import timedelta

from bench.common import Row, print_table, purge_orgs, setup_django

PREFIX = "bench-tick-"
RATE, TICK_SECONDS, CLAIMS = 500, 2, 1000
SMALL = 10_000
REPEATS = 15
RATIO_TARGET = 1.5


def _closed_schedule() -> dict:
    """Open on one weekday three days ahead only: closed now in every timezone."""
    from django.utils import timezone

    day = (timezone.now().weekday() + 3) % 7
    return {str(day): ["10:00", "11:00"]}


def _only_running(bench, others) -> None:
    """The tick visits in-progress campaigns: this one runs, the others wait as Ready."""
    from campaigns.models import Campaign, Status

    Campaign.objects.filter(pk__in=[o.campaign.pk for o in others]).update(status=Status.READY)
    Campaign.objects.filter(pk=bench.campaign.pk).update(status=Status.IN_PROGRESS)


def _requeue(bench, start) -> None:
    """Puts claims back and makes rescheduled messages due again (untimed)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE delivery_message SET status = 'queued', handed_at = NULL, lease_until = NULL"
            " WHERE campaign_id = %s AND status = 'sending'",
            [bench.campaign.pk],
        )
        cursor.execute(
            "UPDATE delivery_message SET eligible_at = %s"
            " WHERE campaign_id = %s AND status = 'queued' AND eligible_at > %s",
            [start, bench.campaign.pk, start],
        )


def _median_tick(bench, *, expect_claims: bool) -> float:
    """Median seconds of a tick for this campaign, after one untimed warm-up tick."""
    from django.utils import timezone

    from delivery.dispatch import dispatch_tick

    start = bench.recipient_list.start_at
    times = []
    for repeat in range(REPEATS + 1):
        _requeue(bench, start)
        now = timezone.now()
        started = time.perf_counter()
        report = dispatch_tick(now, send=lambda ids: None)
        seconds = time.perf_counter() - started
        released = sum(report.released.values())
        if expect_claims and released != CLAIMS:
            raise AssertionError(f"expected {CLAIMS} claims, the tick made {released}")
        if not expect_claims and (released or report.rescheduled != 2 * CLAIMS):
            raise AssertionError(f"expected {2 * CLAIMS} rescheduled, got {report.lines()}")
        if repeat:
            times.append(seconds)
    _requeue(bench, start)
    return statistics.median(times)


def _explain(bench) -> None:
    """Prints the plan of the tick's candidate query for this campaign."""
    from django.db import connection
    from django.utils import timezone

    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN (ANALYZE, BUFFERS) SELECT id, address, timezone, recipient_list_id"
            " FROM delivery_message WHERE campaign_id = %s AND status = 'queued'"
            " AND eligible_at <= %s AND recipient_list_id IN (%s)"
            " ORDER BY eligible_at, id LIMIT %s FOR UPDATE OF delivery_message SKIP LOCKED",
            [bench.campaign.pk, timezone.now(), bench.recipient_list.pk, 2 * CLAIMS],
        )
        print(f"\ncandidates, campaign {bench.campaign.pk}:")
        print("\n".join(row[0] for row in cursor.fetchall()))


def run(quick: bool, explain: bool = False) -> list[Row]:
    setup_django()
    from django.conf import settings
    from django.utils import timezone

    from bench.data import add_messages, analyze, make_campaign
    from campaigns.models import Campaign

    purge_orgs(PREFIX)
    big_n = 100_000 if quick else 1_000_000
    settings.DISPATCH_TICK_SECONDS = TICK_SECONDS
    # Due since a past instant, as after an import: every message due, the same eligible_at.
    start = timezone.now() - timedelta(minutes=1)
    try:
        small = make_campaign(PREFIX, rate=RATE, start_at=start)
        big = make_campaign(PREFIX, rate=RATE, start_at=start)
        add_messages(small, SMALL)
        add_messages(big, big_n)
        analyze()
        pairs = {"small": (small, big), "big": (big, small)}
        open_ms, closed_ms = {}, {}
        for name, (bench, other) in pairs.items():
            _only_running(bench, [other])
            open_ms[name] = 1000 * _median_tick(bench, expect_claims=True)
            if explain:
                _explain(bench)
        Campaign.objects.filter(pk__in=[small.campaign.pk, big.campaign.pk]).update(
            schedule=_closed_schedule()
        )
        for name, (bench, other) in pairs.items():
            _only_running(bench, [other])
            closed_ms[name] = 1000 * _median_tick(bench, expect_claims=False)
    finally:
        purge_orgs(PREFIX)
    label = f"{big_n // 1000:,}k" if big_n < 1_000_000 else "1M"
    return [
        Row(
            f"tick, {CLAIMS:,} claimed: {label} queued vs 10k queued (median ms)",
            open_ms["big"],
            open_ms["small"],
            "ms",
            f"≤{RATIO_TARGET}x the 10k tick",
            open_ms["big"] <= RATIO_TARGET * open_ms["small"],
        ),
        Row(
            f"tick, all outside window: {label} queued vs 10k queued (median ms)",
            closed_ms["big"],
            closed_ms["small"],
            "ms",
            f"≤{RATIO_TARGET}x the 10k tick",
            closed_ms["big"] <= RATIO_TARGET * closed_ms["small"],
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 instead of 1,000,000")
    parser.add_argument("--explain", action="store_true", help="print the candidate query plans")
    args = parser.parse_args()
    print_table("Dispatcher tick", run(args.quick, args.explain))


if __name__ == "__main__":
    main()
