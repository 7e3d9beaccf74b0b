"""When to send: the author's schedule text -> an aware UTC moment (issue 5 item 4; DESIGN.md ``OTAYORI_TIMEZONE``).

Accepted forms, after NFKC (so full-width ``２０２６-１２-０１ ０９:００``, ``＋３０ｍ`` and ``：`` work) and trimming:

* absolute, in the configured time zone: ``2026-12-01 09:00`` (also ``2026/12/01 9:00``, ``2026-12-01T09:00``,
  optional ``:SS``);
* relative to now: ``+30m``, ``+45s``, ``+2h``, ``+1d`` and combinations such as ``+1h30m`` (units ``s m h d``, or
  ``秒 分 時間 日``).

Refused, each with its reason (:class:`ScheduleError`, a :class:`core.texts.ReasonError`): anything else
(``schedule_malformed``), a moment not after now (``schedule_past``), a local time that does not exist in the zone
(a daylight-saving gap: ``schedule_nonexistent``) and anything more than :data:`MAX_AHEAD` ahead
(``schedule_too_far``, a typo guard: ``2062`` for ``2026``).

Pure module: no I/O; the caller passes ``now``.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from core.texts import ReasonError

#: How far ahead a schedule may reach.
MAX_AHEAD = timedelta(days=366)

_ABSOLUTE = re.compile(
    r"(?P<year>\d{4})[-/](?P<month>\d{1,2})[-/](?P<day>\d{1,2})(?:\s+|T)"
    r"(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2}))?"
)
_RELATIVE = re.compile(r"\+(?P<parts>(?:\d{1,6}\s*(?:s|m|h|d|秒|分|時間|日)\s*)+)")
_RELATIVE_PART = re.compile(r"(\d{1,6})\s*(s|m|h|d|秒|分|時間|日)")
_UNIT_SECONDS = {"s": 1, "秒": 1, "m": 60, "分": 60, "h": 3600, "時間": 3600, "d": 86400, "日": 86400}


class ScheduleError(ReasonError):
    """A schedule that cannot be used; ``key`` is one of ``schedule_malformed``, ``schedule_past``,
    ``schedule_nonexistent``, ``schedule_too_far`` (strings in core/texts.py)."""


def _clean(text: str) -> str:
    """NFKC (full-width digits, ＋, ：, U+3000), invisible format characters dropped, whitespace collapsed."""
    visible = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return " ".join(unicodedata.normalize("NFKC", visible).split())


def format_local(moment: datetime, zone: ZoneInfo) -> str:
    """``moment`` as ``YYYY-MM-DD HH:MM`` in ``zone`` (how schedules are shown back to the author)."""
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def parse_schedule(text: str, zone: ZoneInfo, now: datetime) -> datetime:
    """The moment ``text`` names, as an aware UTC ``datetime``.

    ``zone``: the author's time zone (``Settings.zone``) for absolute times. ``now``: aware current time. Raises
    :class:`ScheduleError` (with the reason) for malformed, past, non-existent or too distant times.
    """
    cleaned = _clean(text)
    relative = _RELATIVE.fullmatch(cleaned.lower())
    if relative is not None:
        seconds = sum(int(amount) * _UNIT_SECONDS[unit] for amount, unit in _RELATIVE_PART.findall(relative["parts"]))
        if seconds > MAX_AHEAD.total_seconds():
            raise ScheduleError("schedule_too_far", days=MAX_AHEAD.days)
        moment = now.astimezone(UTC) + timedelta(seconds=seconds)
    else:
        moment = _absolute(cleaned, text, zone)
    if moment <= now:
        raise ScheduleError("schedule_past", when=format_local(moment, zone), zone=zone.key)
    if moment - now > MAX_AHEAD:
        raise ScheduleError("schedule_too_far", days=MAX_AHEAD.days)
    return moment


def _absolute(cleaned: str, original: str, zone: ZoneInfo) -> datetime:
    match = _ABSOLUTE.fullmatch(cleaned)
    if match is None:
        raise ScheduleError("schedule_malformed", given=original.strip())
    try:
        local = datetime(int(match["year"]), int(match["month"]), int(match["day"]), int(match["hour"]),
                         int(match["minute"]), int(match["second"] or 0), tzinfo=zone)
    except ValueError:  # 2026-02-30, 25:00 …
        raise ScheduleError("schedule_malformed", given=original.strip()) from None
    moment = local.astimezone(UTC)
    # A wall time inside a daylight-saving gap does not survive the round trip (PEP 495): refuse it rather than
    # silently sending an hour off.
    if moment.astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
        raise ScheduleError("schedule_nonexistent", when=cleaned, zone=zone.key)
    return moment
