"""Per-sender pacing shared by every worker: a GCRA bucket in Redis (in-process without it).

Providers and carriers count sliding windows, so the limit holds in every second, not only in
each wall-clock second: no window of one second ever sees more requests start than the sender's
rate. A reservation of n messages gets a slot that opens at one instant and by which each of its
requests must have started; a request that cannot start by then is not sent, and its messages
take a new slot.
"""

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple

from django.conf import settings

# How late after its slot opens (plus its spread) a request may still start: a loaded machine, a
# long GC or a slow answer from Redis past this gives the slot up instead of crowding the next.
LATE_LIMIT = 0.015
# How far apart the same request's start here and its arrival at the provider may drift between
# two requests (the SDK building it, the connection, the provider's own clock): on a loaded
# 2-core machine the sandbox's timestamps lag our starts by up to ~5 ms more for one request than
# for another.
ARRIVAL_SPREAD = 0.01
# Slots are held to the limit in every window this long: a second, widened by the most a request
# may start late and arrive later than another, so at the provider every second holds the limit.
SPAN = 1 + LATE_LIMIT + ARRIVAL_SPREAD

# One atomic step, in microseconds. GCRA spreads slots evenly: each starts where the last one's
# messages end, at `interval` apart. The slot log then makes the limit hard: a slot whose requests
# may start until `start + spread` counts in every window up to then plus SPAN, and a slot that
# would push any such window over the limit moves to the instant enough older slots have left.
# The reservation itself, as a Lua function shared by this module's script and the ready queue's
# (delivery/ready.py), in microseconds of Redis's clock. `busy` is when the caller will be done
# with the requests it reserved before this one (0: none): requests sent one after another start
# no earlier, so the slot's spread grows by any wait for them. Returns the slot's start and spread.
RESERVE_FUNCTION = """
local function reserve(tat_key, slots_key, now, interval, n, limit, span, lead, spread, busy)
  local start = tonumber(redis.call('GET', tat_key) or '0')
  if start < now + lead then start = now + lead end
  while true do
    local oldest = redis.call('LINDEX', slots_key, 0)
    if not oldest or tonumber(string.match(oldest, '^(%d+)')) > now - span then break end
    redis.call('LPOP', slots_key)
  end
  local lasts, sizes = {}, {}
  for _, entry in ipairs(redis.call('LRANGE', slots_key, 0, -1)) do
    local last, size = string.match(entry, '^(%d+) (%d+)$')
    table.insert(lasts, tonumber(last))
    table.insert(sizes, tonumber(size))
  end
  for _ = 0, #lasts do
    local used, leaves = 0, nil
    for i = 1, #lasts do
      if lasts[i] > start - span then
        used = used + sizes[i]
        if leaves == nil or lasts[i] < leaves then leaves = lasts[i] end
      end
    end
    if used + n <= limit or leaves == nil then break end
    start = leaves + span
  end
  if busy > start then spread = spread + busy - start end
  redis.call('RPUSH', slots_key, string.format('%d %d', start + spread, n))
  local tat = start + n * interval
  redis.call('SET', tat_key, string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 60000)
  redis.call('PEXPIRE', slots_key, math.ceil((tat - now + spread + span) / 1000) + 60000)
  return start, spread
end
"""
_RESERVE = (
    RESERVE_FUNCTION
    + """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local start = reserve(KEYS[1], KEYS[2], now, tonumber(ARGV[1]), tonumber(ARGV[2]),
  tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), 0)
return tostring(start - now)
"""
)
_PENALISE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local until_ = now + tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < until_ then
  redis.call('SET', KEYS[1], string.format('%d', until_), 'PX', math.ceil(ARGV[1] / 1000) + 60000)
