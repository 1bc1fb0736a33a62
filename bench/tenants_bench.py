"""Many tenants at once: the real beat and one worker of the default concurrency against the
sandbox, each organization's campaign on its own sender.

Run: .venv/bin/python -m bench.tenants_bench [--quick]

Rows, each beside a baseline measured in the same run:
- 200 organizations at 1 SMS/s each: the worst and the median share of its rate an organization
  got, and the worker's CPU per message beside one organization sending 200 SMS/s alone (the
  same messages per second from one sender) and one sending 1 SMS/s alone.
- A tick with as many campaigns running, beside a tick with one.
- One organization at 100 SMS/s beside 50 at 1 SMS/s: the worst share, and the longest an
  organization waited for its first message after the first anyone got (one tick at most).

A share is an organization's rate over a measuring window that starts once every organization
has sent its first message — its messages' `sent_at` there, first to last — over its sender's
rate; at 1/s the throttle's own spacing (delivery/throttle.py SPAN) caps it at 0.976. The
sandbox runs in a child process with callbacks off.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    BENCH_DATABASE_URL,
    BENCH_REDIS_URL,
    ROOT,
    Row,
    print_table,
    purge_orgs,
    setup_django,
)

PREFIX = "bench-tenants-"
SHARE_TARGET, CPU_TARGET = 0.95, 1.2
TICK_SECONDS = 2


def _process_cpu(pid: int) -> float:
    """CPU seconds of a process and every descendant (a worker's pool processes)."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
        for task in Path(f"/proc/{pid}/task").iterdir():
            children = (task / "children").read_text().split()
            total += sum(_process_cpu(int(child)) for child in children)
    except (FileNotFoundError, ProcessLookupError):
        pass
    return total


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU jiffies of the whole machine so far, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


class Engine:
    """A Celery beat and worker (default concurrency) on the benchmark database and Redis."""

    def __init__(self, sandbox_url: str) -> None:
        self.env = {
            **os.environ,
            "DEBUG": "true",
            "DATABASE_URL": BENCH_DATABASE_URL,
            "REDIS_URL": BENCH_REDIS_URL,
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "TWILIO_API_BASE_URL": sandbox_url,
            "SENDGRID_API_HOST": sandbox_url,
            "DISPATCH_TICK_SECONDS": str(TICK_SECONDS),
            "PYTHONUNBUFFERED": "1",
        }
        self.tmp = Path(tempfile.mkdtemp(prefix="tenants-bench-"))
        self.processes: list[subprocess.Popen] = []

    def start(self) -> None:
        import redis

        redis.Redis.from_url(BENCH_REDIS_URL).flushdb()
        for name, args in (
            (
                "worker",
                [
                    "worker",
                    "--without-gossip",
                    "--without-mingle",
                    "-l",
                    os.environ.get("BENCH_WORKER_LOG", "WARNING"),
                ],
            ),
            ("beat", ["beat", "-s", str(self.tmp / "schedule"), "-l", "WARNING"]),
        ):
            log = (self.tmp / f"{name}.log").open("ab")
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "outreach_site", *args],
                    cwd=ROOT,
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    @property
    def worker_cpu(self) -> float:
        return _process_cpu(self.processes[0].pid)

    def stop(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@dataclass
class Outcome:
    shares: list[float]
    first_waits: list[float]
    cpu_per_message: float
    messages: int
    # How busy the whole machine was while measuring (1.0: every core), beat and sandbox included.
    machine_busy: float


def _rate(times: list) -> float:
    """Messages a second between the first and the last of these instants."""
    if len(times) < 2:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0]).total_seconds()


def _tenants(rates: list[int], seconds: float) -> list:
    from bench.data import add_messages, make_campaign

    benches = []
    for rate in rates:
        bench = make_campaign(PREFIX, rate=rate)
        # Enough for the whole run, so that nobody runs out inside the measuring window.
        add_messages(bench, int(rate * (seconds + 30)) + 10)
        benches.append(bench)
    return benches


def _run(sandbox_url: str, rates: list[int], seconds: float) -> Outcome:
    """Starts every campaign, waits until each has sent, measures `seconds`, stops."""
    from django.db.models import Min
    from django.utils import timezone

    from campaigns.services import campaign_run
    from delivery.models import Message

    purge_orgs(PREFIX)
    benches = _tenants(rates, seconds)
    campaigns = [b.campaign.pk for b in benches]
    engine = Engine(sandbox_url)
    for bench in benches:
        campaign_run(campaign=bench.campaign, user=bench.user)
    engine.start()
    try:
        sent = Message.objects.filter(campaign_id__in=campaigns, sent_at__isnull=False)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if sent.values("campaign_id").distinct().count() == len(campaigns):
                break
            time.sleep(0.5)
        # A few ticks in, so that the measure is the steady state.
        time.sleep(2 * TICK_SECONDS)
        window_start, cpu_start, machine_start = timezone.now(), engine.worker_cpu, _machine_busy()
        time.sleep(seconds)
        window_end, cpu_end, machine_end = timezone.now(), engine.worker_cpu, _machine_busy()
    finally:
        engine.stop()
    # Each organization's rate over the window: its messages there, first to last, so that
    # where the window's edges fall between two messages does not count.
    sent_times: dict[int, list] = defaultdict(list)
    for campaign_id, sent_at in (
        Message.objects.filter(
            campaign_id__in=campaigns, sent_at__gte=window_start, sent_at__lt=window_end
        )
        .order_by("sent_at")
        .values_list("campaign_id", "sent_at")
    ):
        sent_times[campaign_id].append(sent_at)
    firsts = dict(
        Message.objects.filter(campaign_id__in=campaigns)
        .values_list("campaign_id")
        .annotate(first=Min("sent_at"))
    )
    shares = [
        _rate(sent_times[b.campaign.pk]) / rate for b, rate in zip(benches, rates, strict=True)
    ]
    total = sum(len(times) for times in sent_times.values())
    # From the first message anyone got: the tick that started them all.
    first = min(f for f in firsts.values() if f is not None)
    waits = [((firsts.get(b.campaign.pk) or window_end) - first).total_seconds() for b in benches]
    purge_orgs(PREFIX)
    busy = (machine_end[0] - machine_start[0]) / max(1, machine_end[1] - machine_start[1])
    return Outcome(shares, waits, (cpu_end - cpu_start) / max(1, total), total, busy)


