"""Every benchmark in one run, one table: figure, same-run baseline, ratio, target, pass/fail.

Run: .venv/bin/python -m bench [--quick]   (or: python3 dev.py bench [--quick])

The table is printed and written to bench/latest.md (with the date and the machine), which the
README's performance section quotes. Each benchmark also runs alone: python -m bench.<name>.
"""

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from bench.common import ROOT, Row, print_table

LATEST = ROOT / "bench" / "latest.md"


def _suites(quick: bool) -> list[tuple[str, Callable[[], list[Row]]]]:
    # Imported lazily: each module configures Django when it runs, not when it is imported.
    from bench import (
        dispatch_bench,
        import_bench,
        optout_bench,
        pages_bench,
        tenants_bench,
        throttle_bench,
        tick_bench,
        webhook_bench,
    )

    return [
        ("Recipient import vs COPY", lambda: import_bench.run(100_000 if quick else 1_000_000)),
        ("Opt-out import vs COPY", lambda: optout_bench.run(20_000 if quick else 100_000)),
        ("Dispatch vs raw SDK calls", lambda: dispatch_bench.run(quick)),
        ("Tick cost, 10k vs 1M queued", lambda: tick_bench.run(quick)),
        ("Throttle accuracy", lambda: throttle_bench.run(quick)),
        ("Webhook ingestion vs bare view", lambda: webhook_bench.run(quick)),
        ("Page latency, 1k vs 1M messages", lambda: pages_bench.run(quick)),
        ("Many tenants at once", lambda: tenants_bench.run(quick)),
    ]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            names = [
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            ]
        cpu = f"{len(names)} x {names[0]}" if names else cpu
    except OSError:
        pass
    postgres = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", "SHOW server_version"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), "
        f"Python {platform.python_version()}, PostgreSQL {postgres or '?'}"
    )


def markdown(rows: list[tuple[str, Row]], quick: bool, seconds: float) -> str:
    lines = [
        f"Run on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}, "
        f"{'--quick sizes' if quick else 'full sizes'}, {seconds / 60:.0f} min in all.",
        "",
        "| benchmark | figure | value | baseline | ratio | target | result |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for suite, r in rows:
        base = f"{r.baseline:,.1f}" if r.baseline is not None else "—"
        lines.append(
            f"| {suite} | {r.figure} | {r.value:,.1f} {r.unit} | {base} | {r.ratio} | "
            f"{r.target} | {'pass' if r.passed else '**FAIL**'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, a few minutes")
    parser.add_argument("--only", help="run only the benchmarks whose title contains this")
    args = parser.parse_args()
    started = time.perf_counter()
    results: list[tuple[str, Row]] = []
    for title, run in _suites(args.quick):
        if args.only and args.only.lower() not in title.lower():
            continue
        print(f"--- {title}", flush=True)
        rows = run()
        print_table(title, rows)
        results.extend((title, r) for r in rows)
    seconds = time.perf_counter() - started
    print_table("All benchmarks", [r for _, r in results])
    if not args.only:
        LATEST.write_text(markdown(results, args.quick, seconds), encoding="utf-8")
        print(f"\nWritten to {LATEST.relative_to(ROOT)}")
    # Figures are reported, not gated: a FAIL row is a finding for the issue note.
    return 0


if __name__ == "__main__":
    sys.exit(main())