end
return 1
"""

log = logging.getLogger(__name__)


def per_second_cap(per_second: float, n: int) -> int:
    """The most that may start in any one second (never below one reservation)."""
    return max(n, math.floor(per_second))


def interval_for(per_second: float, n: int) -> float:
    """Seconds between two messages' slots: the sender's rate, and SPAN for each `cap` of them."""
    return max(1 / per_second, SPAN / per_second_cap(per_second, n))


class Slot(NamedTuple):
    """A reserved chunk's time on `time.monotonic()`: no request before `opens`, none after
    `closes`."""

    opens: float
    closes: float

    def sleep_until(self, instant: float, sleep: Callable[[float], None] = time.sleep) -> None:
        """Sleeps until the monotonic `instant` (at once if it has passed)."""
        if (delay := instant - time.monotonic()) > 0:
            sleep(delay)

    def missed(self) -> bool:
        """Whether a request starting now would start after the slot closed."""
        return time.monotonic() > self.closes


class Throttle:
    """Reserves send slots for a sender; `reserve` returns the delay before the slot opens."""

    # How long the last answers took (decaying): Redis's instant for a slot lies somewhere
    # between the asking and the answer.
    answer_time = 0.0

    def take(
        self, sender_id: int, per_second: float, n: int, *, lead: float = 0.0, spread: float = 0.0
    ) -> Slot:
        """A slot for n messages opening at least `lead` from now, whose requests all start
        within `spread` of each other (plus LATE_LIMIT)."""
        # The slot opens once the answer is in, never before Redis's instant for it; it closes
        # counted from the asking, so the slot is reserved with room for an answer as slow as
        # the last ones (a loaded Redis would otherwise close every slot before it opens).
        spread += self.answer_time
        asked = time.monotonic()
        delay = self.reserve(sender_id, per_second, n, lead=lead, spread=spread)
        return self.slot(asked, time.monotonic(), delay, spread)

    def slot(self, asked: float, answered: float, delay: float, spread: float) -> Slot:
        """The slot Redis (or this process) reserved `delay` after an instant between `asked`
        and `answered`, for requests that start within `spread` of each other."""
        self.answer_time = max(answered - asked, 0.8 * self.answer_time)
        return Slot(answered + delay, asked + delay + spread + LATE_LIMIT)

    def reserve(
        self, sender_id: int, per_second: float, n: int, *, lead: float = 0.0, spread: float = 0.0
    ) -> float:
        raise NotImplementedError

    def penalise(self, sender_id: int, seconds: float) -> None:
        """Holds the sender back (the provider said 429) for `seconds`."""
        raise NotImplementedError

    def next_opening(self, sender_id: int) -> float:
        """When (time.monotonic()) the sender's next slot opens at the earliest, as far as this
        process knows (0: not known here; Redis's own answer is in the ready queue's pop)."""
        return 0.0


def throttle_key(sender_id: int | str) -> str:
    """The sender's GCRA instant in Redis; its slot log is this key plus ":slots"."""
    return f"outreach:throttle:{sender_id}"


def microseconds(seconds: float) -> int:
    return math.ceil(seconds * 1_000_000)


class RedisThrottle(Throttle):
    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._reserve = self.client.register_script(_RESERVE)
        self._penalise = self.client.register_script(_PENALISE)

    def reserve(
        self, sender_id: int, per_second: float, n: int, *, lead: float = 0.0, spread: float = 0.0
    ) -> float:
        key = throttle_key(sender_id)
        delay = self._reserve(
            keys=[key, f"{key}:slots"],
            args=[
                microseconds(interval_for(per_second, n)),
                n,
                per_second_cap(per_second, n),
                microseconds(SPAN),
                microseconds(lead),
                microseconds(spread),
            ],
        )
        return max(0.0, int(delay) / 1_000_000)

    def penalise(self, sender_id: int, seconds: float) -> None:
        self._penalise(keys=[throttle_key(sender_id)], args=[microseconds(seconds)])


class LocalThrottle(Throttle):
    """The embedded run's throttle: one process, so a lock and a dict are the shared state."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tat: dict[int, int] = {}
        # Per sender, (instant its last request may start, size) of each recent slot, in µs.
        self._slots: dict[int, deque[tuple[int, int]]] = {}

    def reserve(
        self, sender_id: int, per_second: float, n: int, *, lead: float = 0.0, spread: float = 0.0
    ) -> float:
        limit, span = per_second_cap(per_second, n), microseconds(SPAN)
        with self._lock:
            now = microseconds(self._clock())
            start = max(self._tat.get(sender_id, 0), now + microseconds(lead))
            slots = self._slots.setdefault(sender_id, deque())
            while slots and slots[0][0] <= now - span:
                slots.popleft()
            # The same walk as the Redis script's: move past older slots until this one fits.
            for _ in range(len(slots) + 1):
                counted = [(last, size) for last, size in slots if last > start - span]
                if not counted or sum(size for _, size in counted) + n <= limit:
                    break
                start = min(last for last, _ in counted) + span
            slots.append((start + microseconds(spread), n))
            self._tat[sender_id] = start + n * microseconds(interval_for(per_second, n))
            return (start - now) / 1_000_000

    def next_opening(self, sender_id: int) -> float:
        with self._lock:
            return self._tat.get(sender_id, 0) / 1_000_000

    def penalise(self, sender_id: int, seconds: float) -> None:
        with self._lock:
            until = microseconds(self._clock() + seconds)
            self._tat[sender_id] = max(self._tat.get(sender_id, 0), until)


@lru_cache(maxsize=1)
def get_throttle() -> Throttle:
    return RedisThrottle(settings.REDIS_URL) if settings.REDIS_URL else LocalThrottle()
