"""The per-sender throttle: never above the limit in any second, close to it when busy."""

import threading
import time
from collections import Counter

import redis

from delivery.throttle import GUARD, LocalThrottle, RedisThrottle


def schedule(throttle, *, sender_id: int, rate: float, chunk: int, chunks: int, threads: int):
    """Sends like several workers at once, each waiting for its slot as sending does; returns
    each chunk's (send time, size)."""
    sends: list[tuple[float, int]] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(chunks):
            throttle.wait_for_slot(sender_id, rate, chunk)
            at = time.time()
            with lock:
                sends.append((at, chunk))

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sends


def check(sends, rate):
    per_second = Counter()
    for at, n in sends:
        per_second[int(at)] += n
    assert max(per_second.values()) <= rate, per_second.most_common(3)
    # Full seconds in the middle of the run are saturated: within 5% of the rate.
    seconds = sorted(per_second)[1:-1]
    assert seconds and all(per_second[s] >= 0.95 * rate for s in seconds), per_second


def test_the_redis_throttle_holds_across_concurrent_workers(redis_url):
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter("outreach:throttle:990001*"):
        client.delete(key)
    sends = schedule(
        RedisThrottle(redis_url), sender_id=990001, rate=100, chunk=10, chunks=12, threads=4
    )
    check(sends, 100)


def test_the_local_throttle_holds_across_threads():
    sends = schedule(LocalThrottle(), sender_id=1, rate=50, chunk=5, chunks=10, threads=3)
    check(sends, 50)


def test_a_penalty_holds_the_sender_back():
    throttle = LocalThrottle()
    throttle.penalise(7, 3.0)
    assert throttle.reserve(7, 10, 1) >= 2.9
    # Other senders are not held back (at most to the next second, if this one is nearly over).
    assert throttle.reserve(8, 10, 1) <= GUARD


def test_a_slow_sender_gets_one_message_per_interval():
    throttle = LocalThrottle()
    delays = [throttle.reserve(3, 1 / 60, 1) for _ in range(3)]  # one per minute
    assert [round(d) for d in delays] == [0, 60, 120]


def test_a_worker_that_wakes_past_its_slot_takes_a_new_one():
    # A loaded machine can wake a worker late, carrying its chunk into the next second.
    reserved: list[float] = []

    class Recorded(LocalThrottle):
        def reserve(self, sender_id: int, per_second: float, n: int) -> float:
            reserved.append(super().reserve(sender_id, per_second, n))
            return reserved[-1]

    throttle = Recorded()
    throttle.reserve(5, 10, 1)  # someone already holds the first slot
    throttle.wait_for_slot(5, 10, 1, sleep=lambda seconds: time.sleep(seconds + 0.2))
    # The other worker's slot, the one woken late for, then at least one more.
    assert len(reserved) >= 3
    assert reserved[1] > 0.05  # the late one was a real wait for the next slot
