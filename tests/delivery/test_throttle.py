"""The per-sender throttle: never above the limit in any sliding second, however many workers.

How close to the limit a busy sender gets is a speed, measured in bench/throttle_bench.py.
"""

import threading
import time
from itertools import pairwise

import pytest
import redis

from delivery.throttle import LATE_LIMIT, SPAN, LocalThrottle, RedisThrottle
from tests.conftest import assert_provider_kept_rate


def schedule(throttle, *, sender_id: int, rate: float, chunk: int, chunks: int, threads: int):
    """Sends like several workers at once, each starting its chunk inside its slot as sending
    does (or giving the slot up); returns one send time per message."""
    sends: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        sent = 0
        while sent < chunks:
            slot = throttle.take(sender_id, rate, chunk)
            slot.sleep_until(slot.opens)
            # Read before the check: a send recorded as on time really started by the close.
            at = time.time()
            if slot.missed():
                continue
            sent += 1
            with lock:
                sends.extend([at] * chunk)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sends


def clear(redis_url: str, sender_id: int) -> None:
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"outreach:throttle:{sender_id}*"):
        client.delete(key)


def test_the_redis_throttle_holds_across_concurrent_workers(redis_url):
    clear(redis_url, 990001)
    sends = schedule(
        RedisThrottle(redis_url), sender_id=990001, rate=100, chunk=10, chunks=12, threads=4
    )
    assert len(sends) == 480
    assert_provider_kept_rate(sends, 100)


def test_the_local_throttle_holds_across_threads():
    sends = schedule(LocalThrottle(), sender_id=1, rate=50, chunk=5, chunks=10, threads=3)
    assert len(sends) == 150
    assert_provider_kept_rate(sends, 50)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_it_keeps_every_sliding_second_to_the_rate_whatever_the_chunks_and_their_spread():
    # Workers reserving chunks of different sizes, some sent one request after another (a
    # spread): every request may start until its slot's close, and no second holds more.
    clock = FakeClock()
    throttle = LocalThrottle(clock=clock)
    slots: list[tuple[float, float, int]] = []
    for i in range(300):
        n, spread = (7, 0.0) if i % 3 else (2, 0.2)
        opens = clock.now + throttle.reserve(4, 20, n, spread=spread)
        slots.append((opens, opens + spread + LATE_LIMIT, n))
        clock.now += 0.01 * (i % 5)
    # A request of a slot may start at any instant from its opening to its close: the worst
    # case puts each slot's messages wherever a window [t, t + 1) catches most of them.
    instants = sorted({at for opens, closes, _ in slots for at in (opens, closes)})
    for t in instants:
        caught = sum(n for opens, closes, n in slots if opens < t + 1 and closes >= t)
        assert caught <= 20, (t, caught)


def test_the_redis_throttle_spaces_slots_like_the_local_one(redis_url):
    clear(redis_url, 990002)
    throttle = RedisThrottle(redis_url)
    for _ in range(41):
        throttle.reserve(990002, 20, 1)
    # Read back on Redis's own clock (µs), whatever the machine's load did to the asking.
    slots = redis.Redis.from_url(redis_url).lrange("outreach:throttle:990002:slots", 0, -1)
    opens = [int(entry.split()[0]) / 1_000_000 for entry in slots]
    assert len(opens) == 41
    # Back to back, a second's worth apart: at most 20 opening in any SPAN, none bunched.
    assert opens[20] - opens[0] >= SPAN - 1e-6
    assert all(b - a >= SPAN / 20 - 1e-6 for a, b in pairwise(opens))


def test_a_penalty_holds_the_sender_back():
    clock = FakeClock()
    throttle = LocalThrottle(clock=clock)
    throttle.penalise(7, 3.0)
    assert throttle.reserve(7, 10, 1) == pytest.approx(3.0)
    # Other senders are not held back.
    assert throttle.reserve(8, 10, 1) == 0


def test_a_slow_sender_gets_one_message_per_interval():
    throttle = LocalThrottle(clock=FakeClock())
    delays = [throttle.reserve(3, 1 / 60, 1) for _ in range(3)]  # one per minute
    assert delays == pytest.approx([0, 60, 120])


def test_a_slot_opens_after_the_time_asked_to_get_ready():
    throttle = LocalThrottle()
    assert throttle.reserve(6, 10, 1, lead=0.05) >= 0.05
    asked = time.monotonic()
    slot = throttle.take(9, 10, 1, lead=0.05)
    assert slot.opens >= asked + 0.05 and slot.closes > slot.opens


def test_a_worker_that_wakes_past_its_slot_is_told_it_missed_it():
    # A loaded machine can wake a worker late: its chunk would crowd the next slots' second.
    slot = LocalThrottle().take(5, 10, 1)
    slot.sleep_until(slot.closes + 0.01)
    assert slot.missed()


def test_a_missed_slot_still_counts_against_the_sender():
    throttle = LocalThrottle(clock=FakeClock())
    throttle.reserve(5, 10, 1)
    throttle.reserve(5, 10, 1)  # given up by a worker woken too late
    assert throttle.reserve(5, 10, 1) == pytest.approx(2 * SPAN / 10)
