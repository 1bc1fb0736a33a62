"""Import speed: our end-to-end upload path beside a plain PostgreSQL COPY of the same rows.

Run: .venv/bin/python -m bench.import_bench [--rows 1000000]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from bench.common import Row, peak_rss_mb, print_table, purge_orgs, setup_django, timed

PREFIX = "bench-import-"
ZONES = ["America/New_York", "America/Chicago", "Europe/London", "Asia/Kolkata", ""]


def write_file(path: Path, rows: int) -> None:
    """A realistic upload: header, numbers in mixed formats, names, a personalisation column."""
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("timezone,phone_number,name,clinic\r\n")
        for i in range(rows):
            exchange, line = 200 + i // 10_000, i % 10_000
            phone = f"+1212{exchange:03d}{line:04d}"
            out.write(f"{ZONES[i % 5]},{phone},Patient {i} García,Clinic {i % 7}\r\n")


def import_once(path: Path, limit: int) -> tuple[float, int]:
    from django.utils import timezone

    from recipients.services import recipient_list_import
    from tests.factories import CampaignFactory, OrganizationFactory

    org = OrganizationFactory(
        slug=f"{PREFIX}{uuid.uuid4().hex[:12]}", default_region="US", max_recipients_per_list=limit
    )
    campaign = CampaignFactory(org=org)
    with path.open("rb") as stream:
        seconds, result = timed(
            lambda: recipient_list_import(
                campaign=campaign,
                stream=stream,
                file_name=path.name,
                start_at=timezone.now(),
                end_at=None,
                user=None,
                max_bytes=path.stat().st_size + 1,
            )
        )
    assert result.accepted, result.summary
    return seconds, result.recipient_list.recipient_count


def copy_baseline(path: Path) -> float:
    """COPY the same rows, already parsed, into a table shaped like the messages table."""
    import csv

    from django.db import connection

    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        next(reader)
        rows = [
            (i, r[1], r[2], r[0] or "America/New_York", json.dumps({"clinic": r[3]}))
            for i, r in enumerate(reader, 2)
        ]
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_copy")
        cursor.execute(
            "CREATE TABLE bench_copy (LIKE delivery_message INCLUDING DEFAULTS INCLUDING INDEXES)"
        )
        cursor.execute("ALTER TABLE bench_copy ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY")

        def copy() -> None:
            with cursor.cursor.copy(
                "COPY bench_copy (line, address, name, timezone, variables, org_id, campaign_id,"
                " recipient_list_id, contact_id, status, provider_id, error_code, error_message,"
                " eligible_at, attempts, created_at) FROM STDIN"
            ) as copy:
                # One contact per row, as the list's unique (contact, list) constraint wants.
                for row in rows:
                    copy.write_row((*row, 1, 1, 1, row[0], "queued", "", "", "", "now", 0, "now"))

        seconds, _ = timed(copy)
        cursor.execute("DROP TABLE bench_copy")
    return seconds


def child(path: str, limit: int) -> None:
    """Runs one import in a fresh process so that its peak memory is its own."""
    setup_django()
    seconds, count = import_once(Path(path), limit)
    print(json.dumps({"seconds": seconds, "count": count, "rss_mb": peak_rss_mb()}))


def measure(path: Path, limit: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.import_bench", "--child", str(path), "--limit", str(limit)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def run(rows: int) -> list[Row]:
    setup_django()
    purge_orgs(PREFIX)  # an earlier run's millions of rows would slow this one's indexes
    with tempfile.TemporaryDirectory() as tmp:
        small, medium, big = Path(tmp, "3500.csv"), Path(tmp, "100k.csv"), Path(tmp, "big.csv")
        write_file(small, 3500)
        write_file(medium, rows // 10)
        write_file(big, rows)
        s = measure(small, 3500)
        m = measure(medium, rows)
        b = measure(big, rows)
        copy_seconds = copy_baseline(big)
    purge_orgs(PREFIX)
    ours, copy_rate = b["count"] / b["seconds"], rows / copy_seconds
    return [
        Row("3,500-row list, end to end (ms)", s["seconds"] * 1000, None, "ms", "—", True),
        Row(
            f"{rows:,}-row file, end to end (rows/s) vs COPY",
            ours,
            copy_rate,
            "r/s",
            "≥100,000 r/s and ≥0.5x COPY",
            ours >= 100_000 and ours >= copy_rate / 2,
        ),
        Row(
            f"peak memory {rows:,} rows vs {rows // 10:,} rows (MB)",
            b["rss_mb"],
            m["rss_mb"],
            "MB",
            "≤1.2x (flat)",
            b["rss_mb"] <= 1.2 * m["rss_mb"],
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--child")
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.limit)
        return
    print_table("Recipient import", run(args.rows))


if __name__ == "__main__":
    main()
