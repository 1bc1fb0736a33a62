"""The ready queue: claimed messages waiting for their sender's next throttle slot.

The tick claims a tick's worth of each sender's due messages and pushes them here, one queue per
sender (two: priority first). A sending worker pops only what may go now: the sender whose next
slot opens first, across every sender with messages waiting, its slot reserved in the same
atomic step. No worker waits on one sender's throttle while another's messages may go, so the
workers needed follow the messages per second, not the number of senders sending at once.

The database stays the record of every message (claimed, handed over, sent): the queue is only
the order in which claims are taken up. A claim whose entry is lost (Redis restarted, a worker
killed after popping it) is queued again when its claim lease expires; an entry whose claim is
no longer live is skipped by the sender, whose hand-over only a live claim can win.
"""

import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

from django.conf import settings

from campaigns.models import Campaign, Channel
from delivery.throttle import (
    RESERVE_FUNCTION,
    SPAN,
    Slot,
    Throttle,
    get_throttle,
    interval_for,
    microseconds,
    per_second_cap,
    throttle_key,
)

PRIORITY, BULK = "hi", "lo"
# A slot opening this close to the asked-for lead counts as opening now.
NEAR = 0.002
LANES = (PRIORITY, BULK)
PREFIX = "outreach:ready:"


class Entry(NamedTuple):
    """One claimed message in a sender's queue, with the releasing tick's clock offset
    (delivery/clock.py)."""

    campaign_id: int
    message_id: int
    clock_offset: float = 0.0

    def encode(self) -> str:
        return f"{self.campaign_id} {self.message_id} {self.clock_offset!r}"

    @classmethod
    def decode(cls, text: str | bytes) -> "Entry":
        if isinstance(text, bytes):
            text = text.decode()
        campaign_id, message_id, offset = text.split(" ")
        return cls(int(campaign_id), int(message_id), float(offset))


@dataclass(frozen=True)
class SenderPace:
    """What the queue needs of a sender: its rate and how many messages one slot carries."""

    sender_id: int
    per_second: float
    chunk: int
    # Requests one chunk makes: an SMS chunk one per message, an email chunk one in all.
    requests: int


class Chunk(NamedTuple):
    """Up to one slot's messages of one sender, popped with that slot reserved."""

    sender_id: int
    lane: str
    slot: Slot
    entries: list[Entry]


@dataclass
class Popped:
    chunks: list[Chunk] = field(default_factory=list)
    # Seconds until the next sender's slot opens; None when nothing is queued at all.
    wait: float | None = None


class ReadyQueue:
    def push(self, pace: SenderPace, entries: Iterable[Entry], *, lane: str = BULK) -> None:
        raise NotImplementedError

    def push_front(self, chunk: Chunk, pace: SenderPace) -> None:
        """Puts a popped chunk back at the head of its queue (its slot went unused)."""
        raise NotImplementedError

    def pop(
        self, *, max_requests: int, lead: float, spread_per_request: float, lookahead: float = 0.0
    ) -> Popped:
        """Chunks of the senders whose next slot opens within `lead` (and NEAR) from now, most
        behind first, with those opening up to `lookahead` later, up to `max_requests` requests
        in all, each with its slot reserved opening at least `lead` from now. Nothing is popped
        before the first slot is about to open: a task holding slots far ahead would leave their
        senders waiting while it sleeps through the nearer ones. A sender may give several
        chunks, one per slot. The group's requests are sent one after another, each taking
        `spread_per_request` (0: all at once, in threads): a slot's spread covers waiting for
        the requests before it."""
        raise NotImplementedError

    def waiting(self) -> int:
        """Senders with messages queued."""
        raise NotImplementedError


# ---------------------------------------------------------------- Redis


