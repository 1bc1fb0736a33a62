"""When a message may be sent: weekly send windows read in each recipient's timezone.

This is the one module that answers "is this instant inside the schedule for this timezone" and
"when does the next window open"; everything else calls it. A schedule maps a weekday
(0 = Monday … 6 = Sunday) to that day's local hours [open, close); a missing weekday is Closed.
Instants in must be timezone-aware; instants out are in UTC.

The rule, the only one: an instant is allowed when the recipient's wall-clock time at that
instant is inside [open, close) on an open weekday. Around DST that means:

- a time skipped by a spring-forward jump never shows, so a window opening (or closing) at one
  opens (or closes) at the moment of the jump: 02:30 on the New York DST day opens at 03:00 EDT,
  and a window lying wholly inside the skipped hour is empty;
- both passes of a time repeated by a fall-back are judged by the clock: a window closing at
  01:30 on the London fall-back day shuts at 01:30 BST and opens again while the clock shows
  01:00-01:29 GMT; one opening at 01:30 is closed while the second pass shows 01:00-01:29.

So one local day's window can be two UTC intervals; `open_windows` lists each.
"""

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

import phonenumbers

from delivery import area_codes

# Ranges in user-facing text, such as Monday to Friday or 08:00 to 21:00, take an en dash.
_DASH = "\N{EN DASH}"
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class DayHours:
    """One day's local opening hours: open from `open`, closed again from `close`."""

    open: time
    close: time

    def __post_init__(self) -> None:
        # A window stays within one local day; "until midnight" is written close=23:59.
        if self.close <= self.open:
            raise ValueError(
                f"The close time {self.close} must be after the open time {self.open}."
            )
        if self.open.tzinfo or self.close.tzinfo:
            raise ValueError("Opening hours are local wall-clock times, without a timezone.")

    def __str__(self) -> str:
        return f"{self.open:%H:%M}{_DASH}{self.close:%H:%M}"


WeeklyHours = Mapping[int, DayHours]


