"""Send windows, quiet hours and the send-plan forecast: pure time logic, no database."""

import random
from datetime import UTC, datetime, time, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo, available_timezones

import pytest

from delivery.windows import (
    QUIET_HOURS_CANADA,
    QUIET_HOURS_DEFAULT,
    QUIET_HOURS_FLORIDA_OKLAHOMA,
    DayHours,
    HoursByWeekday,
    QueuedGroup,
    Window,
    forecast,
    hours_for_recipient,
    intersect,
    is_open,
    narrowing_description,
    next_eligible,
    next_open,
    open_windows,
    quiet_hours_for,
    weekly_hours,
    window_end,
)

MON, TUE, WED, THU, FRI, SAT, SUN = range(7)
WEEKDAYS_9_TO_5 = weekly_hours({day: ("09:00", "17:00") for day in range(MON, SAT)})


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def local(zone: str, *parts: int, fold: int = 0) -> datetime:
    return datetime(*parts, tzinfo=ZoneInfo(zone), fold=fold)


# ---------------------------------------------------------------- building schedules


def test_it_builds_a_schedule_from_the_stored_json_and_from_time_pairs():
    from_json = weekly_hours({"0": ["09:00", "17:00"], "6": ["10:30", "12:00"]})
    from_pairs = weekly_hours({6: (time(10, 30), time(12)), 0: (time(9), time(17))})
    assert (
        from_json
        == from_pairs
        == {
            MON: DayHours(time(9), time(17)),
            SUN: DayHours(time(10, 30), time(12)),
        }
    )
    assert list(from_pairs) == [MON, SUN]


def test_it_refuses_a_close_time_that_is_not_after_the_open_time():
    with pytest.raises(ValueError, match="must be after"):
        DayHours(time(17), time(9))
    with pytest.raises(ValueError, match="must be after"):
        DayHours(time(9), time(9))


def test_it_refuses_a_weekday_outside_monday_to_sunday():
    with pytest.raises(ValueError, match="Weekday 7"):
        weekly_hours({7: ("09:00", "17:00")})


def test_it_refuses_a_naive_instant():
    with pytest.raises(ValueError, match="no timezone"):
        is_open(datetime(2026, 6, 15, 12), WEEKDAYS_9_TO_5, "UTC")


def test_it_shows_hours_with_an_en_dash():
    assert str(DayHours(time(8), time(21))) == "08:00\N{EN DASH}21:00"


# ---------------------------------------------------------------- open, closed and boundaries


def test_it_is_closed_all_day_on_a_closed_day():
    saturday = local("Europe/Paris", 2026, 6, 20, 12)
    assert not is_open(saturday, WEEKDAYS_9_TO_5, "Europe/Paris")
    assert window_end(saturday, WEEKDAYS_9_TO_5, "Europe/Paris") is None


def test_it_is_open_exactly_at_open_and_closed_exactly_at_close():
    zone = "Europe/Paris"
    assert not is_open(local(zone, 2026, 6, 15, 8, 59, 59), WEEKDAYS_9_TO_5, zone)
    assert is_open(local(zone, 2026, 6, 15, 9), WEEKDAYS_9_TO_5, zone)
    assert is_open(local(zone, 2026, 6, 15, 16, 59, 59, 999999), WEEKDAYS_9_TO_5, zone)
    assert not is_open(local(zone, 2026, 6, 15, 17), WEEKDAYS_9_TO_5, zone)


def test_it_accepts_the_timezone_as_a_name_or_a_zoneinfo():
    instant = utc(2026, 6, 15, 8)
    assert is_open(instant, WEEKDAYS_9_TO_5, "Europe/Paris")
    assert is_open(instant, WEEKDAYS_9_TO_5, ZoneInfo("Europe/Paris"))


def test_it_returns_the_instant_itself_in_utc_when_already_open():
    instant = local("Europe/Paris", 2026, 6, 15, 10, 15)
    opening = next_open(instant, WEEKDAYS_9_TO_5, "Europe/Paris")
    assert opening == instant
    assert opening.tzinfo is UTC


def test_it_finds_the_opening_later_the_same_day():
    early = local("Europe/Paris", 2026, 6, 15, 6)
    assert next_open(early, WEEKDAYS_9_TO_5, "Europe/Paris") == utc(2026, 6, 15, 7)


def test_it_rolls_over_from_friday_evening_to_monday_morning():
    friday_evening = local("America/Chicago", 2026, 6, 19, 17)
    assert next_open(friday_evening, WEEKDAYS_9_TO_5, "America/Chicago") == local(
        "America/Chicago", 2026, 6, 22, 9
    )


