"""Friendship with the LINE account, per LINE user, from ``follow``/``unfollow`` webhooks (issue 6 item 5).

LINE delivers only to users who have the account as a friend, and only these two events tell who is one: the profile
API also answers for non-friends who have written to the account (reference/line.md "SDK v3" -> Friendship). So the
answer has three values: ``True`` (the latest event was a follow), ``False`` (an unfollow: LINE's unfollow is a
block) and ``None`` (no event seen: a user from before this table, or one who wrote without adding the account).
Only ``False`` changes behaviour (core.subscriptions: a consent then waits in ``pending`` for the follow); unknown
behaves as a friend, as before friendship was tracked.

Events can arrive late and out of order (one webhook carries several; redeliveries): the stored value changes only
for an event at least as new as the one that set it, by the event's own ``timestamp``.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import LineFriend
from storage.types import utcnow


async def is_friend(session: AsyncSession, user_id: str) -> bool | None:
    """``True``/``False`` as the latest follow/unfollow of LINE user ``user_id`` said; ``None`` when none was seen."""
    row = await session.get(LineFriend, user_id)
    return row.friend if row is not None else None


async def record(session: AsyncSession, user_id: str, friend: bool, *, at: datetime,
                 webhook_event_id: str | None) -> bool:
    """Inside a write transaction: remember that ``user_id`` followed (``friend`` True) or unfollowed (False) at
    ``at`` (aware UTC: the event's ``timestamp``), by event ``webhook_event_id``. Returns False, changing nothing,
    when an event newer than ``at`` already set the value (a late or reordered event)."""
    row = await session.get(LineFriend, user_id)
    if row is not None and row.changed_at > at:
        return False
    if row is None:
        row = LineFriend(user_id=user_id, friend=friend, changed_at=at, webhook_event_id=webhook_event_id)
    row.friend, row.changed_at, row.webhook_event_id, row.updated_at = friend, at, webhook_event_id, utcnow()
    session.add(row)
    await session.flush()
    return True
