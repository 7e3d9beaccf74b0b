"""How the newsletter is doing (issue 5 item 8): audience, movement, campaigns, and the last issues' results.

Definitions (all read from the database; times in UTC, days in ``OTAYORI_TIMEZONE``):

* **audience**: endpoints that would receive an issue now (active, consented: :func:`core.eligibility.consented_clause`)
  per channel, per channel and topic (an endpoint counts for a topic when its subscriber chose it or chose none), and
  distinct subscribers in total and per topic;
* **sign-ups**: ledger events ``grant`` (chat) and ``confirm`` (email double opt-in) — each is one sign-up, so a
  person who leaves and comes back counts again; **withdrawals**: ``withdraw`` events (any source: chat, link,
  blocking, admin);
* **new / withdrawn over 7 and 30 days**: sign-ups and withdrawals whose time is within the last 7 / 30 × 24 h;
* **sign-ups per campaign**: per (campaign code or None, channel), all time; **withdrawals per campaign**: ``withdraw``
  events per (campaign, channel), all time, the campaign being that of the endpoint's latest sign-up before the
  withdrawal (a withdraw event itself carries no campaign: people leave from the chat, a link or by blocking);
* **issue results**: the last issues that started sending (test sends excluded): deliveries per status, and
  unsubscribes within 48 h — endpoints that were sent the issue and withdrew within 48 h after it started.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, select
from sqlalchemy.orm import aliased
from sqlmodel.ext.asyncio.session import AsyncSession

from core.eligibility import consented_clause
from core.settings import Settings
from storage.database import Database
from storage.models import Channel, ConsentAction, ConsentEvent, Delivery, DeliveryStatus, Endpoint, Issue
from storage.types import utcnow

#: The windows of "new and withdrawn", in days.
WINDOWS = (7, 30)
#: An unsubscribe this soon after an issue started counts against that issue.
UNSUBSCRIBE_WINDOW = timedelta(hours=48)
SIGNUP_ACTIONS = (ConsentAction.GRANT.value, ConsentAction.CONFIRM.value)
CHANNELS = (Channel.LINE.value, Channel.TELEGRAM.value, Channel.EMAIL.value)


@dataclass
class Movement:
    """Sign-ups and withdrawals per channel within the last ``days`` days."""

    days: int
    new: dict[str, int] = field(default_factory=dict)
    withdrawn: dict[str, int] = field(default_factory=dict)


@dataclass
class IssueResult:
    """One issue's outcome: ``counts`` per delivery status, and ``unsubscribes_48h``."""

    issue_id: int
    title: str
    topic: str | None
    status: str
    started_at: datetime | None
    counts: dict[str, int] = field(default_factory=dict)
    unsubscribes_48h: int = 0


@dataclass
class Stats:
    """The whole report (see the module docstring). Dictionaries list every channel (and topic) with 0 when none.

    ``by_channel[channel]``; ``by_channel_topic[(channel, slug)]``; ``subscribers`` and ``subscribers_by_topic[slug]``
    count people; ``movement`` one :class:`Movement` per window; ``signups_by_campaign[(campaign, channel)]`` and
    ``withdrawals_by_campaign[(campaign, channel)]`` (only pairs with at least one); ``issues`` newest first.
    """

    generated_at: datetime
    by_channel: dict[str, int]
    by_channel_topic: dict[tuple[str, str], int]
    subscribers: int
    subscribers_by_topic: dict[str, int]
    movement: list[Movement]
    signups_by_campaign: dict[tuple[str | None, str], int]
    issues: list[IssueResult]
    withdrawals_by_campaign: dict[tuple[str | None, str], int] = field(default_factory=dict)


async def collect_stats(db: Database, settings: Settings, *, now: datetime | None = None,
                        last_issues: int = 5) -> Stats:
    """Compute :class:`Stats` at ``now`` (default: the current time) over the last ``last_issues`` issues."""
    now = now or utcnow()
    async with db.read() as session:
        by_channel = dict.fromkeys(CHANNELS, 0)
        for channel, count in (await session.exec(  # type: ignore[call-overload]
            select(Endpoint.channel, func.count()).where(consented_clause(None)).group_by(Endpoint.channel)
        )).all():
            by_channel[channel] = int(count)
        subscribers = int((await session.exec(  # type: ignore[call-overload]
            select(func.count(func.distinct(Endpoint.subscriber_id))).where(consented_clause(None))
        )).one()[0])
        by_channel_topic: dict[tuple[str, str], int] = {}
        subscribers_by_topic: dict[str, int] = {}
        for slug in settings.topic_labels:
            for channel in CHANNELS:
                by_channel_topic[(channel, slug)] = 0
            for channel, count in (await session.exec(  # type: ignore[call-overload]
                select(Endpoint.channel, func.count()).where(consented_clause(slug)).group_by(Endpoint.channel)
            )).all():
                by_channel_topic[(channel, slug)] = int(count)
            subscribers_by_topic[slug] = int((await session.exec(  # type: ignore[call-overload]
                select(func.count(func.distinct(Endpoint.subscriber_id))).where(consented_clause(slug))
            )).one()[0])

        movement = []
        for days in WINDOWS:
            window = Movement(days, dict.fromkeys(CHANNELS, 0), dict.fromkeys(CHANNELS, 0))
            since = now - timedelta(days=days)
            for channel, action, count in (await session.exec(  # type: ignore[call-overload]
                select(ConsentEvent.channel, ConsentEvent.action, func.count())
                .where(ConsentEvent.occurred_at > since, ConsentEvent.occurred_at <= now,  # type: ignore[operator]
                       ConsentEvent.action.in_([*SIGNUP_ACTIONS, ConsentAction.WITHDRAW.value]))  # type: ignore[attr-defined]
                .group_by(ConsentEvent.channel, ConsentEvent.action)
            )).all():
                target = window.withdrawn if action == ConsentAction.WITHDRAW.value else window.new
                target[channel] = target.get(channel, 0) + int(count)
            movement.append(window)

        signups_by_campaign, withdrawals_by_campaign = await campaign_counts(session)
        issues = await _issue_results(session, last_issues)
    return Stats(now, by_channel, by_channel_topic, subscribers, subscribers_by_topic, movement,
                 signups_by_campaign, issues, withdrawals_by_campaign)


