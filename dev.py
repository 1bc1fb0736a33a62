#!/usr/bin/env python3
"""Outreach's developer commands, needing nothing but Python 3.11+.

python3 dev.py run     set up, migrate, seed the demo organization and run the console
python3 dev.py test    set up and run every gate and the whole test suite
python3 dev.py bench   run every benchmark against PostgreSQL and Redis and print one table
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
VENV_PY = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
LOCK = ROOT / "requirements.lock"
INSTALLED_STAMP = VENV / ".installed-lock-sha256"

POSTGRES = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)
TEST_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/outreach"
# A Redis database number of its own, so tests never touch a developer's queues.
TEST_REDIS_URL = "redis://127.0.0.1:6379/15"


def say(text: str) -> None:
    print(f"\033[1m==> {text}\033[0m", flush=True)


def ensure_environment() -> None:
    """Creates .venv and installs the pinned requirements when they changed."""
    if not VENV_PY.exists():
        say(f"Creating the virtual environment in {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()
    if INSTALLED_STAMP.exists() and INSTALLED_STAMP.read_text() == digest:
        return
    say("Installing the pinned requirements (requirements.lock)")
    pip = [str(VENV_PY), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "-r", str(LOCK)], check=True)
    INSTALLED_STAMP.write_text(digest)


def reachable(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=1):
            return True
    except OSError:
        return False


def manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run([str(VENV_PY), "manage.py", *args], cwd=ROOT, env=env, check=True)


def cmd_run(args: argparse.Namespace) -> int:
    ensure_environment()
    (ROOT / "var").mkdir(exist_ok=True)
    env = os.environ.copy()
    # The embedded mode: SQLite, tasks run in-process, the local sandbox provider.
    env.pop("REDIS_URL", None)
    env.setdefault("DEBUG", "true")
    env.setdefault("DELIVERY_BACKEND", "sandbox")
    env.setdefault("PUBLIC_BASE_URL", f"http://127.0.0.1:{args.port}")
    env.setdefault("SANDBOX_URL", f"http://127.0.0.1:{args.sandbox_port}")
    say("Migrating the SQLite database (var/outreach.sqlite3)")
    manage("migrate", "--noinput", env=env)
    manage("seed_demo", env=env)
    processes = _start_processes(
        {
            "web": ["manage.py", "runserver", f"127.0.0.1:{args.port}", "--noreload"],
            "worker": ["manage.py", "embedded_worker"],
            "sandbox": ["manage.py", "sandbox_provider", "--port", str(args.sandbox_port)],
        },
        env,
    )
    say(f"Outreach is running on http://127.0.0.1:{args.port}/  (Ctrl-C stops everything)")
    say("Log in as demo-admin / outreach-demo (Administrator) or demo-viewer (Viewer)")
    return _supervise(processes)


def _start_processes(commands: dict[str, list[str]], env: dict[str, str]) -> dict:
    # Each child gets its own process group so that Ctrl-C can stop it with all its children.
    return {
        name: subprocess.Popen([str(VENV_PY), *cmd], cwd=ROOT, env=env, start_new_session=True)
        for name, cmd in commands.items()
    }


def _supervise(processes: dict[str, subprocess.Popen]) -> int:
    code = 0
    # A plain `kill` must stop the children too, exactly like Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while True:
            for name, proc in processes.items():
                if proc.poll() is not None:
                    say(f"The {name} process stopped (exit code {proc.returncode}); stopping all.")
                    code = proc.returncode or 1
                    raise KeyboardInterrupt
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for proc in processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        say("Stopped.")
    return code


def test_environment(ci: bool) -> dict[str, str]:
    """The environment the suite runs in: real PostgreSQL and Redis when reachable."""
    env = os.environ.copy()
    env["DEBUG"] = "true"
    env.setdefault("DELIVERY_BACKEND", "sandbox")
    have_pg, have_redis = reachable(POSTGRES), reachable(REDIS)
    if ci and not (have_pg and have_redis):
        missing = [n for n, ok in (("PostgreSQL", have_pg), ("Redis", have_redis)) if not ok]
        raise SystemExit(f"CI=true but {' and '.join(missing)} is not reachable: failing the run.")
    if have_pg:
        env.setdefault("DATABASE_URL", TEST_DATABASE_URL)
        _ensure_postgres_database(env["DATABASE_URL"])
    else:
        env["DATABASE_URL"] = f"sqlite:///{ROOT / 'var' / 'test.sqlite3'}"
    if have_redis:
        env.setdefault("REDIS_URL", TEST_REDIS_URL)
    else:
        env.pop("REDIS_URL", None)
    env["OUTREACH_REQUIRE_SERVICES"] = "true" if ci else "false"
    say(
        "Testing against "
        + ("PostgreSQL" if have_pg else "SQLite (PostgreSQL not reachable on 127.0.0.1:5432)")
        + " and "
        + ("Redis" if have_redis else "an in-memory broker (Redis not reachable on :6379)")
    )
    return env


def _ensure_postgres_database(url: str) -> None:
    # makemigrations --check reads the migration history, so the database itself must exist.
    script = (
        "import sys, psycopg\n"
        "from urllib.parse import urlsplit\n"
        "u = urlsplit(sys.argv[1]); name = u.path.lstrip('/')\n"
        "admin = u._replace(path='/postgres').geturl()\n"
        "with psycopg.connect(admin, autocommit=True) as c:\n"
        "    if not c.execute('select 1 from pg_database where datname=%s', [name]).fetchone():\n"
        "        c.execute(f'create database \"{name}\"')\n"
    )
    subprocess.run([str(VENV_PY), "-c", script, url], check=True)


CHROMIUM = Path("/usr/bin/chromium")


def ensure_chromium() -> None:
    """Installs Debian's chromium for the browser tests when it is missing (root and apt only)."""
    if CHROMIUM.exists() or not shutil.which("apt-get") or os.geteuid() != 0:
        return
    say("Installing Debian's chromium for the browser tests (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    if subprocess.run(install, env=env).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env)
        subprocess.run(install, env=env)
    # When it still is missing, the browser tests skip locally and fail under CI=true.


# What the test command runs again on the embedded run's database (SQLite, no Redis).
EMBEDDED_SUITES = [
    "tests/orgs",
    "tests/campaigns",
    "tests/recipients",
    "tests/delivery",
    "tests/test_access.py",
]


def cmd_test(args: argparse.Namespace) -> int:
    ensure_environment()
    ensure_chromium()
    (ROOT / "var").mkdir(exist_ok=True)
    ci = os.environ.get("CI", "").lower() == "true"
    env = test_environment(ci)
    py = str(VENV_PY)
    gates = [
        ("ruff format --check", [py, "-m", "ruff", "format", "--check", "."]),
        ("ruff check", [py, "-m", "ruff", "check", "."]),
        ("makemigrations --check", [py, "manage.py", "makemigrations", "--check", "--dry-run"]),
    ]
    for title, command in gates:
        say(title)
        if subprocess.run(command, cwd=ROOT, env=env).returncode != 0:
            say(f"{title} failed")
            return 1
    say("pytest")
    result = subprocess.run([py, "-m", "pytest", *args.pytest_args], cwd=ROOT, env=env)
    if result.returncode or args.pytest_args or env["DATABASE_URL"].startswith("sqlite"):
        return result.returncode
    # The first README command runs on SQLite without Redis: the capabilities' own tests run on
    # that too (a migration once dropped its counter triggers there, unseen by PostgreSQL).
    say("pytest on the embedded run's database (SQLite, no Redis)")
    embedded = {
        **env,
        "DATABASE_URL": f"sqlite:///{ROOT / 'var' / 'test.sqlite3'}",
        "OUTREACH_REQUIRE_SERVICES": "false",
    }
    embedded.pop("REDIS_URL", None)
    command = [py, "-m", "pytest", "-q", *EMBEDDED_SUITES]
    return subprocess.run(command, cwd=ROOT, env=embedded).returncode


def cmd_bench(args: argparse.Namespace) -> int:
    ensure_environment()
    bench_args = ["--quick"] if args.quick else []
    return subprocess.run([str(VENV_PY), "-m", "bench", *bench_args], cwd=ROOT).returncode


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the product on SQLite with the embedded worker")
    run.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    run.add_argument("--sandbox-port", type=int, default=8025, help="the sandbox provider's port")
    run.set_defaults(func=cmd_run)
    test = sub.add_parser("test", help="run every gate and the whole test suite")
    test.set_defaults(func=cmd_test)
    bench = sub.add_parser("bench", help="run every benchmark and print one table")
    bench.add_argument("--quick", action="store_true", help="smaller sizes, a few minutes")
    bench.set_defaults(func=cmd_bench)
    # Anything after `test` that dev.py does not know is passed on to pytest.
    args, args.pytest_args = parser.parse_known_args()
    if args.pytest_args and args.command != "test":
        parser.error(f"unrecognized arguments: {' '.join(args.pytest_args)}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
