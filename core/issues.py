"""An issue's life, made explicit: draft -> scheduled -> sending -> sent, or cancelled (issue 5 items 4 and 9).

```
draft ----schedule----> scheduled ----due (enqueue_due)----> sending ----all deliveries done----> sent
  |  \\                   |  ^  |                               |                                  |
  |   +----send now------------------------------------------->+                                  |
  |                      +--+  reschedule                      |<------- resume / retry-uncertain -+
  +------cancel--------> cancelled <----cancel-----------------+
```

* ``cancel`` stops a draft, a scheduled issue, or a running broadcast: its deliveries that are ``pending`` or
  ``deferred``, and those claimed by a dispatcher but not yet attempted, become ``cancelled``; ``sent`` stay sent; a
  request already in flight finishes and is recorded. Cancelling a finished broadcast is refused with a clear
  reason (nothing is left to stop), so is cancelling twice.
* ``enqueue_due`` moves every scheduled issue whose time has come to ``sending`` and creates its deliveries in the
  same transaction; a second run (another process, or after a restart) finds nothing left to do, so an issue is
  never enqueued twice.
* A test send is a copy of the issue (``test_of``) enqueued only to the admins' own endpoints; the original stays as
  it was.

Every refusal is an :class:`IssueStateError` (a :class:`core.texts.ReasonError`: Japanese for the chat, English for
the CLI). Each change made on an admin's behalf is logged with :func:`core.admins.record` in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import case, delete, func, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from core import admins, texts
from core.admins import Actor
from core.broadcast import enqueue_in
from core.reports import DeliveryReport, delivery_report
from core.schedule import ScheduleError, format_local
from core.settings import Settings
from core.texts import ReasonError
from storage.database import Database
from storage.models import AdminCompose, Channel, Delivery, DeliveryStatus, Issue, IssueStatus
from storage.types import utcnow

S = IssueStatus  # short name for the transition table below

#: Allowed moves (from -> to). ``sent -> sending`` is ``deliveries resume`` / ``retry-uncertain`` re-opening a
#: finished broadcast; ``scheduled -> scheduled`` a new time; ``scheduled -> draft`` taking the schedule back.
TRANSITIONS: dict[str, frozenset[str]] = {
    S.DRAFT.value: frozenset({S.SCHEDULED.value, S.SENDING.value, S.CANCELLED.value}),
    S.SCHEDULED.value: frozenset({S.SCHEDULED.value, S.DRAFT.value, S.SENDING.value, S.CANCELLED.value}),
    S.SENDING.value: frozenset({S.SENT.value, S.CANCELLED.value}),
    S.SENT.value: frozenset({S.SENDING.value}),
    S.CANCELLED.value: frozenset(),
}

#: Every channel an issue can name (``Issue.channels``).
ALL_CHANNELS = (Channel.LINE.value, Channel.TELEGRAM.value, Channel.EMAIL.value)
#: Scheduled issues taken per ``enqueue_due`` call (the next call takes the rest).
DUE_BATCH = 20
_OPEN = (DeliveryStatus.PENDING.value, DeliveryStatus.DEFERRED.value, DeliveryStatus.SENDING.value)
CANCEL_REASON = "cancelled by the author"


class IssueStateError(ReasonError):
    """An issue cannot do what was asked in its state (keys ``issue_wrong_state``, ``issue_already_sent``,
    ``issue_already_cancelled``, ``issue_incomplete``, ``test_no_recipients``)."""


class IssueNotFound(ReasonError, LookupError):
    """No issue with that id (key ``issue_not_found``)."""


def check_transition(issue: Issue, to: str, action: str) -> None:
    """Raise :class:`IssueStateError` unless ``issue`` may move to state ``to``; ``action`` (a key of
    ``texts.ISSUE_ACTION_NAMES``) says what was asked, for the reason."""
    if to in TRANSITIONS[issue.status]:
        return
    if action == "cancel" and issue.status == S.SENT.value:
        raise IssueStateError("issue_already_sent", issue_id=issue.id)
    if action == "cancel" and issue.status == S.CANCELLED.value:
        raise IssueStateError("issue_already_cancelled", issue_id=issue.id)
    names = texts.ISSUE_STATE_NAMES[issue.status]
    doing = texts.ISSUE_ACTION_NAMES[action]
    raise IssueStateError("issue_wrong_state", issue_id=issue.id, state=names["ja"], state_en=names["en"],
                          action=doing["ja"], action_en=doing["en"])


def check_complete(issue: Issue) -> None:
    """Raise :class:`IssueStateError` (``issue_incomplete``) when the issue has no title or no body yet."""
    for part, value in (("title", issue.title), ("body", issue.body_md)):
        if not (value or "").strip():
            names = texts.ISSUE_PART_NAMES[part]
            raise IssueStateError("issue_incomplete", issue_id=issue.id, missing=names["ja"], missing_en=names["en"])


def check_sendable(issue: Issue) -> None:
    """Raise :class:`IssueStateError` unless ``issue`` may be sent now (:func:`send_now`): a complete draft or
    scheduled issue. A ``sent`` issue is refused with ``issue_wrong_state``: sent -> sending exists for
    ``deliveries resume``, never for sending a finished issue a second time."""
    if issue.status == S.SENT.value:
        check_transition(issue, S.DRAFT.value, "send")  # raises issue_wrong_state (「配信完了」のため送信できません)
    check_transition(issue, S.SENDING.value, "send")
    check_complete(issue)


async def load_issue(session: AsyncSession, issue_id: int, *, lock: bool = False) -> Issue:
    """The issue ``issue_id`` in ``session`` (row-locked on PostgreSQL when ``lock``). Raises
    :class:`IssueNotFound`."""
    query = select(Issue).where(Issue.id == issue_id)
    if lock and session.bind is not None and session.bind.dialect.name == "postgresql":
        query = query.with_for_update()
    issue = (await session.exec(query)).scalars().first()  # type: ignore[call-overload]
    if issue is None:
        raise IssueNotFound("issue_not_found", issue_id=issue_id)
    return issue


# ---- reading -----------------------------------------------------------------------------------------------------

@dataclass
class IssueSummary:
    """One row of ``otayori issues list``: the issue and its deliveries per status (all channels)."""

    issue: Issue
    counts: dict[str, int] = field(default_factory=dict)


async def list_issues(db: Database, *, limit: int = 20, status: str | None = None,
                      include_tests: bool = False) -> list[IssueSummary]:
    """The latest ``limit`` issues (newest first), optionally only those in ``status``; test sends only with
    ``include_tests``."""
    async with db.read() as session:
        query = select(Issue).order_by(Issue.id.desc()).limit(limit)  # type: ignore[union-attr]
        if status is not None:
            query = query.where(Issue.status == status)
        if not include_tests:
            query = query.where(Issue.test_of.is_(None))  # type: ignore[union-attr]
        issues = list((await session.exec(query)).scalars().all())  # type: ignore[call-overload]
        summaries = {issue.id: IssueSummary(issue) for issue in issues}
        if summaries:
            rows = await session.exec(  # type: ignore[call-overload]
                select(Delivery.issue_id, Delivery.status, func.count())
                .where(Delivery.issue_id.in_(list(summaries)))  # type: ignore[attr-defined]
                .group_by(Delivery.issue_id, Delivery.status)
            )
            for issue_id, delivery_status, count in rows.all():
                summaries[issue_id].counts[delivery_status] = int(count)
    return list(summaries.values())


@dataclass
class IssueDetail:
    """``otayori issues show``: the issue and its delivery report (counts per channel and status, failure reasons)."""

    issue: Issue
    report: DeliveryReport


async def issue_detail(db: Database, issue_id: int) -> IssueDetail:
    """The issue and its deliveries. Raises :class:`IssueNotFound`."""
    async with db.read() as session:
        issue = await load_issue(session, issue_id)
    report = await delivery_report(db, issue_id)
    assert report is not None
    return IssueDetail(issue, report)


# ---- scheduling ----------------------------------------------------------------------------------------------------

async def schedule_issue(db: Database, issue_id: int, at: datetime, *, actor: Actor,
                         now: datetime | None = None) -> Issue:
    """Schedule a draft (or move a scheduled issue) to ``at`` (aware; from :func:`core.schedule.parse_schedule`).

    Raises :class:`IssueNotFound`, :class:`IssueStateError` (not a draft or scheduled issue, or no title/body), and
    :class:`core.schedule.ScheduleError` ``schedule_past`` when ``at`` is not after ``now`` (time passed since the
    schedule was parsed).
    """
    now = now or utcnow()
    if at <= now:
        raise ScheduleError("schedule_past", when=format_local(at, ZoneInfo("UTC")), zone="UTC")
    async with db.write() as session:
        issue = await load_issue(session, issue_id, lock=True)
        check_transition(issue, S.SCHEDULED.value, "schedule")
        check_complete(issue)
        issue.status = S.SCHEDULED.value
        issue.scheduled_at = at
        session.add(issue)
        await admins.record(session, actor, "issue.schedule", issue_id=issue_id,
                            details={"at": at.isoformat()}, now=now)
        await _end_compose(session, issue_id)
        return issue


@dataclass(frozen=True)
class DueIssue:
    """A scheduled issue that was just enqueued: its id, deliveries per channel, and the channels it names that had
    no sender in the process that enqueued it (their deliveries wait in the outbox for one)."""

    issue_id: int
    enqueued: dict[str, int]
    waiting_channels: tuple[str, ...] = ()


async def enqueue_due(db: Database, enabled_channels: Iterable[str], *, now: datetime | None = None) -> list[DueIssue]:
    """Enqueue every scheduled issue whose time has come (at most :data:`DUE_BATCH` per call, earliest first).

    Each moves ``scheduled -> sending`` and gets its deliveries (consent and topic inside the query) in one
    transaction, so two runs — concurrent processes, or the same process after a restart — never enqueue an issue
    twice: a second run no longer sees it as scheduled (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: one writer).
    Channels: the issue's own list, else every channel in ``enabled_channels``.
    """
    now = now or utcnow()
    enabled = list(enabled_channels)
    due: list[DueIssue] = []
    async with db.write() as session:
        query = (
            select(Issue)
            .where(Issue.status == S.SCHEDULED.value, Issue.scheduled_at <= now)  # type: ignore[operator]
            .order_by(Issue.scheduled_at, Issue.id)  # type: ignore[arg-type]
            .limit(DUE_BATCH)
        )
        if db.is_postgresql:
            query = query.with_for_update(skip_locked=True)
        for issue in (await session.exec(query)).scalars().all():  # type: ignore[call-overload]
            channels = list(issue.channels) if issue.channels else enabled
            enqueued = await enqueue_in(session, issue, channels, now=now)
            due.append(DueIssue(issue.id, enqueued, tuple(c for c in channels if c not in enabled)))  # type: ignore[arg-type]
    return due


async def send_now(db: Database, issue_id: int, enabled_channels: Iterable[str], *, actor: Actor,
                   now: datetime | None = None) -> dict[str, int]:
    """Enqueue a draft (or a scheduled issue, ahead of its time) now; returns deliveries per channel.

    Pressing "send" twice is one broadcast: the second press finds the issue ``sending`` — or ``sent``, when the
    first one has finished — and is refused (:class:`IssueStateError`), and the deliveries are unique per (issue,
    endpoint) anyway.
    """
    now = now or utcnow()
    async with db.write() as session:
        issue = await load_issue(session, issue_id, lock=True)
        check_sendable(issue)
        channels = list(issue.channels) if issue.channels else list(enabled_channels)
        enqueued = await enqueue_in(session, issue, channels, now=now)
        await admins.record(session, actor, "issue.send", issue_id=issue_id, details={"deliveries": enqueued},
                            now=now)
        await _end_compose(session, issue_id)
        return enqueued


# ---- cancelling ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CancelResult:
    """What ``cancel`` did: the state the issue was in, deliveries now ``cancelled``, requests still in flight (they
    finish and are recorded), and deliveries already sent (they stay sent)."""

    issue_id: int
    previous_status: str
    cancelled: int
    in_flight: int
    sent: int


async def cancel_issue(db: Database, issue_id: int, *, actor: Actor, now: datetime | None = None) -> CancelResult:
    """Cancel a draft, a scheduled issue or a running broadcast (see the module docstring).

    Raises :class:`IssueNotFound`; :class:`IssueStateError` with ``issue_already_sent`` when the broadcast has
    finished (also when every delivery is done but the issue is not yet marked sent) and ``issue_already_cancelled``
    when it was cancelled before.
    """
    now = now or utcnow()
    async with db.write() as session:
        issue = await load_issue(session, issue_id, lock=True)
        check_transition(issue, S.CANCELLED.value, "cancel")
        previous = issue.status
        cancelled = in_flight = 0
        if previous == S.SENDING.value:
            counts = await _delivery_counts(session, issue_id)
            if not any(counts.get(status, 0) for status in _OPEN):
                raise IssueStateError("issue_already_sent", issue_id=issue_id)
            # Claimed-but-not-attempted rows are taken back too: the dispatcher's attempt mark requires
            # status 'sending', so it will neither mark nor send them (a request starts only after its mark).
            result = await session.exec(  # type: ignore[call-overload]
                update(Delivery)
                .where(
                    Delivery.issue_id == issue_id,
                    Delivery.status.in_([DeliveryStatus.PENDING.value, DeliveryStatus.DEFERRED.value])  # type: ignore[attr-defined]
                    | ((Delivery.status == DeliveryStatus.SENDING.value) & Delivery.attempted_at.is_(None)),  # type: ignore[union-attr]
                )
                .values(status=DeliveryStatus.CANCELLED.value, claimed_by=None, lease_expires_at=None,
                        next_attempt_at=None, updated_at=now,
                        # A pending LINE retry was attempted before (its request may have been accepted): say so.
                        reason=case((Delivery.attempted_at.is_(None), CANCEL_REASON),  # type: ignore[union-attr]
                                    else_=f"{CANCEL_REASON}; an earlier attempt may have arrived"))
            )
            cancelled = int(result.rowcount or 0)
            in_flight = (await _delivery_counts(session, issue_id)).get(DeliveryStatus.SENDING.value, 0)
        sent = (await _delivery_counts(session, issue_id)).get(DeliveryStatus.SENT.value, 0)
        issue.status = S.CANCELLED.value
        issue.cancelled_at = now
        session.add(issue)
        await admins.record(session, actor, "issue.cancel", issue_id=issue_id,
                            details={"from": previous, "cancelled": cancelled, "in_flight": in_flight, "sent": sent},
                            now=now)
        await _end_compose(session, issue_id)
    return CancelResult(issue_id, previous, cancelled, in_flight, sent)


async def _delivery_counts(session: AsyncSession, issue_id: int) -> dict[str, int]:
    rows = await session.exec(  # type: ignore[call-overload]
        select(Delivery.status, func.count()).where(Delivery.issue_id == issue_id).group_by(Delivery.status)
    )
    return {status: int(count) for status, count in rows.all()}


async def _end_compose(session: AsyncSession, issue_id: int) -> None:
    """An admin composing ``issue_id`` is done with it (scheduled, sent or cancelled): clear that conversation."""
    await session.exec(delete(AdminCompose).where(AdminCompose.issue_id == issue_id))  # type: ignore[call-overload]


# ---- test send -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AdminCopy:
    """A test send: the copy's issue id (dispatch it) and its deliveries per channel."""

    issue_id: int
    enqueued: dict[str, int]


