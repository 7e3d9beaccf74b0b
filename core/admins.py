"""Who is an admin, what admins did, and which endpoints are an admin's own (issue 5 item 1; DESIGN.md settings
``OTAYORI_TELEGRAM_ADMIN_IDS``, ``OTAYORI_LINE_ADMIN_USER_IDS``).

* An admin is a Telegram **user** id in ``OTAYORI_TELEGRAM_ADMIN_IDS`` or a LINE user id in
  ``OTAYORI_LINE_ADMIN_USER_IDS``, checked by the *sender's* id on every message and button press (:func:`is_admin`),
  in a private chat or a group. Nobody else is ever an admin; email never is.
* Every admin action — and every refused attempt at one — is a row of the append-only ``admin_action`` table: who,
  what, when, never message contents (:func:`record`, :func:`record_refusal`; listed by ``otayori admin-log``).
  Nothing here updates or deletes a row.
* An admin's own endpoints (for a test send) are their Telegram private chat (whose id is their user id), their LINE
  user id, and the email endpoints of the subscribers those chat endpoints belong to (:func:`own_endpoints_clause`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from core.settings import Settings
from storage.database import Database
from storage.models import AdminAction, Channel, Endpoint
from storage.types import utcnow

#: ``admin_action.outcome`` values.
OK = "ok"
REFUSED = "refused"


@dataclass(frozen=True)
class Actor:
    """Who acts: ``channel`` ``telegram`` / ``line`` (the sender's user id) or ``cli`` (the OS user name)."""

    channel: str
    user_id: str

    @property
    def key(self) -> str:
        """``channel:user_id``, e.g. ``telegram:12345`` (stored as an issue's ``created_by``)."""
        return f"{self.channel}:{self.user_id}"


def is_admin(settings: Settings, channel: str, user_id: str | int | None) -> bool:
    """True when ``user_id`` (the sender's user id, not the chat id) is an admin on ``channel``.

    Telegram ids compare as integers (``"42"`` and ``42`` are the same user); LINE ids exactly. Any other channel,
    or a missing id, is never an admin.
    """
    if user_id is None:
        return False
    if channel == Channel.TELEGRAM.value:
        try:
            return int(str(user_id).strip()) in settings.telegram_admin_ids
        except ValueError:
            return False
    if channel == Channel.LINE.value:
        return str(user_id) in settings.line_admin_user_ids
    return False


def configured_admins(settings: Settings) -> list[Actor]:
    """Every admin the settings name (Telegram first, then LINE, in the configured order)."""
    return [Actor(Channel.TELEGRAM.value, str(user_id)) for user_id in settings.telegram_admin_ids] + [
        Actor(Channel.LINE.value, user_id) for user_id in settings.line_admin_user_ids
    ]


def own_endpoints_clause(settings: Settings, admins: Iterable[Actor] | None = None) -> ColumnElement[bool]:
    """WHERE clause over :class:`Endpoint`: the endpoint belongs to one of ``admins`` (default: every configured
    admin) — their Telegram private chat, their LINE user id, or an email endpoint of the same subscriber.

    Only admins the settings name count: an :class:`Actor` that is not an admin selects nothing.
    """
    chosen = [a for a in (admins if admins is not None else configured_admins(settings))
              if is_admin(settings, a.channel, a.user_id)]
    telegram = sorted({str(int(a.user_id)) for a in chosen if a.channel == Channel.TELEGRAM.value})
    line = sorted({a.user_id for a in chosen if a.channel == Channel.LINE.value})
    if not telegram and not line:
        return false()
    chats = or_(
        and_(Endpoint.channel == Channel.TELEGRAM.value, Endpoint.address.in_(telegram)),  # type: ignore[union-attr]
        and_(Endpoint.channel == Channel.LINE.value, Endpoint.address.in_(line)),  # type: ignore[union-attr]
    )
    subscribers = select(Endpoint.subscriber_id).where(chats).scalar_subquery()
    return or_(chats, and_(Endpoint.channel == Channel.EMAIL.value, Endpoint.subscriber_id.in_(subscribers)))  # type: ignore[attr-defined]


async def record(
    session: AsyncSession, actor: Actor, action: str, *, issue_id: int | None = None,
    details: Mapping[str, Any] | None = None, outcome: str = OK, now: datetime | None = None,
) -> AdminAction:
    """Append one admin-log row inside ``session``'s write transaction (so the log and the action commit together).

    ``action``: a dotted verb such as ``issue.schedule``. ``details``: JSON-able facts (ids, counts, times), never
    message contents.
    """
    row = AdminAction(occurred_at=now or utcnow(), channel=actor.channel, actor=actor.user_id, action=action,
                      outcome=outcome, issue_id=issue_id, details=dict(details or {}))
    session.add(row)
    await session.flush()
    return row


async def record_refusal(
    db: Database, channel: str, user_id: str, action: str, *, clock: Callable[[], datetime] = utcnow,
) -> AdminAction:
    """Log a refused admin attempt (a non-admin typed an admin verb or pressed an admin button), in its own
    transaction. ``action`` names what was attempted; the message itself is never stored."""
    async with db.write() as session:
        return await record(session, Actor(channel, user_id), action, outcome=REFUSED, now=clock())


async def admin_log(db: Database, *, limit: int = 50) -> list[AdminAction]:
    """The latest ``limit`` admin-log rows, newest first."""
    async with db.read() as session:
        rows = await session.exec(
            select(AdminAction).order_by(AdminAction.id.desc()).limit(limit)  # type: ignore[union-attr]
        )
        return list(rows.scalars().all())