class Window(NamedTuple):
    """One opening as UTC instants: open from `start`, closed again from `end`."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class HoursByWeekday:
    """Fixed hours for each weekday, Monday first (None is Closed); hashable, unlike a dict."""

    days: tuple[DayHours | None, ...]

    def __post_init__(self) -> None:
        if len(self.days) != 7:
            raise ValueError(f"Hours by weekday need 7 days, Monday first, not {len(self.days)}.")

    def get(self, weekday: int) -> DayHours | None:
        return self.days[weekday]


# Legal hours for texting a number: the same every day, or by weekday.
QuietHours = DayHours | HoursByWeekday

# Federal quiet hours for texts (TCPA); Florida and Oklahoma close an hour earlier.
QUIET_HOURS_DEFAULT = DayHours(time(8), time(21))
QUIET_HOURS_FLORIDA_OKLAHOMA = DayHours(time(8), time(20))
# From phonenumbers' geocoder data (delivery/area_codes.py), so new overlays are never missed.
FLORIDA_AREA_CODES = area_codes.area_codes_of("FL")
OKLAHOMA_AREA_CODES = area_codes.area_codes_of("OK")
_EARLY_CLOSE_AREA_CODES = FLORIDA_AREA_CODES | OKLAHOMA_AREA_CODES
# Puerto Rico and the other territories dial +1 and fall under the same federal rules as the states.
US_REGIONS = frozenset({"US", "PR", "VI", "GU", "AS", "MP"})
# The CRTC's telemarketing hours (Unsolicited Telecommunications Rules), applied to every text to
# a Canadian number: reminders are not telemarketing, but the stricter reading is the safe one.
_CANADA_WEEKDAYS = DayHours(time(9), time(21, 30))
_CANADA_WEEKENDS = DayHours(time(10), time(18))
QUIET_HOURS_CANADA = HoursByWeekday((_CANADA_WEEKDAYS,) * 5 + (_CANADA_WEEKENDS,) * 2)

# Each weekday comes round twice in 15 days, enough even when a DST jump swallows one window.
_DAYS_SEARCHED = 15
FORECAST_HORIZON = timedelta(days=60)
# Below this a fraction of a message is rounding error, not a message.
_EPSILON = 1e-6


# ---------------------------------------------------------------- building schedules


def weekly_hours(days: Mapping[int | str, DayHours | Sequence[time | str]]) -> dict[int, DayHours]:
    """A schedule from weekday → hours given as DayHours, (open, close) times or "HH:MM" pairs."""
    schedule: dict[int, DayHours] = {}
    for day, hours in days.items():
        weekday = int(day)
        if not 0 <= weekday <= 6:
            raise ValueError(f"Weekday {day} is not between 0 (Monday) and 6 (Sunday).")
        schedule[weekday] = _day_hours(hours)
    return dict(sorted(schedule.items()))


def _day_hours(hours: DayHours | Sequence[time | str]) -> DayHours:
    if isinstance(hours, DayHours):
        return hours
    opens, closes = (t if isinstance(t, time) else time.fromisoformat(t) for t in hours)
    return DayHours(opens, closes)


# ---------------------------------------------------------------- local time to UTC


def _zone(tz: ZoneInfo | str) -> ZoneInfo:
    return tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)


def _as_utc(instant: datetime) -> datetime:
    if instant.utcoffset() is None:
        raise ValueError(f"{instant} has no timezone; pass an aware datetime.")
    return instant.astimezone(UTC)


def _first_instant_showing(local: datetime, zone: ZoneInfo) -> datetime:
    """The first UTC instant at which clocks in `zone` show the naive `local` time or later."""
    # fold=0 is the first occurrence of a repeated time; the round trip detects a skipped one.
    candidate = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if candidate.astimezone(zone).replace(tzinfo=None) == local:
        return candidate
    # Clocks jumped over `local`, so the first instant showing a later time is the jump itself.
    other = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return _moment_of_jump(min(candidate, other), max(candidate, other), zone)


def _moment_of_jump(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The first whole second in (before, after] whose UTC offset differs from that at `before`."""
    # Bisect on whole seconds: tzdata transitions fall on them, and the span holds one transition.
    low, high = math.floor(before.timestamp()), math.ceil(after.timestamp())
    offset_before = _offset_at(low, zone)
    while high - low > 1:
        middle = (low + high) // 2
        if _offset_at(middle, zone) == offset_before:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)


def _offset_at(timestamp: int, zone: ZoneInfo) -> timedelta | None:
    return datetime.fromtimestamp(timestamp, zone).utcoffset()


# Offsets are sampled this far apart to find a zone's transitions: DST changes come months
# apart, and two changes within one sample would be missed.
_OFFSET_SAMPLE = timedelta(hours=2)


def _offset_spans(
    since: datetime, until: datetime, zone: ZoneInfo
) -> list[tuple[datetime, datetime]]:
    """[since, until) cut at each of the zone's transitions, in order; each keeps one offset."""
    spans: list[tuple[datetime, datetime]] = []
    start, probe = since, since
    offset = since.astimezone(zone).utcoffset()
    while probe < until:
        following = min(probe + _OFFSET_SAMPLE, until)
        if following.astimezone(zone).utcoffset() == offset:
            probe = following
            continue
        jump = _moment_of_jump(probe, following, zone)
        spans.append((start, jump))
        start = probe = jump
        offset = jump.astimezone(zone).utcoffset()
    spans.append((start, until))
    return spans