def test_it_waits_almost_a_week_when_only_sunday_is_open():
    sunday_only = weekly_hours({SUN: ("10:00", "12:00")})
    just_closed = local("Asia/Tokyo", 2026, 6, 21, 12)
    assert next_open(just_closed, sunday_only, "Asia/Tokyo") == local("Asia/Tokyo", 2026, 6, 28, 10)
    monday = local("Asia/Tokyo", 2026, 6, 22, 0)
    assert next_open(monday, sunday_only, "Asia/Tokyo") == local("Asia/Tokyo", 2026, 6, 28, 10)


def test_it_never_opens_when_every_day_is_closed():
    instant = utc(2026, 6, 15, 12)
    assert next_open(instant, {}, "UTC") is None
    assert not is_open(instant, {}, "UTC")
    assert window_end(instant, {}, "UTC") is None
    assert next_eligible(instant, {}, "UTC") is None


def test_it_gives_the_end_of_the_current_window():
    inside = local("Europe/Paris", 2026, 6, 15, 16)
    assert window_end(inside, WEEKDAYS_9_TO_5, "Europe/Paris") == utc(2026, 6, 15, 15)
    before = local("Europe/Paris", 2026, 6, 15, 8)
    assert window_end(before, WEEKDAYS_9_TO_5, "Europe/Paris") is None


def test_it_supports_a_window_until_one_minute_to_midnight():
    late = weekly_hours({MON: ("20:00", "23:59")})
    assert is_open(local("UTC", 2026, 6, 15, 23, 58), late, "UTC")
    assert not is_open(local("UTC", 2026, 6, 15, 23, 59), late, "UTC")


def test_it_lists_the_windows_over_a_week():
    windows = open_windows(WEEKDAYS_9_TO_5, "UTC", utc(2026, 6, 15, 12), utc(2026, 6, 22, 9))
    assert windows[0] == Window(utc(2026, 6, 15, 9), utc(2026, 6, 15, 17))
    assert [w.start.day for w in windows] == [15, 16, 17, 18, 19]


# ---------------------------------------------------------------- DST: skipped local times


def test_it_opens_at_the_jump_when_new_york_skips_the_open_time():
    # 2026-03-08: 02:00 EST becomes 03:00 EDT, so 02:30 never shows.
    sunday = weekly_hours({SUN: ("02:30", "05:00")})
    midnight = local("America/New_York", 2026, 3, 8, 0)
    assert next_open(midnight, sunday, "America/New_York") == utc(2026, 3, 8, 7)
    assert not is_open(utc(2026, 3, 8, 6, 59, 59), sunday, "America/New_York")
    assert is_open(utc(2026, 3, 8, 7), sunday, "America/New_York")
    assert window_end(utc(2026, 3, 8, 7), sunday, "America/New_York") == utc(2026, 3, 8, 9)


def test_it_loses_the_skipped_hour_from_a_window_spanning_it():
    sunday = weekly_hours({SUN: ("01:00", "04:00")})
    start = next_open(utc(2026, 3, 8, 0), sunday, "America/New_York")
    assert start == utc(2026, 3, 8, 6)
    assert window_end(start, sunday, "America/New_York") - start == timedelta(hours=2)


def test_it_treats_a_window_inside_the_skipped_hour_as_closed_that_day():
    sunday = weekly_hours({SUN: ("02:10", "02:50")})
    assert next_open(utc(2026, 3, 8, 0), sunday, "America/New_York") == local(
        "America/New_York", 2026, 3, 15, 2, 10
    )


def test_it_opens_at_the_jump_when_london_skips_the_open_time():
    # 2026-03-29: 01:00 GMT becomes 02:00 BST.
    sunday = weekly_hours({SUN: ("01:15", "03:00")})
    assert next_open(utc(2026, 3, 28, 12), sunday, "Europe/London") == utc(2026, 3, 29, 1)
    assert window_end(utc(2026, 3, 29, 1), sunday, "Europe/London") == utc(2026, 3, 29, 2)


def test_it_handles_the_half_hour_jump_forward_on_lord_howe():
    # 2026-10-04: 02:00 (+10:30) becomes 02:30 (+11).
    sunday = weekly_hours({SUN: ("02:10", "03:00")})
    assert next_open(utc(2026, 10, 3, 12), sunday, "Australia/Lord_Howe") == utc(
        2026, 10, 3, 15, 30
    )
    assert window_end(utc(2026, 10, 3, 15, 30), sunday, "Australia/Lord_Howe") == utc(
        2026, 10, 3, 16
    )


