"""The window rule across every DST transition of 2026-27 in twelve zones, against an oracle.

The rule: an instant is allowed when the recipient's wall-clock time at that instant is inside
[open, close) on an open weekday. The oracle below reads the wall clock with zoneinfo and nothing
else; `is_open`, `next_open`, `window_end` and `open_windows` must agree with it at every quarter
hour of the day before, of and after each transition, for windows opening and closing inside the
skipped and the repeated hour (derived from the transition itself) and a plain 09:00-17:00.
"""

import functools
import itertools
from datetime import UTC, date, datetime, time, timedelta
from types import SimpleNamespace
from typing import NamedTuple
from zoneinfo import ZoneInfo

import pytest

from campaigns.models import Campaign, Channel
from delivery.dispatch import WindowRules
from delivery.sending import VALIDITY_MAX, _validity
from delivery.windows import (
    DayHours,
    WeeklyHours,
    is_open,
    next_open,
    open_windows,
    weekly_hours,
    window_end,
)
from orgs.models import Organization

ZONES = (
    "America/New_York",
    "America/Los_Angeles",
    "America/Phoenix",
    "Pacific/Honolulu",
    "Europe/London",
    "Europe/Berlin",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Pacific/Apia",
    "Australia/Sydney",
)
STEP = timedelta(minutes=15)
SECOND = timedelta(seconds=1)


class Transition(NamedTuple):
    at: datetime  # the first UTC instant with the new offset
    day: date  # the local date on which it happens
    wall_before: datetime  # naive: what the clock would show at `at` under the old offset
    wall_after: datetime  # naive: what it shows at `at`

    @property
    def changed_hour(self) -> tuple[datetime, datetime]:
        """The skipped (spring forward) or repeated (fall back) local span, naive."""
        return min(self.wall_before, self.wall_after), max(self.wall_before, self.wall_after)


def transitions(zone: ZoneInfo, since: datetime, until: datetime) -> list[Transition]:
    """Every change of UTC offset in [since, until), found hourly and bisected to the second."""
    found = []
    probe = since
    while probe < until:
        following = probe + timedelta(hours=1)
        if probe.astimezone(zone).utcoffset() != following.astimezone(zone).utcoffset():
            low, high = probe, following
            while high - low > SECOND:
                middle = low + (high - low) / 2
                if middle.astimezone(zone).utcoffset() == low.astimezone(zone).utcoffset():
                    low = middle
                else:
                    high = middle
            old_offset = low.astimezone(zone).utcoffset()
            wall_after = high.astimezone(zone).replace(tzinfo=None)
            wall_before = (high + old_offset).replace(tzinfo=None)
            found.append(Transition(high, wall_after.date(), wall_before, wall_after))
        probe = following
    return found


@functools.cache
def transitions_2026_27(zone: str) -> list[Transition]:
    span = datetime(2026, 1, 1, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC)
    return transitions(ZoneInfo(zone), *span)


# Zones that keep one offset (Phoenix, Honolulu, Kolkata, Kathmandu, Apia) are checked on the
# days the others change: their windows must not move with anyone else's clock.
ALL_TRANSITION_DAYS = sorted({t.day for zone in ZONES for t in transitions_2026_27(zone)})


def allowed(instant: datetime, hours: WeeklyHours, zone: ZoneInfo) -> bool:
    """The oracle: the rule itself, read off the recipient's wall clock."""
    wall = instant.astimezone(zone)
    day_hours = hours.get(wall.weekday())
    return day_hours is not None and day_hours.open <= wall.time() < day_hours.close


def every_day(opens: time, closes: time) -> WeeklyHours:
    return weekly_hours({day: DayHours(opens, closes) for day in range(7)})


def clock(at: datetime, minutes: int) -> time:
    """The wall-clock time `minutes` after the naive `at`, kept within its day."""
    moved = at + timedelta(minutes=minutes)
    if moved.date() < at.date():
        return time(0)
    if moved.date() > at.date():
        return time(23, 59)
    return moved.time()


