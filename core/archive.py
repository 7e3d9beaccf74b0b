"""The public archive of the newsletter: the issues that were sent, so people see what they will get before they
subscribe (the landing page's "recent issues" and ``GET /issues``).

Only issues in status ``sent`` that are not test copies (``test_of`` is None) are public: drafts, scheduled and
cancelled issues, a broadcast still sending, and test sends never show. The date is when sending started.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import select

from storage.database import Database
from storage.models import Issue, IssueStatus
from storage.types import is_row_id


@dataclass(frozen=True)
class PublishedIssue:
    """One public issue: ``issue_id``, ``title``, ``sent_at`` (aware UTC: when sending started), ``body_md``
    (Markdown; rendered by the caller) and ``image_sha256`` (its picture, or None)."""

    issue_id: int
    title: str
    sent_at: datetime
    body_md: str
    image_sha256: str | None


def _public():  # type: ignore[no-untyped-def]
    return (Issue.status == IssueStatus.SENT.value, Issue.test_of.is_(None),  # type: ignore[union-attr]
            Issue.started_at.is_not(None))  # type: ignore[union-attr]


def _published(issue: Issue) -> PublishedIssue:
    assert issue.id is not None and issue.started_at is not None
    return PublishedIssue(issue.id, issue.title, issue.started_at, issue.body_md, issue.image_sha256)


async def published_issues(db: Database, *, limit: int = 50) -> list[PublishedIssue]:
    """The public issues, newest first, at most ``limit``."""
    async with db.read() as session:
        rows = (await session.exec(
            select(Issue).where(*_public())
            .order_by(Issue.started_at.desc(), Issue.id.desc())  # type: ignore[union-attr]
            .limit(limit)
        )).all()
    return [_published(issue) for issue in rows]


async def published_issue(db: Database, issue_id: int) -> PublishedIssue | None:
    """Public issue ``issue_id``, or None when there is no such issue or it is not public (also for a number that is
    no row id, such as 0 or one beyond 64 bits, which a URL can carry)."""
    if not is_row_id(issue_id):
        return None
    async with db.read() as session:
        issue = (await session.exec(select(Issue).where(Issue.id == issue_id, *_public()))).first()
    return _published(issue) if issue is not None else None