CampaignCounts = dict[tuple[str | None, str], int]


async def campaign_counts(session: AsyncSession) -> tuple[CampaignCounts, CampaignCounts]:
    """Sign-ups and withdrawals per ``(campaign code or None, channel)``, all time (module docstring). A withdrawal
    counts for the campaign of the same endpoint's latest ``grant``/``confirm`` event before it (None when it had
    none, e.g. a block before any consent)."""
    signups = {
        (campaign, channel): int(count)
        for campaign, channel, count in (await session.exec(  # type: ignore[call-overload]
            select(ConsentEvent.campaign, ConsentEvent.channel, func.count())
            .where(ConsentEvent.action.in_(SIGNUP_ACTIONS))  # type: ignore[attr-defined]
            .group_by(ConsentEvent.campaign, ConsentEvent.channel)
        )).all()
    }
    signup = aliased(ConsentEvent)
    withdrawal = aliased(ConsentEvent)
    # The ledger is append-only with increasing ids, so "before" is a smaller id (times may tie within a second).
    source = (
        select(signup.campaign)
        .where(signup.endpoint_id == withdrawal.endpoint_id, signup.id < withdrawal.id,  # type: ignore[operator]
               signup.action.in_(SIGNUP_ACTIONS))  # type: ignore[attr-defined]
        .order_by(signup.id.desc())  # type: ignore[attr-defined]
        .limit(1)
        .correlate(withdrawal)
        .scalar_subquery()
    )
    withdrawals: CampaignCounts = defaultdict(int)
    for campaign, channel in (await session.exec(  # type: ignore[call-overload]
        select(source, withdrawal.channel).where(withdrawal.action == ConsentAction.WITHDRAW.value)
    )).all():
        withdrawals[(campaign, channel)] += 1
    return signups, dict(withdrawals)


async def _issue_results(session: AsyncSession, limit: int) -> list[IssueResult]:
    rows = (await session.exec(  # type: ignore[call-overload]
        select(Issue)
        .where(Issue.started_at.is_not(None), Issue.test_of.is_(None))  # type: ignore[union-attr]
        .order_by(Issue.started_at.desc(), Issue.id.desc())  # type: ignore[union-attr]
        .limit(limit)
    )).scalars().all()
    results = []
    for issue in rows:
        result = IssueResult(issue.id, issue.title, issue.topic, issue.status, issue.started_at)
        for status, count in (await session.exec(  # type: ignore[call-overload]
            select(Delivery.status, func.count()).where(Delivery.issue_id == issue.id).group_by(Delivery.status)
        )).all():
            result.counts[status] = int(count)
        reached = select(Delivery.endpoint_id).where(
            Delivery.issue_id == issue.id, Delivery.status == DeliveryStatus.SENT.value)
        result.unsubscribes_48h = int((await session.exec(  # type: ignore[call-overload]
            select(func.count(func.distinct(ConsentEvent.endpoint_id))).where(and_(
                ConsentEvent.action == ConsentAction.WITHDRAW.value,
                ConsentEvent.endpoint_id.in_(reached),  # type: ignore[union-attr]
                ConsentEvent.occurred_at >= issue.started_at,  # type: ignore[operator]
                ConsentEvent.occurred_at <= issue.started_at + UNSUBSCRIBE_WINDOW,  # type: ignore[operator]
            ))
        )).one()[0])
        results.append(result)
    return results


async def signups_per_day(db: Database, zone: ZoneInfo, *, days: int = 30,
                          now: datetime | None = None) -> dict[str, list[tuple[date, int]]]:
    """Sign-ups per local day (in ``zone``) and channel over the last ``days`` days, today included: for each channel
    a list of ``(day, count)`` with every day present (0 when none), oldest first. For the chart."""
    now = now or utcnow()
    today = now.astimezone(zone).date()
    first = today - timedelta(days=days - 1)
    start = datetime.combine(first, datetime.min.time(), tzinfo=zone)
    counts: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    async with db.read() as session:
        rows = await session.exec(  # type: ignore[call-overload]
            select(ConsentEvent.occurred_at, ConsentEvent.channel)
            .where(ConsentEvent.action.in_(SIGNUP_ACTIONS), ConsentEvent.occurred_at >= start,  # type: ignore[attr-defined,operator]
                   ConsentEvent.occurred_at <= now)  # type: ignore[operator]
        )
        for occurred_at, channel in rows.all():
            counts[channel][occurred_at.astimezone(zone).date()] += 1
    span = [first + timedelta(days=offset) for offset in range(days)]
    return {channel: [(day, counts[channel].get(day, 0)) for day in span] for channel in CHANNELS}