def test_it_handles_the_jump_forward_on_chatham():
    # 2026-09-27: 02:45 (+12:45) becomes 03:45 (+13:45).
    sunday = weekly_hours({SUN: ("03:00", "05:00")})
    opening = next_open(utc(2026, 9, 26, 0), sunday, "Pacific/Chatham")
    assert opening == utc(2026, 9, 26, 14)
    assert opening.astimezone(ZoneInfo("Pacific/Chatham")).time() == time(3, 45)


def test_it_opens_at_one_when_santiago_skips_midnight():
    # 2026-09-06: midnight (-04) becomes 01:00 (-03), so Sunday starts at 01:00.
    sunday = weekly_hours({SUN: ("00:00", "02:00")})
    assert next_open(utc(2026, 9, 5, 12), sunday, "America/Santiago") == utc(2026, 9, 6, 4)
    assert window_end(utc(2026, 9, 6, 4), sunday, "America/Santiago") == utc(2026, 9, 6, 5)


# ---------------------------------------------------------------- DST: repeated local times


def test_it_judges_both_passes_of_a_repeated_open_time_by_the_clock():
    # 2026-11-01: 02:00 EDT becomes 01:00 EST, so 01:00-02:00 shows twice.
    sunday = weekly_hours({SUN: ("01:30", "05:00")})
    opening = next_open(utc(2026, 11, 1, 0), sunday, "America/New_York")
    # 01:30 EDT; compared in UTC since Python never equates a repeated local time across zones.
    assert opening == utc(2026, 11, 1, 5, 30)
    assert opening.astimezone(ZoneInfo("America/New_York")).fold == 0
    assert window_end(opening, sunday, "America/New_York") == utc(2026, 11, 1, 6)
    # The second pass shows 01:00-01:29 EST, before the opening: closed until 01:30 EST.
    second_pass = local("America/New_York", 2026, 11, 1, 1, 15, fold=1)
    assert not is_open(second_pass, sunday, "America/New_York")
    assert next_open(second_pass, sunday, "America/New_York") == utc(2026, 11, 1, 6, 30)
    assert window_end(utc(2026, 11, 1, 6, 30), sunday, "America/New_York") == utc(2026, 11, 1, 10)


def test_it_lasts_four_hours_from_midnight_to_three_on_the_25_hour_day():
    sunday = weekly_hours({SUN: ("00:00", "03:00")})
    start = next_open(utc(2026, 10, 31, 12), sunday, "America/New_York")
    end = window_end(start, sunday, "America/New_York")
    assert (start, end) == (utc(2026, 11, 1, 4), utc(2026, 11, 1, 8))


def test_it_opens_again_on_the_second_pass_of_a_repeated_close_time():
    sunday = weekly_hours({SUN: ("00:00", "01:30")})
    assert window_end(utc(2026, 11, 1, 4), sunday, "America/New_York") == utc(2026, 11, 1, 5, 30)
    assert not is_open(utc(2026, 11, 1, 5, 45), sunday, "America/New_York")
    # 01:15 EST shows 01:15 again, inside [00:00, 01:30): open until the clock shows 01:30 EST.
    second_pass = local("America/New_York", 2026, 11, 1, 1, 15, fold=1)
    assert is_open(second_pass, sunday, "America/New_York")
    assert next_open(utc(2026, 11, 1, 5, 45), sunday, "America/New_York") == utc(2026, 11, 1, 6)
    assert window_end(second_pass, sunday, "America/New_York") == utc(2026, 11, 1, 6, 30)
    assert open_windows(sunday, "America/New_York", utc(2026, 11, 1), utc(2026, 11, 2)) == [
        Window(utc(2026, 11, 1, 4), utc(2026, 11, 1, 5, 30)),
        Window(utc(2026, 11, 1, 6), utc(2026, 11, 1, 6, 30)),
    ]


def test_it_judges_both_passes_of_london_repeated_open_time_by_the_clock():
    # 2026-10-25: 02:00 BST becomes 01:00 GMT.
    sunday = weekly_hours({SUN: ("01:30", "03:00")})
    assert next_open(utc(2026, 10, 24, 12), sunday, "Europe/London") == utc(2026, 10, 25, 0, 30)
    assert window_end(utc(2026, 10, 25, 0, 30), sunday, "Europe/London") == utc(2026, 10, 25, 1)
    assert next_open(utc(2026, 10, 25, 1), sunday, "Europe/London") == utc(2026, 10, 25, 1, 30)
    assert window_end(utc(2026, 10, 25, 1, 30), sunday, "Europe/London") == utc(2026, 10, 25, 3)


