"""Page latency: the campaign page, its messages (first page and a deep page) and the overview,
for a campaign of 1,000 messages beside one of 1,000,000 (100,000 with --quick).

Run: .venv/bin/python -m bench.pages_bench [--quick] [--queries]

Server time only: Django's test client, signed in, timed around each GET (30 after 3 untimed),
p95 reported. The two campaigns are in different organizations (each with its own
Administrator), so each overview sees one. Both campaigns are In Progress, part way through:
half delivered, a tenth sent, a tenth failed or undelivered, 30% still queued. With --queries,
the slowest queries of each page at the large size are printed with their plans.
"""

import argparse
import math
import time

from bench.common import Row, print_table, purge_orgs, setup_django

PREFIX = "bench-pages-"
SMALL = 1_000
WARMUP, REQUESTS = 3, 30
P95_TARGET_MS, RATIO_TARGET = 100, 1.5
# Part way through a campaign, by row number: delivered, sent, failed, undelivered, queued.
STATUS_SQL = (
    "CASE WHEN mod(i, 20) < 10 THEN 'delivered' WHEN mod(i, 20) < 12 THEN 'sent'"
    " WHEN mod(i, 20) = 12 THEN 'failed' WHEN mod(i, 20) = 13 THEN 'undelivered'"
    " ELSE 'queued' END"
)


def _campaign(n: int):
    from django.db import connection

    from bench.data import add_messages, make_campaign
    from campaigns.services import campaign_run

    bench = make_campaign(PREFIX, rate=10)
    add_messages(bench, n, status_sql=STATUS_SQL)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE delivery_message SET provider_id = 'SM' || id, sent_at = created_at,"
            " final_at = CASE WHEN status IN ('delivered', 'failed', 'undelivered')"
            " THEN created_at END, error_code = CASE WHEN status = 'undelivered' THEN '30005'"
            " ELSE error_code END WHERE campaign_id = %s AND status <> 'queued'",
            [bench.campaign.pk],
        )
    campaign_run(campaign=bench.campaign, user=bench.user)
    return bench


def _pages(bench) -> dict[str, str]:
    from delivery.models import Message

    ids = Message.objects.filter(campaign=bench.campaign).order_by("-id")
    near_end = ids.values_list("id", flat=True)[60]
    campaign_id = bench.campaign.pk
    return {
        "campaign page": f"/campaigns/{campaign_id}/",
        "messages, first page": f"/campaigns/{campaign_id}/messages/",
        "messages, deep page": f"/campaigns/{campaign_id}/messages/?after={near_end}",
        "overview": "/",
    }


def _p95(client, url: str) -> float:
    """p95 of REQUESTS timed GETs, in ms, after WARMUP untimed ones."""
    times = []
    for i in range(WARMUP + REQUESTS):
        started = time.perf_counter()
        response = client.get(url)
        seconds = time.perf_counter() - started
        if response.status_code != 200:
            raise AssertionError(f"{url}: {response.status_code}")
        if i >= WARMUP:
            times.append(seconds * 1000)
    times.sort()
    return times[math.ceil(0.95 * len(times)) - 1]


def _slow_queries(client, url: str, top: int = 3) -> None:
    """Prints the page's slowest queries with their plans."""
    from django.db import connection

    timed: list[tuple[float, str, tuple]] = []

    def record(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            timed.append((time.perf_counter() - started, sql, params))

    with connection.execute_wrapper(record):
        client.get(url)
    total = sum(t for t, _, _ in timed)
    print(f"\n{url}: {len(timed)} queries, {1000 * total:.1f} ms in the database")
    for seconds, sql, params in sorted(timed, key=lambda q: -q[0])[:top]:
        print(f"--- {1000 * seconds:.1f} ms: {sql[:300]}")
        if sql.lstrip().upper().startswith("SELECT"):
            with connection.cursor() as cursor:
                cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
                print("\n".join(row[0] for row in cursor.fetchall()))


def run(quick: bool, queries: bool = False) -> list[Row]:
    setup_django()
    from django.conf import settings
    from django.test import Client

    from bench.data import analyze

    purge_orgs(PREFIX)
    big_n = 100_000 if quick else 1_000_000
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    try:
        small, big = _campaign(SMALL), _campaign(big_n)
        analyze()
        p95 = {}
        for name, bench in (("small", small), ("big", big)):
            client = Client()
            client.force_login(bench.user)
            p95[name] = {page: _p95(client, url) for page, url in _pages(bench).items()}
            if queries and name == "big":
                for url in _pages(bench).values():
                    _slow_queries(client, url)
    finally:
        purge_orgs(PREFIX)
    label = "1M" if big_n == 1_000_000 else f"{big_n // 1000:,}k"
    return [
        Row(
            f"{page} p95: {label} vs 1k messages",
            p95["big"][page],
            p95["small"][page],
            "ms",
            f"≤{P95_TARGET_MS} ms and ≤{RATIO_TARGET}x 1k",
            p95["big"][page] <= P95_TARGET_MS
            and p95["big"][page] <= RATIO_TARGET * p95["small"][page],
        )
        for page in p95["big"]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 instead of 1,000,000")
    parser.add_argument("--queries", action="store_true", help="print the slowest queries")
    args = parser.parse_args()
    print_table("Page latency", run(args.quick, args.queries))


if __name__ == "__main__":
    main()
