"""Drafts and the admin's compose conversation, both in the database so they survive a restart (issue 5 item 2).

A draft is an :class:`storage.models.Issue` in status ``draft``: title, Markdown body, topic (None = every topic) and
channels (None = every enabled channel). While an admin composes it in a chat, an :class:`AdminCompose` row says
which draft and which step: DESIGN.md's chat grammar lets a stored conversation state override the keyword table
("an admin composing a draft: the next message is the body, whatever it says") until it ends or times out.

The chat UI drives the steps; this module only stores them and checks what a draft may hold.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite

from core import admins
from core.admins import Actor
from core.issues import ALL_CHANNELS, check_transition, load_issue
from core.settings import Settings
from core.texts import ReasonError
from storage.database import Database
from storage.models import AdminCompose, Issue, IssueStatus
from storage.types import utcnow

#: A compose step older than this is over: the admin's next message is read as an ordinary command again.
COMPOSE_TIMEOUT = timedelta(minutes=30)
#: Stands for "leave unchanged" in :func:`update_draft` (None is a value there: every topic / every channel).
UNCHANGED = object()


class ComposeStep(StrEnum):
    """Where an admin is in composing a draft."""

    BODY = "awaiting_body"
    """The next message is the body, whatever it says."""
    TITLE = "awaiting_title"
    """The next message is the title."""
    OPTIONS = "choosing"
    """Topic and channel buttons, preview, test, send or schedule; messages are commands again."""


async def start_draft(db: Database, actor: Actor, *, now: datetime | None = None) -> Issue:
    """Create an empty draft for ``actor`` and make its compose step :attr:`ComposeStep.BODY` (replacing any
    conversation the admin had on that channel). Returns the draft with its id."""
    now = now or utcnow()
    async with db.write() as session:
        issue = Issue(title="", body_md="", created_by=actor.key, created_at=now)
        session.add(issue)
        await session.flush()
        assert issue.id is not None
        insert = postgresql.insert if db.is_postgresql else sqlite.insert
        values = {"channel": actor.channel, "user_id": actor.user_id, "issue_id": issue.id,
                  "step": ComposeStep.BODY.value, "updated_at": now}
        statement = insert(AdminCompose).values(**values)
        await session.exec(statement.on_conflict_do_update(  # type: ignore[call-overload]
            index_elements=["channel", "user_id"],
            set_={"issue_id": issue.id, "step": ComposeStep.BODY.value, "updated_at": now},
        ))
        await admins.record(session, actor, "draft.start", issue_id=issue.id, now=now)
        return issue


async def compose_state(db: Database, actor: Actor, *, now: datetime | None = None) -> tuple[ComposeStep, Issue] | None:
    """The admin's current step and draft, or None: no conversation, it timed out (:data:`COMPOSE_TIMEOUT`), or its
    issue is no longer a draft (then the stale row is removed)."""
    now = now or utcnow()
    async with db.write() as session:
        row = await session.get(AdminCompose, (actor.channel, actor.user_id))
        if row is None:
            return None
        issue = await session.get(Issue, row.issue_id)
        if issue is None or issue.status != IssueStatus.DRAFT.value or now - row.updated_at > COMPOSE_TIMEOUT:
            await session.delete(row)
            return None
        return ComposeStep(row.step), issue


async def set_compose_step(db: Database, actor: Actor, step: ComposeStep, *, now: datetime | None = None) -> None:
    """Move the admin's conversation to ``step`` (and restart its timeout). Raises ``LookupError`` when the admin
    has no conversation."""
    async with db.write() as session:
        row = await session.get(AdminCompose, (actor.channel, actor.user_id))
        if row is None:
            raise LookupError(f"{actor.key} is not composing a draft")
        row.step = step.value
        row.updated_at = now or utcnow()
        session.add(row)


async def end_compose(db: Database, actor: Actor) -> None:
    """End the admin's conversation on that channel (the draft itself stays)."""
    async with db.write() as session:
        await session.exec(delete(AdminCompose).where(  # type: ignore[call-overload]
            AdminCompose.channel == actor.channel, AdminCompose.user_id == actor.user_id))


async def update_draft(
    db: Database, settings: Settings, issue_id: int, *, actor: Actor, title: str | object = UNCHANGED,
    body_md: str | object = UNCHANGED, topic: str | None | object = UNCHANGED,
    channels: Iterable[str] | None | object = UNCHANGED, now: datetime | None = None,
) -> Issue:
    """Change a draft's (or a scheduled issue's) title, body, topic (a configured slug, or None for every topic)
    and channels (a subset of line/telegram/email, or None for every enabled channel); arguments left
    :data:`UNCHANGED` stay. The admin log records which fields changed, never their contents.

    Raises :class:`core.issues.IssueNotFound`, :class:`core.issues.IssueStateError` (not a draft or scheduled
    issue), :class:`core.texts.ReasonError` ``unknown_topic`` / ``unknown_channel``, and ``ValueError`` for a title
    over 300 characters.
    """
    now = now or utcnow()
    changed: list[str] = []
    async with db.write() as session:
        issue = await load_issue(session, issue_id, lock=True)
        if issue.status not in (IssueStatus.DRAFT.value, IssueStatus.SCHEDULED.value):
            check_transition(issue, IssueStatus.DRAFT.value, "edit")  # raises: not editable any more
        if title is not UNCHANGED:
            text = str(title).strip()
            if len(text) > 300:
                raise ValueError("the title is longer than 300 characters")
            issue.title = text
            changed.append("title")
        if body_md is not UNCHANGED:
            issue.body_md = str(body_md)
            changed.append("body")
        if topic is not UNCHANGED:
            if topic is not None and topic not in settings.topic_labels:
                raise ReasonError("unknown_topic", given=str(topic), choices=", ".join(settings.topic_labels))
            issue.topic = topic  # type: ignore[assignment]
            changed.append("topic")
        if channels is not UNCHANGED:
            chosen = None if channels is None else list(dict.fromkeys(channels))  # type: ignore[call-overload]
            for channel in chosen or ():
                if channel not in ALL_CHANNELS:
                    raise ReasonError("unknown_channel", given=channel)
            issue.channels = chosen or None
            changed.append("channels")
        session.add(issue)
        await admins.record(session, actor, "draft.edit", issue_id=issue_id, details={"fields": changed}, now=now)
        compose = await session.get(AdminCompose, (actor.channel, actor.user_id))
        if compose is not None and compose.issue_id == issue_id:
            compose.updated_at = now
            session.add(compose)
        return issue