def test_it_handles_the_half_hour_fall_back_on_lord_howe():
    # 2026-04-05: 02:00 (+11) becomes 01:30 (+10:30), so 01:30-02:00 shows twice.
    sunday = weekly_hours({SUN: ("01:45", "04:00")})
    assert open_windows(sunday, "Australia/Lord_Howe", utc(2026, 4, 4), utc(2026, 4, 5)) == [
        Window(utc(2026, 4, 4, 14, 45), utc(2026, 4, 4, 15)),
        Window(utc(2026, 4, 4, 15, 15), utc(2026, 4, 4, 17, 30)),
    ]


def test_it_handles_the_fall_back_on_chatham():
    # 2026-04-05: 03:45 (+13:45) becomes 02:45 (+12:45).
    sunday = weekly_hours({SUN: ("03:00", "04:00")})
    start = next_open(utc(2026, 4, 4, 0), sunday, "Pacific/Chatham")
    assert start == utc(2026, 4, 4, 13, 15)
    assert window_end(start, sunday, "Pacific/Chatham") == utc(2026, 4, 4, 14)
    # The clock shows 02:45-02:59 again, then 03:00 once more: open until 04:00 (+12:45).
    assert next_open(utc(2026, 4, 4, 14), sunday, "Pacific/Chatham") == utc(2026, 4, 4, 14, 15)
    assert window_end(utc(2026, 4, 4, 14, 15), sunday, "Pacific/Chatham") == utc(2026, 4, 4, 15, 15)


# ---------------------------------------------------------------- odd offsets and the date line


def test_it_reads_kathmandu_at_five_forty_five_ahead():
    opening = next_open(utc(2026, 6, 15, 0), WEEKDAYS_9_TO_5, "Asia/Kathmandu")
    assert opening == utc(2026, 6, 15, 3, 15)
    assert window_end(opening, WEEKDAYS_9_TO_5, "Asia/Kathmandu") == utc(2026, 6, 15, 11, 15)


def test_it_reads_chatham_monday_morning_on_sunday_in_utc():
    # Chatham is +12:45 in June, so Monday 09:00 there is Sunday 20:15 UTC.
    assert next_open(utc(2026, 6, 14, 0), WEEKDAYS_9_TO_5, "Pacific/Chatham") == utc(
        2026, 6, 14, 20, 15
    )


def test_it_reads_the_weekday_on_each_side_of_the_date_line():
    monday = weekly_hours({MON: ("09:00", "17:00")})
    # Kiritimati (+14) and Pago Pago (-11) are 25 hours apart: same UTC instant, different days.
    sunday_evening_utc = utc(2026, 6, 14, 20)
    assert is_open(sunday_evening_utc, monday, "Pacific/Kiritimati")
    assert not is_open(sunday_evening_utc, monday, "Pacific/Pago_Pago")
    monday_evening_utc = utc(2026, 6, 15, 20)
    assert not is_open(monday_evening_utc, monday, "Pacific/Kiritimati")
    assert is_open(monday_evening_utc, monday, "Pacific/Pago_Pago")
    assert next_open(monday_evening_utc, monday, "Pacific/Kiritimati") == utc(2026, 6, 21, 19)


# ---------------------------------------------------------------- start and end bounds


def test_it_waits_for_the_campaign_start():
    monday_noon = utc(2026, 6, 15, 12)
    assert next_eligible(monday_noon, WEEKDAYS_9_TO_5, "UTC", start=utc(2026, 6, 17, 10)) == utc(
        2026, 6, 17, 10
    )
    assert next_eligible(monday_noon, WEEKDAYS_9_TO_5, "UTC", start=utc(2026, 6, 17, 20)) == utc(
        2026, 6, 18, 9
    )


def test_it_ignores_a_start_already_past():
    monday_noon = utc(2026, 6, 15, 12)
    assert next_eligible(monday_noon, WEEKDAYS_9_TO_5, "UTC", start=utc(2026, 6, 1)) == monday_noon


def test_it_finds_nothing_when_the_next_window_opens_at_or_after_the_end():
    friday_evening = utc(2026, 6, 19, 18)
    assert next_eligible(friday_evening, WEEKDAYS_9_TO_5, "UTC", end=utc(2026, 6, 22, 9)) is None
    assert next_eligible(
        friday_evening, WEEKDAYS_9_TO_5, "UTC", end=utc(2026, 6, 22, 9, 0, 1)
    ) == utc(2026, 6, 22, 9)


