"""Schedule parsing (issue 5 item 4): absolute times in OTAYORI_TIMEZONE, relative +30m/+45s/+2h, full-width input,
and every refusal with its reason key (core/schedule.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.schedule import ScheduleError, format_local, parse_schedule
from core.texts import ReasonError

TOKYO = ZoneInfo("Asia/Tokyo")
NOW = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)  # 2026-11-29 12:00 in Tokyo


@pytest.mark.parametrize(
    ("text", "expected_utc"),
    [
        ("2026-12-01 09:00", datetime(2026, 12, 1, 0, 0, tzinfo=UTC)),  # 09:00 JST = 00:00 UTC
        ("２０２６-１２-０１ ０９:００", datetime(2026, 12, 1, 0, 0, tzinfo=UTC)),  # full-width digits
        ("２０２６－１２－０１\u3000０９：００", datetime(2026, 12, 1, 0, 0, tzinfo=UTC)),  # full-width － ： and U+3000
        (" 2026/12/1 9:05 ", datetime(2026, 12, 1, 0, 5, tzinfo=UTC)),
        ("2026-12-01T09:00:30", datetime(2026, 12, 1, 0, 0, 30, tzinfo=UTC)),
        ("2026-11-29 12:01", datetime(2026, 11, 29, 3, 1, tzinfo=UTC)),  # one minute from now
        ("2027-01-01 00:00", datetime(2026, 12, 31, 15, 0, tzinfo=UTC)),  # New Year in Tokyo is still 2026 in UTC
    ],
)
def test_absolute_times_are_read_in_the_configured_zone(text: str, expected_utc: datetime):
    moment = parse_schedule(text, TOKYO, NOW)
    assert moment == expected_utc
    assert moment.tzinfo is not None and moment.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("+30m", 1800), ("+45s", 45), ("+2h", 7200), ("+1d", 86400), ("+1h30m", 5400), ("＋３０ｍ", 1800),
        ("+2H", 7200), ("+ 30m", None), ("+30分", 1800), ("+1時間15分", 4500), ("+10秒", 10), ("+3日", 259200),
        ("\u200b+45s\u3000", 45),
    ],
)
def test_relative_times(text: str, seconds: int | None):
    if seconds is None:  # "+ 30m": a space after the sign is not the syntax
        with pytest.raises(ScheduleError) as caught:
            parse_schedule(text, TOKYO, NOW)
        assert caught.value.key == "schedule_malformed"
        return
    assert parse_schedule(text, TOKYO, NOW) == NOW + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "text",
    ["", "  ", "明日の朝", "2026-12-01", "09:00", "2026-13-01 09:00", "2026-02-30 09:00", "2026-12-01 25:00",
     "2026-12-01 09:60", "+30", "+30x", "30m", "+m", "-30m", "2026-12-01 09:00 JST", "+1234567s"],
)
def test_malformed_times_are_refused_with_the_reason(text: str):
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(text, TOKYO, NOW)
    assert caught.value.key == "schedule_malformed"
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, ReasonError)
    assert "2026-12-01 09:00" in caught.value.message("ja") and "+30m" in str(caught.value)


@pytest.mark.parametrize("text", ["2026-11-29 12:00", "2026-11-29 11:59", "2025-12-01 09:00", "+0m", "+0s"])
def test_past_times_are_refused_saying_when_and_where(text: str):
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(text, TOKYO, NOW)
    assert caught.value.key == "schedule_past"
    assert "Asia/Tokyo" in caught.value.message("ja") and "過ぎています" in caught.value.message("ja")
    assert "in the past" in str(caught.value)


def test_too_far_ahead_is_refused():
    for text in ("2062-12-01 09:00", "+400d", "+9000h"):
        with pytest.raises(ScheduleError) as caught:
            parse_schedule(text, TOKYO, NOW)
        assert caught.value.key == "schedule_too_far", text
    assert parse_schedule("+365d", TOKYO, NOW) == NOW + timedelta(days=365)


def test_a_local_time_that_does_not_exist_is_refused():
    new_york = ZoneInfo("America/New_York")  # 2027-03-14 02:00 -> 03:00 (DST starts)
    with pytest.raises(ScheduleError) as caught:
        parse_schedule("2027-03-14 02:30", new_york, NOW)
    assert caught.value.key == "schedule_nonexistent"
    assert parse_schedule("2027-03-14 03:30", new_york, NOW) == datetime(2027, 3, 14, 7, 30, tzinfo=UTC)


def test_format_local_shows_the_zone_time():
    assert format_local(datetime(2026, 12, 1, 0, 0, tzinfo=UTC), TOKYO) == "2026-12-01 09:00"