def _windows_on(day: date, hours: WeeklyHours, zone: ZoneInfo) -> list[Window]:
    """The instants whose wall clock shows a time inside this local date's hours, as intervals.

    Usually one; two when a fall-back repeats the open or close time, none when the day is
    Closed or a spring-forward jump skips its hours.
    """
    day_hours = hours.get(day.weekday())
    if day_hours is None:
        return []
    opens = datetime.combine(day, day_hours.open)
    closes = datetime.combine(day, day_hours.close)
    # Every instant showing a time in [opens, closes) lies between these (both folds of each).
    first = min(opens.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1))
    last = max(closes.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1))
    found: list[Window] = []
    for span_start, span_end in _offset_spans(first, last, zone):
        # Within one offset the clock runs with UTC: it shows [opens, closes) over this part.
        offset = span_start.astimezone(zone).utcoffset()
        start = max(span_start, opens.replace(tzinfo=UTC) - offset)
        end = min(span_end, closes.replace(tzinfo=UTC) - offset)
        if start < end:
            found.append(Window(start, end))
    return _merged(found)


def _merged(windows: Iterable[Window]) -> list[Window]:
    """The windows in order, those touching or overlapping joined into one."""
    merged: list[Window] = []
    for window in sorted(windows):
        if merged and window.start <= merged[-1].end:
            merged[-1] = Window(merged[-1].start, max(merged[-1].end, window.end))
        else:
            merged.append(window)
    return merged


def _windows_from(
    instant: datetime, hours: WeeklyHours, zone: ZoneInfo, days: int = _DAYS_SEARCHED
) -> Iterator[Window]:
    """The windows open at or after the UTC `instant`, in order, of `days` local dates from its
    own and the one after them."""
    if not hours:
        return
    # A fall-back across midnight can show the day before again after `instant`.
    day = instant.astimezone(zone).date() - timedelta(days=1)
    pending: list[Window] = []
    for _ in range(days + 2):
        pending = _merged(
            [*pending, *(w for w in _windows_on(day, hours, zone) if w.end > instant)]
        )
        day += timedelta(days=1)
        # No later date's window starts before the clock first shows that date, so what ends
        # before then is complete.
        later_dates_from = _first_instant_showing(datetime.combine(day, time()), zone)
        while pending and pending[0].end < later_dates_from:
            yield pending.pop(0)
    yield from pending


def _current_or_next_window(instant: datetime, hours: WeeklyHours, zone: ZoneInfo) -> Window | None:
    """The window open at the UTC `instant`, else the next one to open, else None."""
    return next(_windows_from(instant, hours, zone), None)


# ---------------------------------------------------------------- questions about one instant


def is_open(instant: datetime, hours: WeeklyHours, tz: ZoneInfo | str) -> bool:
    """Whether `instant` falls inside the schedule as read on the recipient's clock in `tz`."""
    # The rule itself; the windows below are the same rule turned into UTC intervals.
    wall = _as_utc(instant).astimezone(_zone(tz))
    day_hours = hours.get(wall.weekday())
    return day_hours is not None and day_hours.open <= wall.time() < day_hours.close


def next_open(instant: datetime, hours: WeeklyHours, tz: ZoneInfo | str) -> datetime | None:
    """The earliest UTC instant at or after `instant` when the schedule is open; None if never."""
    instant = _as_utc(instant)
    window = _current_or_next_window(instant, hours, _zone(tz))
    return None if window is None else max(instant, window.start)


def window_end(instant: datetime, hours: WeeklyHours, tz: ZoneInfo | str) -> datetime | None:
    """The first UTC instant after `instant` at which the recipient's clock leaves the window
    open at `instant`, or None if none is open."""
    instant = _as_utc(instant)
    window = _current_or_next_window(instant, hours, _zone(tz))
    return window.end if window is not None and window.start <= instant else None