def test_it_finds_nothing_once_the_end_has_passed():
    inside = utc(2026, 6, 15, 12)
    assert next_eligible(inside, WEEKDAYS_9_TO_5, "UTC", end=inside) is None
    assert next_eligible(inside, WEEKDAYS_9_TO_5, "UTC", end=utc(2026, 6, 15, 11)) is None


# ---------------------------------------------------------------- legal quiet hours

EVERY_DAY_7_TO_23 = weekly_hours({day: ("07:00", "23:00") for day in range(MON, SUN + 1)})


@pytest.mark.parametrize(
    ("phone", "quiet"),
    [
        ("+12125550123", QUIET_HOURS_DEFAULT),  # New York
        ("+13055550123", QUIET_HOURS_FLORIDA_OKLAHOMA),  # Miami
        ("+19185550123", QUIET_HOURS_FLORIDA_OKLAHOMA),  # Tulsa
        ("+14485550123", QUIET_HOURS_FLORIDA_OKLAHOMA),  # Florida overlays: 448, 324, 645, 728
        ("+13245550123", QUIET_HOURS_FLORIDA_OKLAHOMA),
        ("+16455550123", QUIET_HOURS_FLORIDA_OKLAHOMA),
        ("+17285550123", QUIET_HOURS_FLORIDA_OKLAHOMA),
        ("+15725550123", QUIET_HOURS_FLORIDA_OKLAHOMA),  # Oklahoma's newest overlay
        ("+19125550123", QUIET_HOURS_DEFAULT),  # Savannah, just over Florida's border
        ("+18005550123", QUIET_HOURS_DEFAULT),  # toll-free: no state, the federal hours
        ("+17875550123", QUIET_HOURS_DEFAULT),  # Puerto Rico, a US territory
        ("+16715550123", QUIET_HOURS_DEFAULT),  # Guam
        ("+14165550123", QUIET_HOURS_CANADA),  # Toronto
        ("+16045550123", QUIET_HOURS_CANADA),  # Vancouver
        ("+18765550123", None),  # Jamaica
        ("+442071838750", None),  # London
        ("not a number", None),
        ("someone@example.com", None),
    ],
)
def test_it_knows_the_quiet_hours_for_a_number(phone, quiet):
    assert quiet_hours_for(phone) == quiet


def test_it_narrows_each_day_to_the_quiet_hours():
    long_days = weekly_hours({MON: ("07:00", "22:00"), TUE: ("09:00", "17:00")})
    assert intersect(long_days, QUIET_HOURS_DEFAULT) == {
        MON: DayHours(time(8), time(21)),
        TUE: DayHours(time(9), time(17)),
    }


def test_it_closes_a_day_the_quiet_hours_leave_empty():
    late = weekly_hours({MON: ("09:00", "17:00"), SAT: ("21:00", "23:00")})
    assert intersect(late, QUIET_HOURS_DEFAULT) == {MON: DayHours(time(9), time(17))}


def test_it_narrows_the_schedule_for_a_recipient_by_number():
    long_days = weekly_hours({MON: ("07:00", "22:00")})
    assert hours_for_recipient(long_days, "+13055550123") == {MON: DayHours(time(8), time(20))}
    assert hours_for_recipient(long_days, "+17285550123") == {MON: DayHours(time(8), time(20))}
    assert hours_for_recipient(long_days, "+18765550123") == long_days


def test_it_gives_canadian_numbers_the_crtc_hours_on_weekdays_and_weekends():
    weekdays, weekend = DayHours(time(9), time(21, 30)), DayHours(time(10), time(18))
    assert hours_for_recipient(EVERY_DAY_7_TO_23, "+14165550123") == {
        **dict.fromkeys(range(MON, SAT), weekdays),
        SAT: weekend,
        SUN: weekend,
    }


def test_it_closes_a_day_the_weekday_hours_leave_empty():
    evenings = weekly_hours({FRI: ("19:00", "22:00"), SAT: ("19:00", "22:00")})
    assert intersect(evenings, QUIET_HOURS_CANADA) == {FRI: DayHours(time(19), time(21, 30))}


def test_it_closes_a_day_that_hours_by_weekday_leave_closed():
    closed_sunday = HoursByWeekday((QUIET_HOURS_DEFAULT,) * 6 + (None,))
    assert intersect(EVERY_DAY_7_TO_23, closed_sunday) == dict.fromkeys(
        range(MON, SUN), QUIET_HOURS_DEFAULT
    )


def test_it_refuses_hours_by_weekday_without_all_seven_days():
    with pytest.raises(ValueError, match="7 days"):
        HoursByWeekday((QUIET_HOURS_DEFAULT,) * 5)