# The pop: per lane, the sender whose GCRA instant (its next slot) is earliest, kept as the score
# of a sorted set. A score older than the sender's instant (a 429's back-off moved it, or another
# lane used the sender) is corrected and looked at again.
_POP = (
    RESERVE_FUNCTION
    + """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local prefix, throttle_prefix = ARGV[1], ARGV[2]
local max_requests, lead, step = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local near, span, base = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local lookahead = tonumber(ARGV[9])
local out, wait, requests, looks, busy = {}, nil, 0, 0, 0
for _, lane in ipairs({'hi', 'lo'}) do
  local senders = prefix .. 'senders:' .. lane
  while requests < max_requests and looks < 64 do
    looks = looks + 1
    local head = redis.call('ZRANGE', senders, 0, 0, 'WITHSCORES')
    if #head == 0 then break end
    local sender, score = head[1], tonumber(head[2])
    local tat_key = throttle_prefix .. sender
    local tat = tonumber(redis.call('GET', tat_key) or '0')
    local queue = prefix .. 'q:' .. sender .. ':' .. lane
    local meta = redis.call('HMGET', prefix .. 'pace:' .. sender,
      'interval', 'limit', 'chunk', 'requests')
    if tat > score then
      redis.call('ZADD', senders, tat, sender)
    elseif score > now + lead + (#out == 0 and near or lookahead) then
      if wait == nil or score - now < wait then wait = score - now end
      break
    elseif not meta[1] then
      redis.call('ZREM', senders, sender)
    else
      local per_chunk = tonumber(meta[4])
      if requests > 0 and requests + per_chunk > max_requests then break end
      local entries = redis.call('LPOP', queue, tonumber(meta[3]))
      if not entries then
        redis.call('ZREM', senders, sender)
      else
        local n = #entries
        local made = per_chunk == 1 and 1 or n
        -- The chunk's requests go one after another, after those popped before it.
        local start, spread = reserve(tat_key, tat_key .. ':slots', now, tonumber(meta[1]), n,
          tonumber(meta[2]), span, lead, base + step * (made - 1), busy)
        busy = math.max(start, busy) + step * made
        requests = requests + made
        if redis.call('LLEN', queue) == 0 then
          redis.call('ZREM', senders, sender)
        else
          redis.call('ZADD', senders, tonumber(redis.call('GET', tat_key)), sender)
        end
        table.insert(out, {sender, lane, tostring(start - now), tostring(spread), entries})
      end
    end
  end
  if requests >= max_requests then break end
end
if #out == 0 and wait == nil then
  if redis.call('EXISTS', prefix .. 'senders:hi', prefix .. 'senders:lo') > 0 then wait = 0 end
end
return {out, wait and tostring(wait) or false}
"""
)

_PUSH = """
local prefix, throttle_prefix, sender, lane, front = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
redis.call('HSET', prefix .. 'pace:' .. sender, 'interval', ARGV[6], 'limit', ARGV[7],
  'chunk', ARGV[8], 'requests', ARGV[9])
local queue = prefix .. 'q:' .. sender .. ':' .. lane
for i = 10, #ARGV do
  if front == '1' then redis.call('LPUSH', queue, ARGV[#ARGV + 10 - i])
  else redis.call('RPUSH', queue, ARGV[i]) end
end
local tat = tonumber(redis.call('GET', throttle_prefix .. sender) or '0')
redis.call('ZADD', prefix .. 'senders:' .. lane, 'NX', tat, sender)
return redis.call('LLEN', queue)
"""


class RedisReadyQueue(ReadyQueue):
    """Shared by every worker on every host; the pop and the push are each one atomic script."""

    def __init__(self, url: str, throttle: Throttle | None = None) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.throttle = throttle or get_throttle()
        self._pop = self.client.register_script(_POP)
        self._push = self.client.register_script(_PUSH)

    def _push_entries(
        self, pace: SenderPace, entries: list[str], lane: str, *, front: bool = False
    ) -> None:
        if not entries:
            return
        self._push(
            args=[
                PREFIX,
                throttle_key(""),
                pace.sender_id,
                lane,
                "1" if front else "0",
                microseconds(interval_for(pace.per_second, pace.chunk)),
                per_second_cap(pace.per_second, pace.chunk),
                pace.chunk,
                pace.requests,
                *entries,
            ]
        )

    def push(self, pace: SenderPace, entries: Iterable[Entry], *, lane: str = BULK) -> None:
        self._push_entries(pace, [e.encode() for e in entries], lane)

    def push_front(self, chunk: Chunk, pace: SenderPace) -> None:
        self._push_entries(pace, [e.encode() for e in chunk.entries], chunk.lane, front=True)

    def pop(
        self, *, max_requests: int, lead: float, spread_per_request: float, lookahead: float = 0.0
    ) -> Popped:
        base = self.throttle.answer_time
        asked = time.monotonic()
        found, wait = self._pop(
            args=[
                PREFIX,
                throttle_key(""),
                max_requests,
                microseconds(lead),
                microseconds(spread_per_request),
                microseconds(NEAR),
                microseconds(SPAN),
                microseconds(base),
                microseconds(lookahead),
            ]
        )
        answered = time.monotonic()
        popped = Popped(wait=None if wait is None else int(wait) / 1_000_000)
        for sender, lane, delay, spread, entries in found:
            slot = self.throttle.slot(
                asked, answered, max(0.0, int(delay) / 1_000_000), int(spread) / 1_000_000
            )
            popped.chunks.append(
                Chunk(int(sender), lane.decode(), slot, [Entry.decode(e) for e in entries])
            )
        return popped

    def waiting(self) -> int:
        return sum(self.client.zcard(f"{PREFIX}senders:{lane}") for lane in LANES)


# ---------------------------------------------------------------- one process


