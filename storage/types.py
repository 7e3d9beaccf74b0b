"""Column types shared by every table.

All timestamps are UTC and timezone-aware in Python (DESIGN.md "Shape"). SQLite silently drops UTC offsets and
asyncpg refuses to mix naive and aware values, so one column type converts to UTC on write and attaches UTC on read.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sqlalchemy.types import DateTime, TypeDecorator


def utcnow() -> datetime:
    """The current time as a timezone-aware UTC ``datetime`` (microsecond precision)."""
    return datetime.now(UTC)


#: The largest row id: SQLite's INTEGER PRIMARY KEY and PostgreSQL's BIGINT are signed 64-bit integers
#: (https://www.sqlite.org/datatype3.html); a bigger number cannot even be bound as a query parameter.
MAX_ROW_ID = 2**63 - 1
_ROW_ID_RE = re.compile(r"[0-9]{1,19}")


def is_row_id(value: int) -> bool:
    """True when ``value`` can be a row id: ``1 <= value <= MAX_ROW_ID``. Check numbers that come from outside (a URL,
    a button) before querying: SQLite raises ``OverflowError`` for one outside the 64-bit range."""
    return 1 <= value <= MAX_ROW_ID


def row_id_or_none(text: str) -> int | None:
    """``text`` (ASCII digits only, as typed: no sign, no spaces) as a row id, or None when it is not one."""
    if _ROW_ID_RE.fullmatch(text) is None:
        return None
    value = int(text)
    return value if is_row_id(value) else None


class UTCDateTime(TypeDecorator[datetime]):
    """A ``datetime`` column stored as UTC.

    Write: aware values are converted to UTC; naive values are refused (``ValueError``) because their zone is unknown.
    Read: values come back aware, in UTC, on SQLite and PostgreSQL alike.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: otayori stores only timezone-aware UTC timestamps")
        value = value.astimezone(UTC)
        # SQLite keeps the text form; store it without an offset so that string comparisons order correctly.
        if getattr(dialect, "name", "") == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