def test_it_forecasts_canadian_recipients_within_the_crtc_hours():
    # Saturday 2026-06-13 09:00 in Toronto (EDT, UTC-4): the weekend opens at 10:00 local.
    toronto = QueuedGroup("America/Toronto", 3600, quiet_hours_for("+14165550123"))
    plan = forecast([toronto], EVERY_DAY_7_TO_23, rate_per_second=1, now=utc(2026, 6, 13, 13))
    assert plan.sends_per_hour == [(utc(2026, 6, 13, 14), 3600)]


def test_it_describes_how_quiet_hours_narrow_the_weekdays():
    long_weekdays = weekly_hours({day: ("07:00", "22:00") for day in range(MON, SAT)})
    assert narrowing_description(long_weekdays) == (
        "Legal quiet hours narrow Monday\N{EN DASH}Friday to 08:00\N{EN DASH}21:00 for US "
        "recipients (08:00\N{EN DASH}20:00 in Florida and Oklahoma); for Canadian recipients "
        "they narrow Monday\N{EN DASH}Friday to 09:00\N{EN DASH}21:30."
    )


def test_it_says_nothing_when_quiet_hours_leave_the_schedule_whole():
    assert narrowing_description(WEEKDAYS_9_TO_5) is None


def test_it_describes_a_narrowing_only_florida_and_oklahoma_feel():
    until_half_eight = weekly_hours({MON: ("09:00", "20:30"), TUE: ("09:00", "20:30")})
    assert narrowing_description(until_half_eight) == (
        "Legal quiet hours narrow Monday\N{EN DASH}Tuesday to 09:00\N{EN DASH}20:00 for "
        "recipients in Florida and Oklahoma."
    )


def test_it_describes_a_narrowing_only_canada_feels():
    saturday_morning = weekly_hours({MON: ("09:00", "17:00"), SAT: ("09:00", "12:00")})
    assert narrowing_description(saturday_morning) == (
        "Legal quiet hours narrow Saturday to 10:00\N{EN DASH}12:00 for Canadian recipients."
    )


def test_it_describes_a_day_the_quiet_hours_close():
    schedule = weekly_hours({MON: ("09:00", "20:30"), SUN: ("21:30", "23:00")})
    assert narrowing_description(schedule) == (
        "Legal quiet hours close Sunday for US recipients (and narrow Monday to "
        "09:00\N{EN DASH}20:00 in Florida and Oklahoma); for Canadian recipients they close "
        "Sunday."
    )


# ---------------------------------------------------------------- brute force against a minute scan

# (zone, a date a few days before one of its DST changes, or any date where it has none)
SCANNED_RANGES = [
    ("America/New_York", utc(2026, 3, 4)),
    ("America/New_York", utc(2026, 10, 28)),
    ("Europe/London", utc(2026, 3, 25)),
    ("Europe/London", utc(2026, 10, 21)),
    ("Australia/Lord_Howe", utc(2026, 4, 1)),
    ("Australia/Lord_Howe", utc(2026, 9, 30)),
    ("Pacific/Chatham", utc(2026, 4, 1)),
    ("Pacific/Chatham", utc(2026, 9, 23)),
    ("America/Santiago", utc(2026, 4, 1)),
    ("America/Santiago", utc(2026, 9, 2)),
    ("Asia/Kathmandu", utc(2026, 6, 1)),
    ("Pacific/Kiritimati", utc(2026, 6, 1)),
    ("Pacific/Pago_Pago", utc(2026, 6, 1)),
]
SCAN_DAYS = 19
MINUTES_A_DAY = 24 * 60


class ScannedMinute(NamedTuple):
    instant: datetime
    shown: datetime  # the naive local time on the recipient's clock


def minute_scan(zone: ZoneInfo, first: datetime) -> list[ScannedMinute]:
    minutes: list[ScannedMinute] = []
    for step in range(SCAN_DAYS * MINUTES_A_DAY):
        instant = first + timedelta(minutes=step)
        minutes.append(ScannedMinute(instant, instant.astimezone(zone).replace(tzinfo=None)))
    return minutes


def clock_changes(minutes: list[ScannedMinute]) -> list[int]:
    """Indexes of the minutes at which the clock jumped forward or back."""
    return [
        index
        for index in range(1, len(minutes))
        if minutes[index].shown - minutes[index - 1].shown != timedelta(minutes=1)
    ]