def schedules_for(transition: Transition) -> dict[str, WeeklyHours]:
    """Windows opening and closing inside the changed hour, at its edges and in its middle."""
    first, last = transition.changed_hour
    length = int((last - first).total_seconds() // 60)
    middle = first + timedelta(minutes=length // 2)
    kind = "skipped" if transition.wall_after > transition.wall_before else "repeated"
    candidates = {
        f"opens in the {kind} hour": (clock(middle, 0), clock(middle, 180)),
        f"opens as the {kind} hour starts": (clock(first, 0), clock(first, 180)),
        f"opens as the {kind} hour ends": (clock(last, 0), clock(last, 180)),
        f"closes in the {kind} hour": (clock(middle, -180), clock(middle, 0)),
        f"closes as the {kind} hour ends": (clock(last, -180), clock(last, 0)),
        f"lies inside the {kind} hour": (clock(first, 5), clock(middle, 0)),
    }
    return {
        name: every_day(opens, closes)
        for name, (opens, closes) in candidates.items()
        if opens < closes
    }


def days_to_check(zone: str) -> list[tuple[date, dict[str, WeeklyHours]]]:
    own = transitions_2026_27(zone)
    schedules_by_day: dict[date, dict[str, WeeklyHours]] = {}
    for day in ALL_TRANSITION_DAYS if not own else [t.day for t in own]:
        for offset in (-1, 0, 1):
            schedules_by_day.setdefault(day + timedelta(days=offset), {})
    for transition in own:
        for offset in (-1, 0, 1):
            schedules_by_day[transition.day + timedelta(days=offset)].update(
                schedules_for(transition)
            )
    nine_to_five = every_day(time(9), time(17))
    weekdays_nine_to_five = weekly_hours({day: DayHours(time(9), time(17)) for day in range(5)})
    return [
        (
            day,
            {
                **schedules,
                "09:00-17:00 every day": nine_to_five,
                "09:00-17:00 Monday to Friday": weekdays_nine_to_five,
            },
        )
        for day, schedules in sorted(schedules_by_day.items())
    ]


def first_instant_of(day: date, zone: ZoneInfo) -> datetime:
    """The first UTC instant whose wall clock shows `day` (or later), found on the quarter hours."""
    guess = datetime.combine(day, time(0), zone).astimezone(UTC) - timedelta(hours=3)
    guess = guess.replace(minute=guess.minute - guess.minute % 15, second=0, microsecond=0)
    while guess.astimezone(zone).date() < day:
        guess += STEP
    return guess


def check_day(day: date, hours: WeeklyHours, zone: ZoneInfo, name: str) -> None:
    since, until = first_instant_of(day, zone), first_instant_of(day + timedelta(days=1), zone)
    # A quarter hour either side, so that windows touching the day's edges are judged too.
    since, until = since - STEP, until + STEP
    grid = [since + STEP * i for i in range(int((until - since) / STEP))]
    expected = [allowed(t, hours, zone) for t in grid]

    @functools.cache
    def next_with(wanted: bool) -> list[datetime | None]:
        """For each grid point, the first one at or after it that the oracle says is `wanted`."""
        found: list[datetime | None] = [None] * len(grid)
        upcoming = None
        for i in range(len(grid) - 1, -1, -1):
            upcoming = grid[i] if expected[i] == wanted else upcoming
            found[i] = upcoming
        return found

    where = f"{zone.key} {day} {name}"
    for i, t in enumerate(grid):
        local = t.astimezone(zone)
        at = f"{where} at {t:%H:%M}Z ({local:%H:%M%z})"
        assert is_open(t, hours, zone) == expected[i], at

        opening = next_open(t, hours, zone)
        assert opening is not None, at
        if expected[i]:
            assert opening == t, at
        else:
            assert opening > t and allowed(opening, hours, zone), (at, opening)
            assert not allowed(opening - SECOND, hours, zone), (at, opening)
            # Nothing open on the grid before it: the first open quarter hour is not earlier.
            first_open = next_with(True)[i]
            assert first_open is None or opening <= first_open, (at, opening, first_open)

        end = window_end(t, hours, zone)
        if not expected[i]:
            assert end is None, at
            continue
        assert end is not None and end > t, (at, end)
        assert not allowed(end, hours, zone), (at, end)
        assert allowed(end - SECOND, hours, zone), (at, end)
        first_closed = next_with(False)[i]
        assert first_closed is None or end <= first_closed, (at, end, first_closed)

    listed = open_windows(hours, zone, since, until)
    assert listed == sorted(listed), where
    assert all(a.end < b.start for a, b in itertools.pairwise(listed)), (where, listed)
    in_a_window = [any(w.start <= t < w.end for w in listed) for t in grid]
    assert in_a_window == expected, (where, listed)


@pytest.mark.parametrize("zone", ZONES)
def test_it_follows_the_wall_clock_around_every_dst_transition(zone):
    tz = ZoneInfo(zone)
    checked = 0
    for day, schedules in days_to_check(zone):
        for name, hours in schedules.items():
            check_day(day, hours, tz, name)
            checked += 1
    assert checked >= 3


def test_it_finds_the_transitions_of_the_matrix():
    # Two a year where the zone has DST, none where it has not; derived, so spot-check a few.
    counts = {zone: len(transitions_2026_27(zone)) for zone in ZONES}
    assert counts == {
        **{zone: 4 for zone in ZONES},
        **{zone: 0 for zone in ("America/Phoenix", "Pacific/Honolulu", "Asia/Kolkata")},
        **{zone: 0 for zone in ("Asia/Kathmandu", "Pacific/Apia")},
    }
    london = transitions_2026_27("Europe/London")
    assert [t.day for t in london] == [
        date(2026, 3, 29),
        date(2026, 10, 25),
        date(2027, 3, 28),
        date(2027, 10, 31),
    ]
    fall_back = london[1]
    assert fall_back.changed_hour == (datetime(2026, 10, 25, 1), datetime(2026, 10, 25, 2))
    lord_howe = transitions_2026_27("Australia/Lord_Howe")[0]
    assert lord_howe.changed_hour == (datetime(2026, 4, 5, 1, 30), datetime(2026, 4, 5, 2))


# ---------------------------------------------------------------- the cases the issue named


def test_a_window_opening_in_the_repeated_hour_waits_for_the_second_pass_to_reach_it():
    # London, 2026-10-25: 02:00 BST becomes 01:00 GMT. Open 01:30: 01:30 BST is open; the second
    # pass shows 01:00-01:29 GMT, before the opening, so it is closed until 01:30 GMT.
    hours, zone = every_day(time(1, 30), time(17)), "Europe/London"
    assert is_open(datetime(2026, 10, 25, 0, 45, tzinfo=UTC), hours, zone)
    assert not is_open(datetime(2026, 10, 25, 1, 0, tzinfo=UTC), hours, zone)
    assert window_end(datetime(2026, 10, 25, 0, 45, tzinfo=UTC), hours, zone) == datetime(
        2026, 10, 25, 1, 0, tzinfo=UTC
    )
    assert next_open(datetime(2026, 10, 25, 1, 0, tzinfo=UTC), hours, zone) == datetime(
        2026, 10, 25, 1, 30, tzinfo=UTC
    )


def test_a_window_closing_in_the_repeated_hour_opens_again_on_the_second_pass():
    # Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET. Close 02:30: shut from 02:30 CEST, open
    # again while the clock shows 02:00-02:29 CET, not held until the next day.
    hours, zone = every_day(time(0), time(2, 30)), "Europe/Berlin"
    shut = datetime(2026, 10, 25, 0, 45, tzinfo=UTC)  # 02:45 CEST
    assert not is_open(shut, hours, zone)
    second_pass = datetime(2026, 10, 25, 1, 0, tzinfo=UTC)  # 02:00 CET
    assert next_open(shut, hours, zone) == second_pass
    assert window_end(second_pass, hours, zone) == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)


def test_twilio_is_given_the_seconds_until_the_wall_clock_leaves_the_window():
    # ValidityPeriod is `window_end` less the instant, through the campaign's own rules.
    campaign = Campaign(
        org=Organization(quiet_hours=False),
        channel=Channel.SMS,
        schedule={str(day): ["01:30", "17:00"] for day in range(7)},
    )
    rules = WindowRules(campaign)
    message = SimpleNamespace(address="+442071838750", timezone="Europe/London")
    # 01:45 BST on the fall-back day: open until the clock shows 02:00 BST, then 01:00 GMT.
    assert _validity(rules, message, datetime(2026, 10, 25, 0, 45, tzinfo=UTC)) == 15 * 60
    # 01:30 GMT, the second pass reaching the opening: open until 17:00 GMT (capped by Twilio).
    assert _validity(rules, message, datetime(2026, 10, 25, 1, 30, tzinfo=UTC)) == VALIDITY_MAX
    campaign.schedule = {str(day): ["00:00", "02:30"] for day in range(7)}
    berlin = SimpleNamespace(address="+493012345678", timezone="Europe/Berlin")
    # 02:00 CET, the second pass of Berlin's repeated hour: half an hour left, not closed.
    second_pass = datetime(2026, 10, 25, 1, 0, tzinfo=UTC)
    assert _validity(WindowRules(campaign), berlin, second_pass) == 30 * 60
