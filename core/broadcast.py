"""Issues and broadcasts: an issue (title + Markdown) becomes one delivery row per active, consented endpoint.

The consent rule, topic included, is inside the query (:mod:`core.eligibility`), as one ``INSERT … SELECT`` that
ignores rows already present, so enqueuing twice never doubles a delivery (DESIGN.md "Delivery: an outbox"). An issue
with a topic reaches the subscribers who chose that topic or chose none (= every topic).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel.ext.asyncio.session import AsyncSession

from core.eligibility import consented_clause
from storage.database import Database
from storage.models import Delivery, DeliveryStatus, Endpoint, Issue, IssueStatus
from storage.types import UTCDateTime, utcnow

_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(?P<title>.+?)\s*#*\s*$")


class IssueFileError(ValueError):
    """An issue file cannot be used (empty, no title, no body)."""


@dataclass(frozen=True)
class IssueDraft:
    """A title (one line, <= 300 characters) and a Markdown body."""

    title: str
    body_md: str


def parse_issue_markdown(text: str) -> IssueDraft:
    """Split an issue file: the first Markdown heading is the title, the rest is the body.

    Without a heading, the first non-empty line is the title. Raises :class:`IssueFileError` when there is no title
    or no body, or the title is longer than 300 characters.
    """
    lines = text.replace("\r\n", "\n").lstrip("\ufeff").split("\n")
    title = None
    rest: list[str] = []
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        match = _HEADING.match(line)
        title = (match.group("title") if match else line).strip()
        rest = lines[index + 1 :]
        break
    if not title:
        raise IssueFileError("the issue has no title (start it with a '# heading')")
    if len(title) > 300:
        raise IssueFileError("the title is longer than 300 characters")
    body = "\n".join(rest).strip("\n")
    if not body.strip():
        raise IssueFileError("the issue has no body")
    return IssueDraft(title=title, body_md=body)


async def create_issue(
    db: Database, draft: IssueDraft, *, created_by: str = "cli", topic: str | None = None,
    channels: Iterable[str] | None = None,
) -> Issue:
    """Store a new issue (status ``draft``) and return it with its id. ``topic`` None targets every topic;
    ``channels`` None = every channel enabled when it is sent."""
    async with db.write() as session:
        issue = Issue(title=draft.title, body_md=draft.body_md, topic=topic, created_by=created_by,
                      channels=list(channels) if channels is not None else None)
        session.add(issue)
        await session.flush()
        return issue


async def recipient_counts(db: Database, channels: Iterable[str], *, topic: str | None = None,
                           only: ColumnElement[bool] | None = None) -> dict[str, int]:
    """How many endpoints per channel would receive an issue on ``topic`` (None: every topic) now — active,
    consented and wanting the topic — for the preview. ``only``: a further WHERE clause over :class:`Endpoint`
    (e.g. the admins' own endpoints for a test send)."""
    wanted = list(channels)
    async with db.read() as session:
        query = (
            select(Endpoint.channel, func.count())
            .where(consented_clause(topic), Endpoint.channel.in_(wanted))  # type: ignore[attr-defined]
            .group_by(Endpoint.channel)
        )
        if only is not None:
            query = query.where(only)
        rows = await session.exec(query)  # type: ignore[call-overload]
        found = {channel: int(count) for channel, count in rows.all()}
    return {channel: found.get(channel, 0) for channel in wanted}


#: Issue states from which deliveries may be created (core/issues.py holds the whole state machine).
ENQUEUE_FROM = (IssueStatus.DRAFT.value, IssueStatus.SCHEDULED.value, IssueStatus.SENDING.value)


async def enqueue(db: Database, issue_id: int, channels: Iterable[str]) -> dict[str, int]:
    """Create the deliveries of issue ``issue_id`` on ``channels`` (to endpoints wanting the issue's topic) and mark
    the issue ``sending``.

    Returns the number of deliveries per channel for the issue after the insert. Idempotent: rows that exist already
    are kept as they are. Raises ``LookupError`` for an unknown issue and ``ValueError`` for a sent or cancelled one.
    """
    async with db.write() as session:
        issue = await session.get(Issue, issue_id)
        if issue is None:
            raise LookupError(f"no issue {issue_id}")
        return await enqueue_in(session, issue, channels, now=utcnow())


async def enqueue_in(
    session: AsyncSession, issue: Issue, channels: Iterable[str], *, now: datetime,
    only: ColumnElement[bool] | None = None,
) -> dict[str, int]:
    """:func:`enqueue` inside the caller's write transaction (``issue`` loaded in ``session``). ``only``: a further
    WHERE clause over :class:`Endpoint` (a test send's admin endpoints). The issue moves to ``sending`` (``started_at``
    = ``now``). Raises ``ValueError`` when the issue is neither a draft, scheduled nor sending."""
    if issue.status not in ENQUEUE_FROM:
        raise ValueError(f"issue {issue.id} is {issue.status}: no deliveries can be created")
    wanted = list(channels)
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    source = select(
        literal(issue.id),
        Endpoint.id,
        Endpoint.channel,
        literal(DeliveryStatus.PENDING.value),
        literal(0),
        literal(now, UTCDateTime()),
        literal(now, UTCDateTime()),
    ).where(consented_clause(issue.topic), Endpoint.channel.in_(wanted))  # type: ignore[attr-defined]
    if only is not None:
        source = source.where(only)
    statement = insert(Delivery).from_select(
        ["issue_id", "endpoint_id", "channel", "status", "attempts", "created_at", "updated_at"], source
    ).on_conflict_do_nothing(index_elements=["issue_id", "endpoint_id"])
    await session.exec(statement)  # type: ignore[call-overload]
    if issue.status != IssueStatus.SENDING.value:
        issue.status = IssueStatus.SENDING.value
        issue.started_at = now
        session.add(issue)
    rows = await session.exec(  # type: ignore[call-overload]
        select(Delivery.channel, func.count()).where(Delivery.issue_id == issue.id).group_by(Delivery.channel)
    )
    found = {channel: int(count) for channel, count in rows.all()}
    return {channel: found.get(channel, 0) for channel in wanted}


async def finish_if_done(db: Database, issue_id: int) -> bool:
    """Mark the issue ``sent`` when none of its deliveries is pending or in flight. Returns True when it is done."""
    async with db.write() as session:
        open_count = (
            await session.exec(  # type: ignore[call-overload]
                select(func.count()).select_from(Delivery).where(
                    Delivery.issue_id == issue_id,
                    Delivery.status.in_([DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value]),  # type: ignore[attr-defined]
                )
            )
        ).one()[0]
        if open_count:
            return False
        await session.exec(  # type: ignore[call-overload]
            update(Issue)
            .where(Issue.id == issue_id, Issue.status == IssueStatus.SENDING.value)
            .values(status=IssueStatus.SENT.value, finished_at=utcnow())
        )
        return True


async def requeue(db: Database, issue_id: int, from_status: DeliveryStatus, *, channel: str | None = None) -> int:
    """Put an issue's ``deferred`` (``deliveries resume``) or ``uncertain`` (``deliveries retry-uncertain``)
    deliveries back to ``pending``; returns how many. The issue goes back to ``sending``.

    Consent is re-checked at the next attempt as always, so a person who withdrew meanwhile is skipped. A retried
    uncertain delivery is a new send the author asked for: its LINE retry key is dropped (a fresh request).
    Raises ``ValueError`` for any other status or a cancelled issue, and ``LookupError`` for an unknown issue.
    """
    if from_status not in (DeliveryStatus.DEFERRED, DeliveryStatus.UNCERTAIN):
        raise ValueError("only deferred or uncertain deliveries can be re-queued")
    now = utcnow()
    async with db.write() as session:
        issue = await session.get(Issue, issue_id)
        if issue is None:
            raise LookupError(f"no issue {issue_id}")
        if issue.status == IssueStatus.CANCELLED.value:
            raise ValueError(f"issue {issue_id} was cancelled: its deliveries are not sent any more")
        statement = (
            update(Delivery)
            .where(Delivery.issue_id == issue_id, Delivery.status == from_status.value)
            .values(status=DeliveryStatus.PENDING.value, next_attempt_at=None, retry_key=None, attempted_at=None,
                    claimed_by=None, lease_expires_at=None, updated_at=now,
                    reason=f"re-queued from {from_status.value}")
        )
        if channel is not None:
            statement = statement.where(Delivery.channel == channel)
        result = await session.exec(statement)  # type: ignore[call-overload]
        count = int(result.rowcount or 0)
        if count and issue.status != IssueStatus.SENDING.value:
            issue.status = IssueStatus.SENDING.value
            issue.finished_at = None
            session.add(issue)
    return count


async def defer_over_quota(db: Database, issue_id: int, channel: str, allowed: int, reason: str) -> int:
    """Defer the issue's pending deliveries on ``channel`` beyond the first ``allowed`` (in id order): over a
    platform's monthly quota they would fail anyway (LINE 429 "monthly limit"; reference/line.md). Returns how many
    were deferred; they resume with ``otayori deliveries resume`` once the plan or the month changes."""
    async with db.write() as session:
        keep = (
            select(Delivery.id)
            .where(Delivery.issue_id == issue_id, Delivery.channel == channel,
                   Delivery.status == DeliveryStatus.PENDING.value)
            .order_by(Delivery.id)
            .limit(max(allowed, 0))
        )
        result = await session.exec(  # type: ignore[call-overload]
            update(Delivery)
            .where(Delivery.issue_id == issue_id, Delivery.channel == channel,
                   Delivery.status == DeliveryStatus.PENDING.value, Delivery.id.not_in(keep.scalar_subquery()))  # type: ignore[union-attr]
            .values(status=DeliveryStatus.DEFERRED.value, reason=reason, updated_at=utcnow())
        )
        return int(result.rowcount or 0)
