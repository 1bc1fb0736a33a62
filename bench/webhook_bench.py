"""Webhook ingestion: signed Twilio status callbacks per second through our real view, served
by gunicorn, beside a bare Django view doing one UPDATE under the same server and load.

Run: .venv/bin/python -m bench.webhook_bench [--quick]

Both sites run as `gunicorn … -w 2` on the benchmark database with the same settings and
middleware (the baseline is bench/bare_site: our settings with a one-view URLconf). Each
message starts "sent" and gets one "delivered" callback; every request is built and signed
before the clock starts. Client processes with keep-alive-less http.client connections drive
both sites identically, in alternating rounds. Afterwards every message must be delivered and
every request answered 204: nothing lost.
"""

import argparse
import http.client
import math
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import urlencode

from bench.common import (
    BENCH_DATABASE_URL,
    BENCH_REDIS_URL,
    ROOT,
    Row,
    print_table,
    purge_orgs,
    setup_django,
)

PREFIX = "bench-webhook-"
CLIENT_PROCESSES, THREADS_PER_PROCESS = 2, 4
ROUNDS = 2
RATE_TARGET = 1_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`gunicorn APP -w 2` on a free port, on the benchmark database."""

    def __init__(self, app: str, settings_module: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": settings_module,
            "DATABASE_URL": BENCH_DATABASE_URL,
            "REDIS_URL": BENCH_REDIS_URL,
            "DEBUG": "true",
            "PUBLIC_BASE_URL": self.url,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "LOG_LEVEL": "ERROR",
        }
        self.process = subprocess.Popen(
            [
                str(ROOT / ".venv" / "bin" / "gunicorn"),
                app,
                "-w",
                "2",
                "-b",
                f"127.0.0.1:{self.port}",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/accounts/login/")
                connection.getresponse().read()
                connection.close()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("gunicorn did not answer within 30 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _requests(server_url: str, messages: list[tuple[int, str, str]], bare: bool) -> list:
    """(path, body, headers) for each message, signed as Twilio signs status callbacks."""
    from django.conf import settings
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(settings.TWILIO_AUTH_TOKEN)
    built = []
    for message_id, address, sid in messages:
        path = f"/bare/{message_id}/" if bare else f"/webhooks/twilio/status/{message_id}/"
        params = {
            "AccountSid": settings.TWILIO_ACCOUNT_SID,
            "MessageSid": sid,
            "MessageStatus": "delivered",
            "To": address,
            "From": "+12125550100",
            "ApiVersion": "2010-04-01",
        }
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": validator.compute_signature(server_url + path, params),
        }
        built.append((path, urlencode(params), headers))
    return built


def _client(port: int, requests: list, start: float, out) -> None:
    """One client process: threads posting its share of the requests, one at a time each."""
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def post(share: list) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        seen: dict[int, int] = {}
        for path, body, headers in share:
            try:
                connection.request("POST", path, body, headers)
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                connection.close()
                status = 0
            seen[status] = seen.get(status, 0) + 1
        connection.close()
        with lock:
            for status, n in seen.items():
                statuses[status] = statuses.get(status, 0) + n

    threads = [
        threading.Thread(target=post, args=(requests[i::THREADS_PER_PROCESS],))
        for i in range(THREADS_PER_PROCESS)
    ]
    time.sleep(max(0.0, start - time.time()))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put((statuses, time.time()))


def drive(port: int, requests: list) -> tuple[float, dict[int, int]]:
    """Posts every request from client processes at once; (seconds, responses by status)."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    start = time.time() + 1.5  # every process spawned and waiting before the clock starts
    processes = [
        context.Process(target=_client, args=(port, requests[i::CLIENT_PROCESSES], start, out))
        for i in range(CLIENT_PROCESSES)
    ]
    for process in processes:
        process.start()
    results = [out.get(timeout=600) for _ in processes]
    for process in processes:
        process.join()
    statuses: dict[int, int] = {}
    for seen, _ in results:
        for status, n in seen.items():
            statuses[status] = statuses.get(status, 0) + n
    return max(finished for _, finished in results) - start, statuses


def _sent_messages(n: int) -> list[tuple[int, str, str]]:
    """n messages in status "sent", each with the provider id Twilio gave it."""
    from django.db import connection

    from bench.data import add_messages, analyze, make_campaign

    bench = make_campaign(PREFIX)
    add_messages(bench, n, status_sql="'sent'")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE delivery_message SET provider_id = 'SM' || lpad(id::text, 32, '0'),"
            " sent_at = now() WHERE campaign_id = %s RETURNING id, address, provider_id",
            [bench.campaign.pk],
        )
        rows = sorted(cursor.fetchall())
    analyze()
    return rows


def _delivered(ids: list[int]) -> int:
    from delivery.models import Message

    return Message.objects.filter(pk__in=ids, status="delivered").count()


def run(quick: bool) -> list[Row]:
    setup_django()
    purge_orgs(PREFIX)
    n = 4_000 if quick else 16_000
    ours_server = bare_server = None
    try:
        messages = _sent_messages(2 * n)
        ours_messages, bare_messages = messages[:n], messages[n:]
        ours_server = Server("outreach_site.wsgi", "outreach_site.settings")
        bare_server = Server("bench.bare_site.wsgi", "bench.bare_site.settings")
        ours_requests = _requests(ours_server.url, ours_messages, bare=False)
        bare_requests = _requests(bare_server.url, bare_messages, bare=True)
        seconds = {"ours": 0.0, "bare": 0.0}
        answered = {"ours": {}, "bare": {}}
        # Alternating rounds, so that a noisy moment on the machine falls on both.
        per_round = math.ceil(n / ROUNDS)
        for r in range(ROUNDS):
            for name, server, requests in (
                ("bare", bare_server, bare_requests),
                ("ours", ours_server, ours_requests),
            ):
                took, statuses = drive(server.port, requests[r * per_round : (r + 1) * per_round])
                seconds[name] += took
                for status, count in statuses.items():
                    answered[name][status] = answered[name].get(status, 0) + count
        lost = {
            "ours": n - _delivered([m[0] for m in ours_messages]),
            "bare": n - _delivered([m[0] for m in bare_messages]),
        }
    finally:
        for server in (ours_server, bare_server):
            if server is not None:
                server.stop()
        purge_orgs(PREFIX)
    ours, bare = n / seconds["ours"], n / seconds["bare"]
    ok = answered["ours"] == {204: n} and lost["ours"] == 0
    if answered["bare"] != {204: n} or lost["bare"]:
        print(f"baseline answers {answered['bare']}, not delivered {lost['bare']}", file=sys.stderr)
    return [
        Row(
            f"Twilio status webhooks/s, {n:,} via gunicorn -w 2 vs bare UPDATE view",
            ours,
            bare,
            "req/s",
            f"≥{RATE_TARGET:,}/s and ≥1.0x bare",
            ok and ours >= RATE_TARGET and ours >= bare,
        ),
        Row(
            f"webhook loss: {n:,} callbacks, answers not 204 + messages not delivered",
            n - answered["ours"].get(204, 0) + lost["ours"],
            None,
            "msg",
            "0",
            ok,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer callbacks")
    print_table("Webhook ingestion", run(parser.parse_args().quick))


if __name__ == "__main__":
    main()