async def create_test_send(
    db: Database, settings: Settings, issue_id: int, enabled_channels: Iterable[str], *, actor: Actor,
    admins_only: Iterable[Actor] | None = None, now: datetime | None = None,
) -> AdminCopy:
    """Copy issue ``issue_id`` as a test (``test_of``) and enqueue it only to the admins' own endpoints
    (:func:`core.admins.own_endpoints_clause`; ``admins_only`` narrows to those admins, e.g. the one who asked in a
    chat; default every configured admin) on the issue's channels (default ``enabled_channels``). The copy targets
    every topic: an admin sees the issue whatever topics they chose. The original issue does not change.

    The admins' endpoints must be subscribed (consented) like anyone's: the dispatcher re-checks consent before every
    attempt, and the audit checks every attempted delivery. Raises :class:`IssueNotFound`, and
    :class:`IssueStateError` (``issue_incomplete``; ``test_no_recipients`` when no admin endpoint qualifies — then
    nothing is stored).
    """
    now = now or utcnow()
    async with db.write() as session:
        original = await load_issue(session, issue_id)
        check_complete(original)
        channels = list(original.channels) if original.channels else list(enabled_channels)
        copy = Issue(title=original.title, body_md=original.body_md, topic=None, channels=channels,
                     created_by=actor.key, test_of=original.id, created_at=now, image_sha256=original.image_sha256)
        session.add(copy)
        await session.flush()
        enqueued = await enqueue_in(session, copy, channels, now=now,
                                    only=admins.own_endpoints_clause(settings, admins_only))
        if not any(enqueued.values()):
            raise IssueStateError("test_no_recipients")  # rolls the copy back
        await admins.record(session, actor, "issue.test_send", issue_id=original.id,
                            details={"test_issue_id": copy.id, "deliveries": enqueued}, now=now)
        assert copy.id is not None
        return AdminCopy(copy.id, enqueued)