def _tick_cost(campaigns: int, repeats: int = 5) -> float:
    """Median seconds of one tick (claims to a no-op sender) with this many campaigns running,
    each at 1/s with messages due; the claims are put back between repeats, untimed."""
    import statistics

    from django.db import connection
    from django.utils import timezone

    from campaigns.services import campaign_run
    from delivery.dispatch import dispatch_tick

    purge_orgs(PREFIX)
    for bench in _tenants([1] * campaigns, 10):
        campaign_run(campaign=bench.campaign, user=bench.user)
    dispatch_tick(timezone.now(), send=lambda ids: None)  # the lists start
    times = []
    for _ in range(repeats):
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE delivery_message SET status = 'queued', lease_until = NULL"
                " WHERE status = 'sending'"
            )
        started = time.perf_counter()
        report = dispatch_tick(timezone.now(), send=lambda ids: None)
        times.append(time.perf_counter() - started)
        assert len(report.released) == campaigns, report.lines()
    purge_orgs(PREFIX)
    return statistics.median(times)


def run(quick: bool = False) -> list[Row]:
    setup_django()
    from django.conf import settings

    from bench.sandbox import sandbox_process

    seconds = 20 if quick else 40
    many = 50 if quick else 200
    with sandbox_process(settings.TWILIO_AUTH_TOKEN) as url:
        alone_slow = _run(url, [1], seconds)
        alone_fast = _run(url, [many], seconds)
        tenants = _run(url, [1] * many, seconds)
        mixed = _run(url, [100] + [1] * 50, seconds)
    ms, pct = 1000, 100
    tick_many, tick_one = _tick_cost(many), _tick_cost(1)
    worst = min(tenants.shares)
    median = sorted(tenants.shares)[len(tenants.shares) // 2]
    rows = [
        Row(
            f"{many} orgs at 1 SMS/s: worst share of its rate vs 1 org alone",
            worst * pct,
            alone_slow.shares[0] * pct,
            "%",
            f"≥ {SHARE_TARGET:.0%}",
            worst >= SHARE_TARGET,
        ),
        Row(
            f"{many} orgs at 1 SMS/s: median share",
            median * pct,
            alone_slow.shares[0] * pct,
            "%",
            f"≥ {SHARE_TARGET:.0%}",
            median >= SHARE_TARGET,
        ),
        Row(
            f"worker CPU per SMS, {many} orgs vs 1 org at {many}/s",
            tenants.cpu_per_message * ms,
            alone_fast.cpu_per_message * ms,
            "ms",
            f"≤ {CPU_TARGET}x baseline",
            tenants.cpu_per_message <= CPU_TARGET * alone_fast.cpu_per_message,
        ),
        Row(
            f"worker CPU per SMS, {many} orgs vs 1 org at 1/s",
            tenants.cpu_per_message * ms,
            alone_slow.cpu_per_message * ms,
            "ms",
            f"≤ {CPU_TARGET}x baseline",
            tenants.cpu_per_message <= CPU_TARGET * alone_slow.cpu_per_message,
        ),
        Row(
            f"100/s org beside 50 at 1/s: worst share vs 1 org alone at {many}/s",
            min(mixed.shares) * pct,
            alone_fast.shares[0] * pct,
            "%",
            f"≥ {SHARE_TARGET:.0%}",
            min(mixed.shares) >= SHARE_TARGET,
        ),
        Row(
            "100/s org beside 50 at 1/s: longest wait for a first SMS",
            max(mixed.first_waits),
            max(alone_slow.first_waits),
            "s",
            f"≤ one tick ({TICK_SECONDS} s)",
            max(mixed.first_waits) <= TICK_SECONDS,
        ),
        Row(
            f"tick with {many} campaigns running vs 1 (median ms)",
            tick_many * ms,
            tick_one * ms,
            "ms",
            f"< a quarter of the {TICK_SECONDS} s tick",
            tick_many < TICK_SECONDS / 4,
        ),
    ]
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print_table("Many tenants at once", run(args.quick))
