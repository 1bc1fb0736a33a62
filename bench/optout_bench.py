"""Opt-out import speed: our end-to-end import of a CSV beside a plain COPY of the same addresses.

Run: .venv/bin/python -m bench.optout_bench [--rows 100000]
"""

import argparse
import csv
import tempfile
import uuid
from pathlib import Path

from bench.common import Row, print_table, purge_orgs, setup_django, timed

PREFIX = "bench-optout-"


def phone(i: int) -> str:
    return f"+1212{200 + i // 10_000:03d}{i % 10_000:04d}"


def write_file(path: Path, rows: int) -> None:
    """A contacts export: a name, the number, and an email for every tenth."""
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("name,phone_number,email\r\n")
        for i in range(rows):
            email = f"Patient{i}@Example.com" if i % 10 == 0 else ""
            out.write(f"Patient {i} García,{phone(i)},{email}\r\n")


def queued_list(org: object, rows: int) -> int:
    """Queues a list to every other number of the file, so that the import opts them out."""
    import io

    from django.utils import timezone

    from recipients.services import recipient_list_import
    from tests.factories import CampaignFactory

    content = "timezone,phone_number\n" + "".join(f"UTC,{phone(i)}\n" for i in range(0, rows, 2))
    result = recipient_list_import(
        campaign=CampaignFactory(org=org),
        stream=io.BytesIO(content.encode()),
        file_name="queued.csv",
        start_at=timezone.now(),
        end_at=None,
        user=None,
        max_recipients=rows,
    )
    assert result.accepted, result.summary
    return result.recipient_list.recipient_count


def import_once(path: Path, rows: int, *, with_queued: bool) -> tuple[float, int, int, int]:
    """Seconds, addresses added, queued messages beforehand, and opted out by the import."""
    from recipients.services import suppressions_import
    from tests.factories import OrganizationFactory

    org = OrganizationFactory(slug=f"{PREFIX}{uuid.uuid4().hex[:12]}", default_region="US")
    queued = queued_list(org, rows) if with_queued else 0
    with path.open("rb") as stream:
        seconds, result = timed(
            lambda: suppressions_import(org=org, stream=stream, file_name=path.name, user=None)
        )
    assert result.accepted, result.rejected and result.rejected.summary
    return seconds, result.added, queued, result.messages_opted_out


def copy_baseline(path: Path) -> tuple[float, int]:
    """COPY the same addresses, already parsed, into a table shaped like the suppression list."""
    from django.db import connection

    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        next(reader)
        addresses = [a for r in reader for a in (r[1], r[2].lower()) if a]
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_optout_copy")
        cursor.execute(
            "CREATE TABLE bench_optout_copy"
            " (LIKE delivery_suppression INCLUDING DEFAULTS INCLUDING INDEXES)"
        )
        cursor.execute(
            "ALTER TABLE bench_optout_copy ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY"
        )

        def copy() -> None:
            with cursor.cursor.copy(
                "COPY bench_optout_copy (org_id, address, reason, detail, created_at) FROM STDIN"
            ) as copy:
                for address in addresses:
                    copy.write_row((1, address, "csv_import", path.name, "now"))

        seconds, _ = timed(copy)
        cursor.execute("DROP TABLE bench_optout_copy")
    return seconds, len(addresses)


def _purge() -> None:
    from django.db import connection

    purge_orgs(PREFIX)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM delivery_suppression")


def run(rows: int) -> list[Row]:
    setup_django()
    _purge()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "optouts.csv")
        write_file(path, rows)
        alone = import_once(path, rows, with_queued=False)
        beside = import_once(path, rows, with_queued=True)
        copy_seconds, addresses = copy_baseline(path)
    _purge()
    for _, added, queued, opted_out in (alone, beside):
        assert added == addresses and opted_out == queued, (added, addresses, opted_out, queued)
    copy_rate = rows / copy_seconds
    target = "≥20,000 r/s (100,000 rows in ≤5 s)"
    return [
        Row(
            f"{rows:,}-row opt-out file ({addresses:,} addresses), end to end (rows/s) vs COPY",
            rows / alone[0],
            copy_rate,
            "r/s",
            target,
            rows / alone[0] >= 20_000,
        ),
        Row(
            f"the same file, {beside[2]:,} of its numbers queued in a list (opted out) vs COPY",
            rows / beside[0],
            copy_rate,
            "r/s",
            target,
            rows / beside[0] >= 20_000,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    print_table("Opt-out import", run(args.rows))


if __name__ == "__main__":
    main()
