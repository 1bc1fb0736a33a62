"""Throttle accuracy: several worker processes saturating one sender through the Redis throttle.

Run: .venv/bin/python -m bench.throttle_bench [--quick]

Each process reserves chunks of a tenth of a second's worth (as the sending engine does), sleeps
the delay it is given and records the wall-clock instant its chunk "sends". Counted per
wall-clock second: the most any second carried (never above the rate) and the mean over the
whole seconds of the run (within 5% of the rate). Redis database 14; only this run's keys are
touched, and deleted afterwards.
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
    time.sleep(max(0.0, start - time.time()))
    while time.time() < end:
        delay = throttle.reserve(sender_id, rate, chunk)
        if delay > 0:
            time.sleep(delay)
        sent_at = time.time()
        if sent_at < end:
            sends.append((sent_at, chunk))
    out.put(sends)


def measure(rate: float, workers: int, seconds: float) -> tuple[int, float, int]:
    """(most in one wall-clock second, mean per whole second, whole seconds counted)."""
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
    client.delete(key, *client.keys(f"{key}:second:*"))
    per_second = Counter()
    for sent_at, n in sends:
        per_second[math.floor(sent_at)] += n
    whole = [per_second[s] for s in range(start, math.floor(end))]
    return max(per_second.values()), sum(whole) / len(whole), len(whole)


def run(quick: bool) -> list[Row]:
    seconds = 4 if quick else 8
    most, mean, counted = measure(RATE, WORKERS, seconds)
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