class LocalReadyQueue(ReadyQueue):
    """The embedded run's queue, and the one `send_batch` drains: the same order in a process,
    each slot taken from `throttle`."""

    def __init__(self, throttle: Throttle | None = None) -> None:
        self.throttle = throttle or get_throttle()
        self._lock = threading.Lock()
        self._queues: dict[tuple[str, int], deque[Entry]] = {}
        self._paces: dict[int, SenderPace] = {}
        # Per sender, when (time.monotonic()) its next slot opens, as far as this queue knows.
        self._next: dict[int, float] = {}

    def push(self, pace: SenderPace, entries: Iterable[Entry], *, lane: str = BULK) -> None:
        with self._lock:
            self._paces[pace.sender_id] = pace
            self._queues.setdefault((lane, pace.sender_id), deque()).extend(entries)

    def push_front(self, chunk: Chunk, pace: SenderPace) -> None:
        with self._lock:
            self._paces[pace.sender_id] = pace
            queue = self._queues.setdefault((chunk.lane, pace.sender_id), deque())
            queue.extendleft(reversed(chunk.entries))

    def pop(
        self, *, max_requests: int, lead: float, spread_per_request: float, lookahead: float = 0.0
    ) -> Popped:
        popped, requests, busy = Popped(), 0, 0.0
        with self._lock:
            now = time.monotonic()
            for lane in LANES:
                while requests < max_requests:
                    heads = [
                        (self._opening(sender), sender)
                        for (in_lane, sender), queue in self._queues.items()
                        if in_lane == lane and queue
                    ]
                    if not heads:
                        break
                    opens, sender = min(heads)
                    if opens > now + lead + (lookahead if popped.chunks else NEAR):
                        wait = opens - now
                        popped.wait = wait if popped.wait is None else min(popped.wait, wait)
                        break
                    pace = self._paces[sender]
                    if requests and requests + pace.requests > max_requests:
                        break
                    queue = self._queues[(lane, sender)]
                    entries = [queue.popleft() for _ in range(min(pace.chunk, len(queue)))]
                    made = 1 if pace.requests == 1 else len(entries)
                    # As the Redis script does: the chunk's requests wait for those before it.
                    expected = max(opens, now + lead)
                    spread = spread_per_request * (made - 1) + max(0.0, busy - expected)
                    slot = self.throttle.take(
                        sender, pace.per_second, len(entries), lead=lead, spread=spread
                    )
                    busy = max(slot.opens, busy) + spread_per_request * made
                    requests += made
                    self._next[sender] = slot.opens + len(entries) * interval_for(
                        pace.per_second, len(entries)
                    )
                    popped.chunks.append(Chunk(sender, lane, slot, entries))
            if not popped.chunks and popped.wait is None and self._waiting():
                popped.wait = 0.0
        return popped

    def _opening(self, sender: int) -> float:
        # The throttle may know more (a 429's back-off) than the slots this queue took.
        return max(self._next.get(sender, 0.0), self.throttle.next_opening(sender))

    def _waiting(self) -> int:
        return len({sender for (_, sender), queue in self._queues.items() if queue})

    def waiting(self) -> int:
        with self._lock:
            return self._waiting()


@lru_cache(maxsize=1)
def get_ready_queue() -> ReadyQueue:
    return RedisReadyQueue(settings.REDIS_URL) if settings.REDIS_URL else LocalReadyQueue()


# ---------------------------------------------------------------- the sending tasks


DRAINERS_KEY = "outreach:drainers"


def drain_seconds() -> float:
    """How long one sending task takes messages from the queue before it makes room for the
    next: a few ticks, so that a deploy or a lost worker costs little."""
    return max(3.0, 3 * float(getattr(settings, "DISPATCH_TICK_SECONDS", 2)))


class Drainers:
    """The sending tasks alive or on their way, counted in Redis so that every beat's tick tops
    them up to `SEND_TASKS` and no more: a member per task, scored by when it is presumed gone
    (a killed worker's task stops counting then)."""

    def __init__(self, client) -> None:
        self.client = client

    def wanted(self, target: int, *, expires: float) -> list[str]:
        """Registers and returns tokens for the tasks to start now to reach `target`."""
        now = time.time()
        self.client.zremrangebyscore(DRAINERS_KEY, "-inf", now)
        missing = target - self.client.zcard(DRAINERS_KEY)
        tokens = [uuid.uuid4().hex for _ in range(max(0, missing))]
        if tokens:
            self.client.zadd(DRAINERS_KEY, {token: now + expires for token in tokens})
        return tokens

    def alive_until(self, token: str, until: float) -> None:
        self.client.zadd(DRAINERS_KEY, {token: until})

    def gone(self, token: str) -> None:
        self.client.zrem(DRAINERS_KEY, token)


def pace_of(campaign: Campaign) -> SenderPace:
    return sender_pace(campaign.sender_id, campaign.sender.messages_per_second, campaign.channel)


def sender_pace(sender_id: int, per_second: float, channel: str) -> SenderPace:
    """How the sender's messages are chunked: an email chunk is one request, a tenth of a
    second's worth (SendGrid takes 1,000 personalizations); an SMS chunk a hundredth of a
    second's worth, one request each."""
    if channel == Channel.EMAIL:
        return SenderPace(sender_id, per_second, max(1, min(1000, int(per_second / 10))), 1)
    chunk = max(1, min(100, int(per_second / 100)))
    return SenderPace(sender_id, per_second, chunk, chunk)
