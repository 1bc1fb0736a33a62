"""The ready queue: a sending loop pops only what may go now, the sender whose slot opens first,
priority before bulk, never one entry twice, every sender's rate kept in each sliding second."""

import threading
import time

import pytest
import redis

from delivery.ready import (
    BULK,
    PREFIX,
    PRIORITY,
    Entry,
    LocalReadyQueue,
    RedisReadyQueue,
    sender_pace,
)
from delivery.throttle import SPAN, LocalThrottle, RedisThrottle, throttle_key
from tests.conftest import assert_provider_kept_rate

# Sender ids no factory reaches, so that the tests' Redis keys are their own.
A, B, C = 9_100_001, 9_100_002, 9_100_003


def fresh_redis_queue(url: str) -> RedisReadyQueue:
    client = redis.Redis.from_url(url)
    keys = [k for k in client.scan_iter(f"{PREFIX}*")]
    keys += [k for s in (A, B, C) for k in (throttle_key(s), f"{throttle_key(s)}:slots")]
    if keys:
        client.delete(*keys)
    return RedisReadyQueue(url, RedisThrottle(url))


@pytest.fixture(params=["redis", "local"])
def queue(request):
    if request.param == "local":
        return LocalReadyQueue(LocalThrottle())
    return fresh_redis_queue(request.getfixturevalue("redis_url"))


def entries(campaign_id: int, *ids: int) -> list[Entry]:
    return [Entry(campaign_id, i) for i in ids]


def popped_ids(popped) -> list[int]:
    return [e.message_id for chunk in popped.chunks for e in chunk.entries]


def pop_when_due(queue, **kw):
    """Pops until something comes (a slot opens), looking again as often as the queue says."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        popped = pop(queue, **kw)
        if popped.chunks:
            return popped
        time.sleep(min(0.05, max(0.001, popped.wait or 0.0)))
    pytest.fail("nothing came due within 10 s")


def pop(queue, **kw):
    return queue.pop(max_requests=kw.pop("max_requests", 8), lead=0.005, spread_per_request=0, **kw)


def test_it_pops_the_sender_whose_slot_opens_first_and_says_how_long_until_the_next(queue):
    queue.push(sender_pace(A, 1, "sms"), entries(1, 11, 12))
    queue.push(sender_pace(B, 1, "sms"), entries(2, 21))
    first = pop(queue)
    # Both were due: one chunk each (one slot of a 1/s sender is one message), A's first.
    assert popped_ids(first) == [11, 21]
    asked = time.monotonic()
    again = pop(queue)
    answered = time.monotonic()
    assert not again.chunks
    # A's next slot opens SPAN after its first; the wait is counted from the pop's instant,
    # somewhere between asking and the answer, however long this machine took.
    opens = first.chunks[0].slot.opens + SPAN
    assert asked + again.wait - 0.02 <= opens <= answered + again.wait + 0.02
    assert popped_ids(pop_when_due(queue)) == [12]
    assert pop(queue).wait is None  # nothing queued at all


def test_priority_goes_before_bulk_of_every_sender(queue):
    queue.push(sender_pace(A, 10, "sms"), entries(1, 11, 12, 13))
    queue.push(sender_pace(B, 10, "sms"), entries(2, 21), lane=PRIORITY)
    popped = pop(queue, max_requests=1)
    assert popped_ids(popped) == [21] and popped.chunks[0].lane == PRIORITY


def test_a_chunk_put_back_goes_first_again(queue):
    pace = sender_pace(A, 100, "sms")
    queue.push(pace, entries(1, 11, 12))
    chunk = pop(queue, max_requests=1).chunks[0]
    assert [e.message_id for e in chunk.entries] == [11] and chunk.lane == BULK
    queue.push_front(chunk, pace)
    assert popped_ids(pop_when_due(queue, max_requests=1)) == [11]


def test_a_held_back_sender_waits_out_its_back_off(queue):
    queue.push(sender_pace(A, 50, "sms"), entries(1, 11))
    before = time.monotonic()
    queue.throttle.penalise(A, 0.5)
    popped = pop(queue)
    after = time.monotonic()
    # Not before the back-off ends, counted from the penalty, however late the pop came.
    assert not popped.chunks
    assert before + 0.5 - 0.02 <= after + popped.wait
    assert before + popped.wait <= after + 0.5 + 0.02


def test_a_lookahead_takes_the_later_slots_of_the_same_pop(queue):
    queue.push(sender_pace(A, 50, "sms"), entries(1, *range(100, 120)))
    popped = pop(queue, max_requests=64, lookahead=0.1)
    # A slot every 20.5 ms: the one opening now and those opening within the next 100 ms,
    # never further.
    assert 4 <= len(popped.chunks) <= 7
    opens = [chunk.slot.opens for chunk in popped.chunks]
    assert opens == sorted(opens) and opens[-1] - opens[0] <= 0.1 + 0.03


def test_loops_side_by_side_pop_each_entry_once_within_every_senders_rate(redis_url):
    queue = fresh_redis_queue(redis_url)
    rates = {A: 5, B: 8, C: 3}
    for sender, rate in rates.items():
        queue.push(sender_pace(sender, rate, "sms"), entries(sender, *range(sender, sender + 12)))
    taken: list[tuple[int, int, float]] = []
    lock = threading.Lock()

    def loop() -> None:
        mine = RedisReadyQueue(redis_url, RedisThrottle(redis_url))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            popped = mine.pop(max_requests=4, lead=0.005, spread_per_request=0)
            if popped.wait is None and not popped.chunks:
                return
            for chunk in popped.chunks:
                chunk.slot.sleep_until(chunk.slot.opens)
                # Read before the check: a send counted as on time really started by the close.
                at = time.time()
                if chunk.slot.missed():
                    # Woken after the slot closed (a busy machine): as sending does, not sent
                    # then, and back at the head of its queue for another slot.
                    mine.push_front(
                        chunk, sender_pace(chunk.sender_id, rates[chunk.sender_id], "sms")
                    )
                    continue
                with lock:
                    taken.extend((chunk.sender_id, e.message_id, at) for e in chunk.entries)
            if not popped.chunks:
                time.sleep(min(0.05, max(0.001, popped.wait)))

    threads = [threading.Thread(target=loop) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [message_id for _, message_id, _ in taken]
    assert sorted(ids) == sorted(i for s in rates for i in range(s, s + 12))
    for sender, rate in rates.items():
        assert_provider_kept_rate((at for s, _, at in taken if s == sender), rate)
