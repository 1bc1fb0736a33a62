"""Throttle accuracy: several worker processes saturating one sender through the Redis throttle.

Run: .venv/bin/python -m bench.throttle_bench [--quick]

Each process reserves chunks of a tenth of a second's worth (as the sending engine does), sleeps
until its slot opens and records the wall-clock instant its chunk "sends" (or gives the slot up
when it woke after the slot closed, as the engine does). Counted: the most any wall-clock second
carried and the most any sliding second (any window [t, t + 1)) carried, neither ever above the
rate, and the mean over the whole seconds of the run (within 5% of the rate: how close a busy
sender gets, which tests do not assert on a loaded machine). Redis database 14; only this run's
keys are touched, and deleted afterwards.
"""

import argparse
import math
import multiprocessing
import time
import uuid
from collections import Counter

from bench.common import BENCH_REDIS_URL, Row, print_table

RATE = 200
WORKERS = 4
MEAN_TOLERANCE = 0.05


def _worker(url: str, sender_id: int, rate: float, start: float, end: float, out) -> None:
    from delivery.throttle import RedisThrottle

    throttle = RedisThrottle(url)
    chunk = max(1, int(rate / 10))
    sends: list[tuple[float, int]] = []
    # A long-lived worker's connection is open and the script loaded: not so a fresh process's
    # first reservation, whose slow answer would give its slot up.
    throttle.reserve(-sender_id, rate, chunk)
    throttle.client.delete(
        f"outreach:throttle:{-sender_id}", f"outreach:throttle:{-sender_id}:slots"
    )
    time.sleep(max(0.0, start - time.time()))
    while time.time() < end:
        slot = throttle.take(sender_id, rate, chunk)
        slot.sleep_until(slot.opens)
        sent_at = time.time()
        if sent_at < end and not slot.missed():
            sends.append((sent_at, chunk))
    out.put(sends)


def busiest_sliding_second(sends: list[tuple[float, int]]) -> int:
    """The most messages sent in any window [t, t + 1), t at a send (where the busiest starts)."""
    sends = sorted(sends)
    most, end, inside = 0, 0, 0
    for at, n in sends:
        while end < len(sends) and sends[end][0] < at + 1:
            inside += sends[end][1]
            end += 1
        most = max(most, inside)
        inside -= n
    return most


def measure(rate: float, workers: int, seconds: float) -> tuple[int, int, float, int]:
    """(most in one wall-clock second, most in one sliding second, mean per whole second, whole
    seconds counted)."""
    import redis

    sender_id = int(uuid.uuid4().int % 10**12) + 10**12
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    # Every worker starts at the same instant, a moment after all have been spawned.
    start = math.floor(time.time()) + 2
    end = start + seconds
    processes = [
        context.Process(target=_worker, args=(BENCH_REDIS_URL, sender_id, rate, start, end, out))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    sends = [send for _ in processes for send in out.get(timeout=seconds + 30)]
    for process in processes:
        process.join()
    client = redis.Redis.from_url(BENCH_REDIS_URL)
    key = f"outreach:throttle:{sender_id}"
    client.delete(key, f"{key}:slots")
    per_second = Counter()
    for sent_at, n in sends:
        per_second[math.floor(sent_at)] += n
    whole = [per_second[s] for s in range(start, math.floor(end))]
    return (
        max(per_second.values()),
        busiest_sliding_second(sends),
        sum(whole) / len(whole),
        len(whole),
    )


def run(quick: bool) -> list[Row]:
    seconds = 4 if quick else 8
    most, sliding, mean, counted = measure(RATE, WORKERS, seconds)
    return [
        Row(
            f"throttle: most sent in one wall-clock second, {WORKERS} processes vs rate",
            most,
            RATE,
            "msg",
            "≤1.00x (never above the rate)",
            most <= RATE,
        ),
        Row(
            f"throttle: most sent in one sliding second, {WORKERS} processes vs rate",
            sliding,
            RATE,
            "msg",
            "≤1.00x (never above the rate)",
            sliding <= RATE,
        ),
        Row(
            f"throttle: mean per second over {counted} whole seconds vs rate",
            mean,
            RATE,
            "msg/s",
            f"{1 - MEAN_TOLERANCE:.2f}x-{1 + MEAN_TOLERANCE:.2f}x",
            abs(mean / RATE - 1) <= MEAN_TOLERANCE,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a shorter run")
    print_table("Throttle accuracy", run(parser.parse_args().quick))


if __name__ == "__main__":
    main()