def random_schedule(rng: random.Random, near: datetime | None) -> dict[int, DayHours]:
    """Random hours in quarter hours; with `near`, that day's window has an edge close to it."""
    schedule = {}
    for day in rng.sample(range(7), rng.randint(1, 4)):
        lowest, highest = 0, 24 * 4 - 1
        if near is not None and day == near.weekday():
            quarter = (near.hour * 60 + near.minute) // 15
            lowest, highest = max(0, quarter - 6), min(highest, quarter + 6)
        opens, closes = sorted(rng.sample(range(lowest, highest + 1), 2))
        schedule[day] = DayHours(time(*divmod(opens * 15, 60)), time(*divmod(closes * 15, 60)))
    if near is not None and near.weekday() not in schedule:
        return random_schedule(rng, near)
    return schedule


def open_by_scan(minutes: list[ScannedMinute], schedule: dict[int, DayHours]) -> list[bool]:
    flags = []
    # The rule: the wall clock shown at that minute, both passes of a repeated hour alike.
    for minute in minutes:
        hours = schedule.get(minute.shown.weekday())
        flags.append(hours is not None and hours.open <= minute.shown.time() < hours.close)
    return flags


def first_at_or_after(flags: list[bool], wanted: bool) -> list[int | None]:
    """For each minute, the first minute at or after it whose flag is `wanted`."""
    found: list[int | None] = [None] * len(flags)
    upcoming = None
    for index in range(len(flags) - 1, -1, -1):
        if flags[index] == wanted:
            upcoming = index
        found[index] = upcoming
    return found


@pytest.mark.parametrize(("zone_name", "first_day"), SCANNED_RANGES)
def test_it_agrees_with_a_minute_by_minute_scan(zone_name, first_day):
    zone = ZoneInfo(zone_name)
    rng = random.Random(f"{zone_name}{first_day:%m}")
    minutes = minute_scan(zone, first_day - timedelta(days=1))
    changes = clock_changes(minutes)
    for round_ in range(6):
        change = changes[0] if changes and round_ % 3 else None
        # Most schedules put a window edge near the DST change, where the mistakes hide.
        near = minutes[change - 1].shown + timedelta(minutes=1) if change is not None else None
        schedule = random_schedule(rng, near)
        flags = open_by_scan(minutes, schedule)
        next_opening, next_closing = first_at_or_after(flags, True), first_at_or_after(flags, False)
        for _ in range(40):
            if change is not None and rng.random() < 0.5:
                index = change + rng.randrange(-36 * 60, 6 * 60)
            else:
                index = rng.randrange(MINUTES_A_DAY, 10 * MINUTES_A_DAY)
            instant = minutes[index].instant + timedelta(seconds=rng.choice([0, 0, 1, 59]))
            opening = next_open(instant, schedule, zone)
            assert is_open(instant, schedule, zone) == flags[index], (instant, schedule)
            expected = instant if flags[index] else minutes[next_opening[index]].instant
            assert opening == expected, (instant, schedule)
            assert is_open(opening, schedule, zone)
            if flags[index]:
                closing = minutes[next_closing[index]].instant
                assert window_end(instant, schedule, zone) == closing, (instant, schedule)
            else:
                # No minute between the instant and the opening is open.
                assert not any(flags[index + 1 : next_opening[index]])
                assert window_end(instant, schedule, zone) is None


# ---------------------------------------------------------------- forecast of the send plan

MONDAY_8_TO_8 = weekly_hours({MON: ("08:00", "20:00")})


def test_it_forecasts_an_hour_for_3600_messages_at_one_a_second():
    plan = forecast([("UTC", 3600)], MONDAY_8_TO_8, rate_per_second=1, now=utc(2026, 6, 15, 9))
    assert plan.finish_at == utc(2026, 6, 15, 10)
    assert plan.sends_per_hour == [(utc(2026, 6, 15, 9), 3600)]
    assert plan.not_contacted_before_end == 0


def test_it_forecasts_how_many_the_end_date_cuts_off():
    plan = forecast(
        [QueuedGroup("UTC", 10_000)],
        MONDAY_8_TO_8,
        rate_per_second=1,
        now=utc(2026, 6, 15, 9),
        end=utc(2026, 6, 15, 11),
    )
    assert plan.finish_at is None
    assert plan.sends_per_hour == [(utc(2026, 6, 15, 9), 3600), (utc(2026, 6, 15, 10), 3600)]
    assert plan.not_contacted_before_end == 2800


def test_it_forecasts_messages_in_a_closed_zone_waiting_for_its_window():
    weekdays = weekly_hours({MON: ("09:00", "17:00")})
    plan = forecast(
        [("Europe/London", 100), ("Asia/Tokyo", 100)],
        weekdays,
        rate_per_second=1,
        # 10:00 in London, 18:00 in Tokyo: Tokyo waits for next Monday 09:00 JST.
        now=utc(2026, 6, 15, 9),
    )
    assert plan.finish_at == utc(2026, 6, 22, 0, 1, 40)
    assert plan.sends_per_hour[0] == (utc(2026, 6, 15, 9), 100)
    assert plan.sends_per_hour[-1] == (utc(2026, 6, 22, 0), 100)
    assert len(plan.sends_per_hour) == 7 * 24 - 9 + 1
    assert sum(count for _, count in plan.sends_per_hour) == 200