def next_eligible(
    instant: datetime,
    hours: WeeklyHours,
    tz: ZoneInfo | str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> datetime | None:
    """The first open UTC instant at or after `instant` and `start`, if one comes before `end`."""
    earliest = _as_utc(instant) if start is None else max(_as_utc(instant), _as_utc(start))
    opening = next_open(earliest, hours, tz)
    if opening is None or (end is not None and opening >= end):
        return None
    return opening


def open_windows(
    hours: WeeklyHours, tz: ZoneInfo | str, since: datetime, until: datetime
) -> list[Window]:
    """Every window open at some instant in [since, until), in order and not clipped to it."""
    zone, since, until = _zone(tz), _as_utc(since), _as_utc(until)
    days = (until.astimezone(zone).date() - since.astimezone(zone).date()).days + 1
    windows = []
    for window in _windows_from(since, hours, zone, days=days):
        if window.start >= until:
            break
        windows.append(window)
    return windows


# ---------------------------------------------------------------- legal quiet hours


def quiet_hours_for(phone_e164: str) -> QuietHours | None:
    """The local hours the law allows texting this US or Canadian number, else None."""
    try:
        number = phonenumbers.parse(phone_e164, None)
    except phonenumbers.NumberParseException:
        return None
    if number.country_code != 1:
        return None
    # The region tells US and Canadian numbers apart from the Caribbean ones that also dial +1.
    region = phonenumbers.region_code_for_number(number)
    if region == "CA":
        return QUIET_HOURS_CANADA
    if region not in US_REGIONS:
        return None
    if str(number.national_number)[:3] in _EARLY_CLOSE_AREA_CODES:
        return QUIET_HOURS_FLORIDA_OKLAHOMA
    return QUIET_HOURS_DEFAULT


def overlap(first: DayHours, second: DayHours) -> DayHours | None:
    """The hours inside both, or None when they do not overlap."""
    opens, closes = max(first.open, second.open), min(first.close, second.close)
    return DayHours(opens, closes) if opens < closes else None


def intersect(hours: WeeklyHours, allowed: QuietHours) -> dict[int, DayHours]:
    """The schedule cut to each day's `allowed` hours; a day left with no hours becomes Closed."""
    narrowed = {}
    for day, day_hours in sorted(hours.items()):
        limit = allowed if isinstance(allowed, DayHours) else allowed.get(day)
        kept = None if limit is None else overlap(day_hours, limit)
        if kept is not None:
            narrowed[day] = kept
    return narrowed


def hours_for_recipient(hours: WeeklyHours, phone_e164: str) -> WeeklyHours:
    """The schedule narrowed by the legal quiet hours of this phone number, if it has any."""
    quiet = quiet_hours_for(phone_e164)
    return hours if quiet is None else intersect(hours, quiet)


def narrowing_description(hours: WeeklyHours, daily: DayHours = QUIET_HOURS_DEFAULT) -> str | None:
    """One sentence on how US and Canadian quiet hours narrow the schedule, else None."""
    us = _us_narrowing(hours, daily)
    canada = _narrowed_days(hours, QUIET_HOURS_CANADA)
    if not canada:
        return f"Legal quiet hours {us}." if us else None
    if not us:
        return f"Legal quiet hours {_narrowing_phrase(canada)} for Canadian recipients."
    return f"Legal quiet hours {us}; for Canadian recipients they {_narrowing_phrase(canada)}."


def _us_narrowing(hours: WeeklyHours, daily: DayHours) -> str | None:
    """How federal and state quiet hours narrow the schedule, as the end of a sentence, or None."""
    national = _narrowed_days(hours, daily)
    # State rules only ever add to the federal ones.
    state = _narrowed_days(hours, overlap(daily, QUIET_HOURS_FLORIDA_OKLAHOMA))
    if not state:
        return None
    if not national:
        return f"{_narrowing_phrase(state)} for recipients in Florida and Oklahoma"
    phrase = f"{_narrowing_phrase(national)} for US recipients"
    if state != national:
        phrase += f" ({_state_detail(national, state)} in Florida and Oklahoma)"
    return phrase


def _narrowed_days(hours: WeeklyHours, allowed: QuietHours | None) -> dict[int, DayHours | None]:
    """Each open weekday that `allowed` changes, with its new hours or None when it closes."""
    narrowed = intersect(hours, allowed) if allowed else {}
    return {day: narrowed.get(day) for day in sorted(hours) if narrowed.get(day) != hours[day]}


def _state_detail(national: dict[int, DayHours | None], state: dict[int, DayHours | None]) -> str:
    """What Florida and Oklahoma change beyond the federal narrowing, in a few words."""
    extra = {
        day: result
        for day, result in state.items()
        if day not in national or national[day] != result
    }
    # When the state rule only moves the federal days' hours, the hours alone say it.
    if extra.keys() == national.keys() and len(set(extra.values())) == 1:
        only = next(iter(extra.values()))
        if only is not None:
            return str(only)
    return "and " + _narrowing_phrase(extra)


def _narrowing_phrase(changes: dict[int, DayHours | None]) -> str:
    runs = _runs_of_days(changes)
    narrowed = [f"{_day_span(days)} to {result}" for days, result in runs if result]
    closed = [_day_span(days) for days, result in runs if result is None]
    parts = []
    if narrowed:
        parts.append("narrow " + _and_list(narrowed))
    if closed:
        parts.append("close " + _and_list(closed))
    return " and ".join(parts)


def _runs_of_days(
    changes: dict[int, DayHours | None],
) -> list[tuple[list[int], DayHours | None]]:
    """Consecutive weekdays given the same new hours, grouped."""
    runs: list[tuple[list[int], DayHours | None]] = []
    for day, result in sorted(changes.items()):
        if runs and runs[-1][0][-1] == day - 1 and runs[-1][1] == result:
            runs[-1][0].append(day)
        else:
            runs.append(([day], result))
    return runs


def _day_span(days: list[int]) -> str:
    if len(days) == 1:
        return WEEKDAY_NAMES[days[0]]
    return f"{WEEKDAY_NAMES[days[0]]}{_DASH}{WEEKDAY_NAMES[days[-1]]}"


def _and_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


# ---------------------------------------------------------------- forecast of the send plan


class QueuedGroup(NamedTuple):
    """Queued messages whose recipients share a timezone and quiet hours."""

    timezone: str
    count: int
    quiet_hours: QuietHours | None = None


@dataclass(frozen=True)
class Forecast:
    """When a queue of messages will be sent at the sender's rate, hour by hour."""

    # When the last message goes, or None when some are still unsent at the end of the forecast.
    finish_at: datetime | None
    # (UTC hour, messages sent in it) for every hour from the first send to the last, zeros kept.
    sends_per_hour: list[tuple[datetime, int]]
    # Left unsent at `end`, or at the horizon when there is no end.
    not_contacted_before_end: int


def forecast(
    queued: Iterable[QueuedGroup | tuple[str, int] | tuple[str, int, QuietHours | None]],
    hours: WeeklyHours,
    *,
    rate_per_second: float,
    now: datetime,
    start: datetime | None = None,
    end: datetime | None = None,
    horizon: timedelta = FORECAST_HORIZON,
) -> Forecast:
    """Simulate sending the queue at `rate_per_second` within each recipient's windows."""
    # Approximation: sending is a steady flow at the full rate whenever any queued recipient is in
    # a window, served first to the groups whose window opened first; batching is ignored.
    if rate_per_second <= 0:
        raise ValueError("The rate must be above zero messages per second.")
    begin = _as_utc(now) if start is None else max(_as_utc(now), _as_utc(start))
    stop = begin + horizon if end is None else min(_as_utc(end), begin + horizon)
    groups = _merge_groups(queued)
    counts = list(groups.values())
    events = _window_events(groups, hours, begin, stop)
    segments, sent = _send_segments(counts, events, rate_per_second, begin, stop)
    total = sum(counts)
    unsent = total - math.floor(sent + _EPSILON)
    return Forecast(
        finish_at=segments[-1].end if segments and unsent == 0 else None,
        sends_per_hour=_sends_per_hour(segments, rate_per_second),
        not_contacted_before_end=unsent,
    )


def _merge_groups(
    queued: Iterable[QueuedGroup | tuple[str, int] | tuple[str, int, QuietHours | None]],
) -> dict[tuple[str, QuietHours | None], int]:
    groups: dict[tuple[str, QuietHours | None], int] = {}
    for item in queued:
        group = QueuedGroup(*item)
        if group.count > 0:
            key = (group.timezone, group.quiet_hours)
            groups[key] = groups.get(key, 0) + group.count
    return groups


def _window_events(
    groups: Mapping[tuple[str, QuietHours | None], int],
    hours: WeeklyHours,
    begin: datetime,
    stop: datetime,
) -> list[tuple[datetime, bool, datetime, int]]:
    """(when, opens, window start, group index) for every window edge in [begin, stop), in order."""
    events = []
    for index, (timezone, quiet) in enumerate(groups):
        group_hours = hours if quiet is None else intersect(hours, quiet)
        for window in open_windows(group_hours, timezone, begin, stop):
            events.append((max(window.start, begin), True, window.start, index))
            if window.end < stop:
                events.append((window.end, False, window.start, index))
    # At the same instant closes (False) sort before opens; older windows are served first.
    return sorted(events)


def _send_segments(
    counts: list[int],
    events: list[tuple[datetime, bool, datetime, int]],
    rate: float,
    begin: datetime,
    stop: datetime,
) -> tuple[list[Window], float]:
    """The spans in which the sender works at full rate, and how many messages it sends in all."""
    left = [float(count) for count in counts]
    waiting, sent = sum(left), 0.0
    serving: list[int] = []
    segments: list[Window] = []
    clock = begin
    # A last event at `stop` lets windows still open then be served up to it.
    for when, opens, _, index in [*events, (stop, False, stop, -1)]:
        if when > clock and serving:
            flowed = _serve(serving, left, rate * (when - clock).total_seconds())
            if flowed > 0:
                segments.append(Window(clock, clock + timedelta(seconds=flowed / rate)))
            sent, waiting = sent + flowed, waiting - flowed
            if waiting <= _EPSILON:
                break
        clock = max(clock, when)
        if opens and left[index] > _EPSILON:
            serving.append(index)
        elif not opens and index in serving:
            serving.remove(index)
    return segments, sent


def _serve(serving: list[int], left: list[float], budget: float) -> float:
    """Send up to `budget` messages to the serving groups in order, dropping drained groups."""
    flowed = 0.0
    for index in list(serving):
        taken = min(left[index], budget - flowed)
        left[index] -= taken
        flowed += taken
        if left[index] <= _EPSILON:
            serving.remove(index)
        if budget - flowed <= _EPSILON:
            break
    return flowed


def _sends_per_hour(segments: list[Window], rate: float) -> list[tuple[datetime, int]]:
    """Whole messages sent in each UTC hour from the first send to the last."""
    flow_by_hour: dict[datetime, float] = {}
    for segment in segments:
        hour = segment.start.replace(minute=0, second=0, microsecond=0)
        while hour < segment.end:
            overlap_seconds = (
                min(segment.end, hour + timedelta(hours=1)) - max(segment.start, hour)
            ).total_seconds()
            flow_by_hour[hour] = flow_by_hour.get(hour, 0.0) + rate * overlap_seconds
            hour += timedelta(hours=1)
    if not flow_by_hour:
        return []
    # Rounding the running total, not each hour, keeps the hours adding up to the messages sent.
    counts, running, counted = [], 0.0, 0
    hour, last = min(flow_by_hour), max(flow_by_hour)
    while hour <= last:
        running += flow_by_hour.get(hour, 0.0)
        whole = math.floor(running + _EPSILON)
        counts.append((hour, whole - counted))
        counted, hour = whole, hour + timedelta(hours=1)
    return counts
