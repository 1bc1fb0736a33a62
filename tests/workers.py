"""Real Celery worker and beat processes for the tests that need them (faults, browser).

They run against the test database and the test Redis database, with the sandbox provider and
the live server of the test, exactly as production runs them: `celery -A outreach_site …`.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


class CeleryProcesses:
    """Starts, kills and stops worker and beat processes; every one is stopped at the end."""

    def __init__(
        self,
        *,
        sandbox,
        live_server_url: str,
        tmp_path: Path,
        tick_seconds: int = 1,
        lease_seconds: int = 8,
        claim_lease_seconds: int = 8,
    ):
        db = connection.settings_dict
        self.env = {
            **os.environ,
            "DEBUG": "true",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "REDIS_URL": settings.REDIS_URL,
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "PUBLIC_BASE_URL": live_server_url,
            "TWILIO_API_BASE_URL": sandbox.url,
            "SENDGRID_API_HOST": sandbox.url,
            "SENDGRID_WEBHOOK_PUBLIC_KEY": settings.SENDGRID_WEBHOOK_PUBLIC_KEY,
            "DISPATCH_TICK_SECONDS": str(tick_seconds),
            "DISPATCH_LEASE_SECONDS": str(lease_seconds),
            "DISPATCH_CLAIM_LEASE_SECONDS": str(claim_lease_seconds),
            "PROVIDER_TIMEOUT_SECONDS": str(settings.PROVIDER_TIMEOUT_SECONDS),
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "PYTHONUNBUFFERED": "1",
        }
        self.tmp_path = tmp_path
        self.processes: list[subprocess.Popen] = []
        # A clean broker: nothing left over from an earlier run may be consumed.
        redis.Redis.from_url(settings.REDIS_URL).flushdb()

    def _start(self, name: str, *args: str) -> subprocess.Popen:
        log = (self.tmp_path / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "outreach_site", *args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(proc)
        return proc

    def worker(self, name: str = "w1", *, concurrency: int = 2) -> subprocess.Popen:
        return self._start(
            name,
            "worker",
            "-n",
            f"{name}@%h",
            "-c",
            str(concurrency),
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "INFO",
        )

    def beat(self, name: str = "beat") -> subprocess.Popen:
        schedule = self.tmp_path / f"{name}-schedule"
        return self._start(name, "beat", "-s", str(schedule), "-l", "INFO")

    def kill(self, proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        """Kills the process and every child of it (a worker's pool processes)."""
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        proc.wait(timeout=20)

    def stop_all(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + 15
        for proc in self.processes:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.tmp_path.glob("*.log")))