def test_it_forecasts_a_window_opening_part_way_through_an_hour():
    # Kathmandu opens at 09:00 local, 03:15 UTC.
    plan = forecast(
        [("Asia/Kathmandu", 3600)], WEEKDAYS_9_TO_5, rate_per_second=1, now=utc(2026, 6, 15, 3)
    )
    assert plan.sends_per_hour == [(utc(2026, 6, 15, 3), 2700), (utc(2026, 6, 15, 4), 900)]
    assert plan.finish_at == utc(2026, 6, 15, 4, 15)


def test_it_forecasts_a_slow_sender_in_whole_messages():
    plan = forecast([("UTC", 100)], MONDAY_8_TO_8, rate_per_second=1 / 60, now=utc(2026, 6, 15, 18))
    # One a minute: 60 in the first hour, the other 40 in the next.
    assert plan.sends_per_hour == [(utc(2026, 6, 15, 18), 60), (utc(2026, 6, 15, 19), 40)]
    assert plan.finish_at == utc(2026, 6, 15, 19, 40)


def test_it_forecasts_the_group_whose_window_opened_first_being_served_first():
    nine_to_four = weekly_hours({MON: ("09:00", "16:00")})
    # Kolkata opened at 03:30 UTC and closes at 10:30 UTC; UTC opened at 09:00.
    plan = forecast(
        [("UTC", 3600), ("Asia/Kolkata", 3600)],
        nine_to_four,
        rate_per_second=1,
        now=utc(2026, 6, 15, 9),
    )
    assert plan.finish_at == utc(2026, 6, 15, 11)


def test_it_forecasts_within_legal_quiet_hours():
    long_day = weekly_hours({MON: ("06:00", "23:00")})
    plan = forecast(
        [QueuedGroup("America/New_York", 3600, QUIET_HOURS_FLORIDA_OKLAHOMA)],
        long_day,
        rate_per_second=1,
        now=utc(2026, 6, 15, 10),
    )
    # 08:00 EDT is 12:00 UTC.
    assert plan.finish_at == utc(2026, 6, 15, 13)


def test_it_forecasts_from_the_campaign_start():
    plan = forecast(
        [("UTC", 60)],
        MONDAY_8_TO_8,
        rate_per_second=1,
        now=utc(2026, 6, 14),
        start=utc(2026, 6, 15, 12, 30),
    )
    assert plan.finish_at == utc(2026, 6, 15, 12, 31)


def test_it_forecasts_nothing_sent_when_no_day_is_open():
    plan = forecast([("UTC", 5)], {}, rate_per_second=1, now=utc(2026, 6, 15))
    assert plan.finish_at is None
    assert plan.sends_per_hour == []
    assert plan.not_contacted_before_end == 5


def test_it_forecasts_an_empty_queue_as_nothing_to_do():
    plan = forecast([], MONDAY_8_TO_8, rate_per_second=1, now=utc(2026, 6, 15))
    assert (plan.finish_at, plan.sends_per_hour, plan.not_contacted_before_end) == (None, [], 0)


def test_it_refuses_a_rate_of_zero():
    with pytest.raises(ValueError, match="above zero"):
        forecast([("UTC", 5)], MONDAY_8_TO_8, rate_per_second=0, now=utc(2026, 6, 15))


def test_it_forecasts_hundreds_of_timezones_over_two_months():
    zones = sorted(available_timezones() - {"Factory", "localtime"})[::2][:300]
    quiet = [None, QUIET_HOURS_DEFAULT, QUIET_HOURS_FLORIDA_OKLAHOMA]
    queued = [QueuedGroup(zone, 1000, quiet[i % 3]) for i, zone in enumerate(zones)]
    plan = forecast(
        queued, WEEKDAYS_9_TO_5, rate_per_second=0.05, now=utc(2026, 3, 1), end=utc(2026, 5, 1)
    )
    sent = sum(count for _, count in plan.sends_per_hour)
    assert sent + plan.not_contacted_before_end == 1000 * len(zones)
    assert 0 < plan.not_contacted_before_end < 1000 * len(zones)
    assert all(count <= 0.05 * 3600 + 1 for _, count in plan.sends_per_hour)
