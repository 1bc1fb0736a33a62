"""What every benchmark shares: Django on a PostgreSQL database of its own, timing, a table."""

import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/outreach_bench"
)
# Redis database 14 is the benchmarks' own: the tests use 15 and development 0.
BENCH_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
# Every day open (local time of each recipient), so that nothing waits for a window.
ALL_WEEK = {str(d): ["00:00", "23:59"] for d in range(7)}
_ready = False


def setup_django() -> None:
    """Configures Django against the benchmark database (created and migrated on first use)."""
    global _ready
    if _ready:
        return
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "outreach_site.settings")
    os.environ["DATABASE_URL"] = BENCH_DATABASE_URL
    # The throttle (and the cache) use Redis whenever REDIS_URL is set: never another database.
    os.environ["REDIS_URL"] = BENCH_REDIS_URL
    os.environ.setdefault("DEBUG", "true")
    _ensure_database(BENCH_DATABASE_URL)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    _ready = True


def _ensure_database(url: str) -> None:
    from urllib.parse import urlsplit

    import psycopg

    name = urlsplit(url).path.lstrip("/")
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def purge_orgs(slug_prefix: str) -> None:
    """Deletes the organizations a benchmark made (and everything in them), fast."""
    from django.db import connection

    from orgs.models import Organization

    orgs = list(
        Organization.objects.filter(slug__startswith=slug_prefix).values_list("pk", flat=True)
    )
    if orgs:
        _delete_orgs(orgs)
    # Every benchmark's baseline writes into a fresh table; ours must not write among the last
    # run's millions of dead rows either (autovacuum comes too late between runs).
    with connection.cursor() as cursor:
        cursor.execute("VACUUM delivery_message, recipients_contact")


def _delete_orgs(orgs: list[int]) -> None:
    from django.db import connection, transaction

    from campaigns.models import Campaign
    from orgs.models import Organization

    campaigns = list(Campaign.objects.filter(org_id__in=orgs).values_list("pk", flat=True))
    with transaction.atomic(), connection.cursor() as cursor:
        # Set-based deletes of the big tables first; the ORM then cascades over the small rest.
        if campaigns:
            cursor.execute("DELETE FROM delivery_message WHERE campaign_id = ANY(%s)", [campaigns])
        cursor.execute("DELETE FROM recipients_contact WHERE org_id = ANY(%s)", [orgs])
        # Campaigns before their organizations: a campaign protects its sender and template.
        Campaign.objects.filter(pk__in=campaigns).delete()
        Organization.objects.filter(pk__in=orgs).delete()


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Row:
    figure: str
    value: float
    baseline: float | None
    unit: str
    target: str
    passed: bool

    @property
    def ratio(self) -> str:
        return f"{self.value / self.baseline:.2f}" if self.baseline else "—"


def print_table(title: str, rows: list[Row]) -> None:
    print(f"\n{title}")
    width = max([52, *(len(r.figure) for r in rows)])
    target_width = max([28, *(len(r.target) for r in rows)])
    header = (
        f"{'figure':<{width}} {'value':>14} {'baseline':>14} {'ratio':>6}  "
        f"{'target':<{target_width}} ok"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        base = f"{r.baseline:,.1f}" if r.baseline is not None else "—"
        print(
            f"{r.figure:<{width}} {r.value:>10,.1f} {r.unit:<3} {base:>14} {r.ratio:>6}  "
            f"{r.target:<{target_width}} {'PASS' if r.passed else 'FAIL'}"
        )
