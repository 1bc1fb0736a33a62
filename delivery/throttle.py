"""Per-sender pacing shared by every worker: a GCRA token bucket in Redis (in-process without it).

Each reservation of n messages returns how long to wait before the first may go; message i of it
goes `interval * i` later. Sends are spread evenly at the sender's rate rather than bursting at
each tick, and no second ever carries more than the limit, however many workers reserve at once.
"""

import logging
import math
import threading
import time
from collections.abc import Callable
from functools import lru_cache

from django.conf import settings

# Two rules in one atomic step. GCRA spreads sends evenly: each reservation starts where the last
# one's slots end. A per-second tally then makes the limit hard: a reservation that would push
# its wall-clock second over the limit, or that starts in the last GUARD of a second (it could
# reach the provider in the next one), moves to the start of the next second.
_RESERVE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local interval = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local guard = tonumber(ARGV[4])
local start = tonumber(redis.call('GET', KEYS[1]) or '0')
if start < now then start = now end
for _ = 1, 120 do
  local second = math.floor(start)
  local used = tonumber(redis.call('GET', KEYS[2] .. second) or '0')
  if start - second < 1 - guard and used + n <= limit then break end
  start = second + 1
end
local second = math.floor(start)
redis.call('INCRBY', KEYS[2] .. second, n)
redis.call('EXPIRE', KEYS[2] .. second, 180)
local tat = start + n * interval
redis.call('SET', KEYS[1], tostring(tat), 'PX', math.ceil((tat - now) * 1000) + 60000)
return tostring(start - now)
"""
_PENALISE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local until_ = now + tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < until_ then
  redis.call('SET', KEYS[1], tostring(until_), 'PX', math.ceil(tonumber(ARGV[1]) * 1000) + 60000)
end
return 1
"""


# Seconds at the end of each wall-clock second in which no reservation starts.
GUARD = 0.03
# How late after its slot a chunk may still go: well inside the GUARD before the second ends.
LATE_LIMIT = GUARD / 2

log = logging.getLogger(__name__)


def per_second_cap(per_second: float, n: int) -> int:
    """The most that may go in one wall-clock second (never below one reservation)."""
    return max(n, math.floor(per_second))


class Throttle:
    """Reserve send slots for a sender; `reserve` returns the delay before the first slot."""

    def wait_for_slot(
        self,
        sender_id: int,
        per_second: float,
        n: int,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Sleeps until a reserved slot for n messages, reserving again if it woke up too late.

        A slot starts at least GUARD before the end of its wall-clock second. A worker held up
        past it (a loaded machine, a long GC) could carry the chunk into the next second, which
        other workers may already have filled: it gives the slot up and takes a new one instead.
        """
        while True:
            # The slot is `delay` after the reservation was made, somewhere between asking and
            # the answer: measured from the asking, a slow answer counts as lateness too.
            asked = time.monotonic()
            delay = self.reserve(sender_id, per_second, n)
            if delay > 0:
                sleep(delay)
            late = time.monotonic() - (asked + delay)
            if late <= LATE_LIMIT:
                return
            log.info("Sender %s woke %.3f s after its slot; reserving again", sender_id, late)

    def reserve(self, sender_id: int, per_second: float, n: int) -> float:
        raise NotImplementedError

    def penalise(self, sender_id: int, seconds: float) -> None:
        """Holds the sender back (the provider said 429) for `seconds`."""
        raise NotImplementedError


class RedisThrottle(Throttle):
    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._reserve = self.client.register_script(_RESERVE)
        self._penalise = self.client.register_script(_PENALISE)

    def reserve(self, sender_id: int, per_second: float, n: int) -> float:
        key = f"outreach:throttle:{sender_id}"
        delay = self._reserve(
            keys=[key, f"{key}:second:"],
            args=[1 / per_second, n, per_second_cap(per_second, n), GUARD],
        )
        return max(0.0, float(delay))

    def penalise(self, sender_id: int, seconds: float) -> None:
        self._penalise(keys=[f"outreach:throttle:{sender_id}"], args=[seconds])


class LocalThrottle(Throttle):
    """The embedded run's throttle: one process, so a lock and a dict are the shared state."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tat: dict[int, float] = {}
        self._seconds: dict[tuple[int, int], int] = {}

    def reserve(self, sender_id: int, per_second: float, n: int) -> float:
        cap = per_second_cap(per_second, n)
        with self._lock:
            now = self._clock()
            start = max(self._tat.get(sender_id, 0.0), now)
            while True:
                second = math.floor(start)
                used = self._seconds.get((sender_id, second), 0)
                if start - second < 1 - GUARD and used + n <= cap:
                    break
                start = second + 1
            self._seconds[(sender_id, second)] = used + n
            if len(self._seconds) > 10_000:
                # Only the current and coming seconds matter.
                self._seconds = {k: v for k, v in self._seconds.items() if k[1] >= now - 2}
            self._tat[sender_id] = start + n / per_second
            return start - now

    def penalise(self, sender_id: int, seconds: float) -> None:
        with self._lock:
            until = self._clock() + seconds
            self._tat[sender_id] = max(self._tat.get(sender_id, 0.0), until)


@lru_cache(maxsize=1)
def get_throttle() -> Throttle:
    return RedisThrottle(settings.REDIS_URL) if settings.REDIS_URL else LocalThrottle()
