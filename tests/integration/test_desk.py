"""The author's desk without the chat UI (issue 5 items 1, 2, 4, 9): admins, the admin log, drafts that survive a
restart, the issue state machine, scheduled issues firing exactly once (also across a restart and between two
processes), cancelling a running broadcast, and test sends to the admins' own endpoints only.

Real SQLite files (and PostgreSQL through ``any_db`` where the SQL differs); senders are recording fakes at the edge.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from sqlmodel import select

from core import consent
from core.admins import Actor, admin_log, configured_admins, is_admin, record_refusal
from core.audit import audit
from core.broadcast import IssueDraft, create_issue, enqueue
from core.channels import OutboundMessage, Outcome, SendResult
from core.dispatcher import Dispatcher, DispatchPolicy
from core.drafts import COMPOSE_TIMEOUT, ComposeStep, compose_state, set_compose_step, start_draft, update_draft
from core.issues import (
    TRANSITIONS,
    IssueNotFound,
    IssueStateError,
    cancel_issue,
    create_test_send,
    enqueue_due,
    schedule_issue,
    send_now,
)
from core.subscriptions import ChatContext, SubscriptionService
from core.texts import ReasonError
from storage.database import Database
from storage.models import AdminAction, Delivery, Endpoint, Issue
from tests.conftest import make_settings

ADMIN_TG = 5550001
ADMIN_LINE = "U" + "a" * 32
CLI = Actor("cli", "yamada")
DRAFT = IssueDraft("12月のIT通信", "**二段階認証**のすすめ。")


class RecordingSender:
    """Records every request's recipients; ``before_send`` runs first (a hook to act mid-broadcast)."""

    def __init__(self, channel: str, max_recipients: int = 1, before_send=None) -> None:
        self.channel = channel
        self.max_recipients = max_recipients
        self.before_send = before_send
        self.recipients: list[str] = []

    async def send(self, message: OutboundMessage) -> SendResult:
        if self.before_send is not None:
            await self.before_send(message)
        self.recipients.extend(message.recipients)
        return SendResult(Outcome.sent())


@pytest.fixture
def admin_settings(tmp_path):
    return make_settings(tmp_path, telegram_admin_ids=[ADMIN_TG, 5550009], line_admin_user_ids=[ADMIN_LINE])


async def subscribe(service: SubscriptionService, channel: str, address: str) -> None:
    ctx = ChatContext(channel=channel, address=address)
    terms = await service.handle_text(ctx, "登録")
    assert (await service.handle_button(ctx, terms[0].buttons[0].data))[0].kind == "subscribed"


async def add_confirmed_email(db: Database, chat_address: str, email: str, at: datetime | None = None) -> None:
    """Give the subscriber of ``chat_address`` a confirmed email endpoint (as the double opt-in would), its
    ``confirm`` event at ``at`` (default: now)."""
    async with db.write() as session:
        chat = (await session.exec(select(Endpoint).where(Endpoint.address == chat_address))).one()
        endpoint = Endpoint(subscriber_id=chat.subscriber_id, channel="email", address=email, state="active")
        session.add(endpoint)
        await session.flush()
        await consent.append(db, session, consent.ConsentFacts(
            subscriber_id=chat.subscriber_id, endpoint_id=endpoint.id, channel="email", address=email,
            action="confirm", basis="opt_in", source="web", occurred_at=at))


async def statuses(db: Database, issue_id: int) -> dict[str, str]:
    async with db.read() as session:
        rows = (await session.exec(select(Delivery, Endpoint).join(Endpoint, Endpoint.id == Delivery.endpoint_id)
                                   .where(Delivery.issue_id == issue_id))).all()
    return {endpoint.address: delivery.status for delivery, endpoint in rows}


async def issue_status(db: Database, issue_id: int) -> str:
    async with db.read() as session:
        return (await session.get(Issue, issue_id)).status


# ---- admins and the admin log ----------------------------------------------------------------------------------------

def test_who_is_an_admin(admin_settings):
    assert is_admin(admin_settings, "telegram", ADMIN_TG) and is_admin(admin_settings, "telegram", f" {ADMIN_TG}")
    assert is_admin(admin_settings, "line", ADMIN_LINE)
    assert not is_admin(admin_settings, "telegram", 5550002)
    assert not is_admin(admin_settings, "telegram", "-1005550001") and not is_admin(admin_settings, "telegram", "abc")
    assert not is_admin(admin_settings, "line", ADMIN_LINE.upper())  # LINE ids compare exactly
    assert not is_admin(admin_settings, "line", str(ADMIN_TG))  # an id is an admin only on its own channel
    assert not is_admin(admin_settings, "email", "taro@example.jp") and not is_admin(admin_settings, "telegram", None)
    assert [a.key for a in configured_admins(admin_settings)] == [
        f"telegram:{ADMIN_TG}", "telegram:5550009", f"line:{ADMIN_LINE}"]


async def test_admin_log_records_actions_and_refusals_newest_first(db, admin_settings, clock):
    await record_refusal(db, "telegram", "777", "broadcast", clock=clock)
    clock.advance(60)
    draft = await start_draft(db, Actor("telegram", str(ADMIN_TG)), now=clock())
    clock.advance(60)
    await update_draft(db, admin_settings, draft.id, actor=Actor("telegram", str(ADMIN_TG)), title="お知らせ",
                       body_md="秘密の本文", topic="events", now=clock())
    rows = await admin_log(db)
    assert [(r.action, r.outcome, r.channel, r.actor) for r in rows] == [
        ("draft.edit", "ok", "telegram", str(ADMIN_TG)),
        ("draft.start", "ok", "telegram", str(ADMIN_TG)),
        ("broadcast", "refused", "telegram", "777"),
    ]
    assert rows[0].details == {"fields": ["title", "body", "topic"]} and rows[0].issue_id == draft.id
    assert [r.occurred_at for r in rows] == [clock(), clock() - timedelta(seconds=60), clock() - timedelta(seconds=120)]
    assert "秘密の本文" not in str([r.details for r in rows])  # never message contents
    assert len(await admin_log(db, limit=2)) == 2


# ---- drafts ------------------------------------------------------------------------------------------------------------

async def test_a_draft_and_its_compose_step_survive_a_restart(admin_settings, clock):
    from storage.migrate import upgrade

    upgrade(admin_settings.database_url)
    admin = Actor("line", ADMIN_LINE)
    first = Database(admin_settings.database_url)
    draft = await start_draft(first, admin, now=clock())
    await update_draft(first, admin_settings, draft.id, actor=admin, body_md="本文です。\n\n**太字**", now=clock())
    await set_compose_step(first, admin, ComposeStep.TITLE, now=clock())
    await first.dispose()

    second = Database(admin_settings.database_url)  # the process restarted
    try:
        step, issue = await compose_state(second, admin, now=clock() + timedelta(minutes=5))
        assert step is ComposeStep.TITLE and issue.id == draft.id and issue.body_md == "本文です。\n\n**太字**"
        assert issue.status == "draft" and issue.title == ""
        with pytest.raises(ReasonError) as unknown:
            await update_draft(second, admin_settings, draft.id, actor=admin, topic="sports")
        assert unknown.value.key == "unknown_topic"
        with pytest.raises(ReasonError):
            await update_draft(second, admin_settings, draft.id, actor=admin, channels=["fax"])
        updated = await update_draft(second, admin_settings, draft.id, actor=admin, channels=["line", "email", "line"])
        assert updated.channels == ["line", "email"]
        # The conversation times out; the draft itself stays.
        assert await compose_state(second, admin, now=clock() + COMPOSE_TIMEOUT + timedelta(seconds=1)) is None
        assert await compose_state(second, admin, now=clock()) is None  # the timed-out row was removed
        assert await issue_status(second, draft.id) == "draft"
        with pytest.raises(LookupError):
            await set_compose_step(second, admin, ComposeStep.OPTIONS)
    finally:
        await second.dispose()


# ---- the state machine -------------------------------------------------------------------------------------------------

def test_the_state_machine_is_explicit():
    assert TRANSITIONS["draft"] == {"scheduled", "sending", "cancelled"}
    assert TRANSITIONS["scheduled"] == {"scheduled", "draft", "sending", "cancelled"}
    assert TRANSITIONS["sending"] == {"sent", "cancelled"}
    assert TRANSITIONS["sent"] == {"sending"}  # deliveries resume / retry-uncertain
    assert TRANSITIONS["cancelled"] == frozenset()


async def test_send_twice_is_one_broadcast_and_wrong_states_are_refused(db, settings, clock):
    service = SubscriptionService(db, settings, clock)
    await subscribe(service, "telegram", "1001")
    issue = await create_issue(db, DRAFT)
    assert await send_now(db, issue.id, ["telegram"], actor=CLI, now=clock()) == {"telegram": 1}
    with pytest.raises(IssueStateError) as twice:
        await send_now(db, issue.id, ["telegram"], actor=CLI, now=clock())
    assert twice.value.key == "issue_wrong_state" and "配信中" in twice.value.message("ja")
    assert "sending" in str(twice.value)
    with pytest.raises(IssueStateError):
        await schedule_issue(db, issue.id, clock() + timedelta(hours=1), actor=CLI, now=clock())
    with pytest.raises(IssueNotFound) as missing:
        await send_now(db, 999, ["telegram"], actor=CLI)
    assert isinstance(missing.value, LookupError) and "999" in missing.value.message("ja")
    empty = await create_issue(db, IssueDraft("", ""))
    with pytest.raises(IssueStateError) as incomplete:
        await send_now(db, empty.id, ["telegram"], actor=CLI)
    assert incomplete.value.key == "issue_incomplete" and "タイトル" in incomplete.value.message("ja")
    async with db.read() as session:
        assert len((await session.exec(select(Delivery))).all()) == 1


# ---- scheduling ----------------------------------------------------------------------------------------------------------

async def test_a_scheduled_issue_fires_once_also_after_a_restart(any_db, settings, clock):
    db = any_db
    service = SubscriptionService(db, settings, clock)
    for address in ("2001", "2002"):
        await subscribe(service, "telegram", address)
    await subscribe(service, "line", ADMIN_LINE)
    issue = await create_issue(db, DRAFT, channels=["telegram"])
    due_at = clock() + timedelta(minutes=30)
    scheduled = await schedule_issue(db, issue.id, due_at, actor=CLI, now=clock())
    assert scheduled.status == "scheduled" and scheduled.scheduled_at == due_at
    assert await enqueue_due(db, ["telegram", "line"], now=due_at - timedelta(seconds=1)) == []
    assert await issue_status(db, issue.id) == "scheduled"

    # Two processes (or a process and its successor) look at the same time, right after it fell due.
    second = Database(db.url)
    try:
        first_run, second_run = await asyncio.gather(
            enqueue_due(db, ["telegram", "line"], now=due_at + timedelta(seconds=3)),
            enqueue_due(second, ["telegram", "line"], now=due_at + timedelta(seconds=3)),
        )
        fired = first_run + second_run
        assert [(d.issue_id, d.enqueued) for d in fired] == [(issue.id, {"telegram": 2})]  # the issue's own channels
        await db.dispose()  # "restart": a new Database on the same file finds nothing left to do
        assert await enqueue_due(second, ["telegram", "line"], now=due_at + timedelta(hours=1)) == []
        sender = RecordingSender("telegram")
        await Dispatcher(second, {"telegram": sender}, service, clock=clock).dispatch(issue.id)
        assert sorted(sender.recipients) == ["2001", "2002"]
        assert await issue_status(second, issue.id) == "sent"
        assert await enqueue_due(second, ["telegram"], now=due_at + timedelta(days=1)) == []
        async with second.read() as session:
            assert len((await session.exec(select(Delivery))).all()) == 2
            started = (await session.get(Issue, issue.id)).started_at
        assert started == due_at + timedelta(seconds=3)
    finally:
        await second.dispose()


async def test_cancelled_and_rescheduled_issues(db, settings, clock):
    service = SubscriptionService(db, settings, clock)
    await subscribe(service, "telegram", "3001")
    later = await create_issue(db, DRAFT)
    await schedule_issue(db, later.id, clock() + timedelta(hours=2), actor=CLI, now=clock())
    await schedule_issue(db, later.id, clock() + timedelta(hours=1), actor=CLI, now=clock())  # moved earlier
    dropped = await create_issue(db, IssueDraft("取りやめ", "本文"))
    await schedule_issue(db, dropped.id, clock() + timedelta(minutes=30), actor=CLI, now=clock())
    result = await cancel_issue(db, dropped.id, actor=CLI, now=clock())
    assert (result.previous_status, result.cancelled, result.sent) == ("scheduled", 0, 0)
    draft = await create_issue(db, IssueDraft("下書き", "本文"))
    assert (await cancel_issue(db, draft.id, actor=CLI, now=clock())).previous_status == "draft"
    fired = await enqueue_due(db, ["telegram"], now=clock() + timedelta(hours=3))
    assert [d.issue_id for d in fired] == [later.id]
    assert await issue_status(db, dropped.id) == "cancelled" and await statuses(db, dropped.id) == {}
    with pytest.raises(IssueStateError) as again:
        await cancel_issue(db, dropped.id, actor=CLI)
    assert again.value.key == "issue_already_cancelled"
    with pytest.raises(IssueStateError):
        await send_now(db, dropped.id, ["telegram"], actor=CLI)


# ---- cancel ------------------------------------------------------------------------------------------------------------------

async def test_cancel_mid_broadcast_keeps_sent_and_cancels_the_rest(any_db, settings, clock):
    db = any_db
    service = SubscriptionService(db, settings, clock)
    addresses = [str(4001 + i) for i in range(6)]
    for address in addresses:
        await subscribe(service, "telegram", address)
    early = await create_issue(db, IssueDraft("先行", "本文"))
    await send_now(db, early.id, ["telegram"], actor=CLI, now=clock())
    await Dispatcher(db, {"telegram": RecordingSender("telegram")}, service, clock=clock).dispatch(early.id)

    issue = await create_issue(db, DRAFT)
    await send_now(db, issue.id, ["telegram"], actor=CLI, now=clock())
    results = []

    async def cancel_after_the_second_request(message: OutboundMessage) -> None:
        if len(sender.recipients) == 1:  # the second request is in flight: its attempt mark is committed
            results.append(await cancel_issue(db, issue.id, actor=CLI, now=clock()))

    sender = RecordingSender("telegram", before_send=cancel_after_the_second_request)
    policy = DispatchPolicy(concurrency=1, claim_size=3)
    await Dispatcher(db, {"telegram": sender}, service, policy=policy, clock=clock).dispatch(issue.id)

    assert sender.recipients == addresses[:2]  # nothing started after the cancel
    [result] = results
    assert (result.previous_status, result.sent, result.in_flight, result.cancelled) == ("sending", 1, 1, 4)
    final = await statuses(db, issue.id)
    assert [final[a] for a in addresses] == ["sent", "sent"] + ["cancelled"] * 4
    assert await issue_status(db, issue.id) == "cancelled"
    async with db.read() as session:
        reasons = {d.reason for d in (await session.exec(select(Delivery).where(Delivery.status == "cancelled"))).all()}
    assert reasons == {"cancelled by the author"}
    assert (await audit(db)).ok

    # After completion there is nothing to cancel: a clear answer, and nothing changes.
    with pytest.raises(IssueStateError) as done:
        await cancel_issue(db, early.id, actor=CLI)
    assert done.value.key == "issue_already_sent" and "完了" in done.value.message("ja")
    assert "sent completely" in str(done.value)
    assert set((await statuses(db, early.id)).values()) == {"sent"}


async def test_cancel_when_every_delivery_is_done_but_not_yet_marked(db, settings, clock):
    service = SubscriptionService(db, settings, clock)
    await subscribe(service, "telegram", "4901")
    issue = await create_issue(db, DRAFT)
    await enqueue(db, issue.id, ["telegram"])
    async with db.write() as session:
        for delivery in (await session.exec(select(Delivery))).all():
            delivery.status = "sent"
            session.add(delivery)
    assert await issue_status(db, issue.id) == "sending"
    with pytest.raises(IssueStateError) as done:
        await cancel_issue(db, issue.id, actor=CLI)
    assert done.value.key == "issue_already_sent"
    assert await issue_status(db, issue.id) == "sending"


# ---- test sends --------------------------------------------------------------------------------------------------------------

async def test_a_test_send_reaches_only_the_admins_own_endpoints(db, admin_settings, clock):
    service = SubscriptionService(db, admin_settings, clock)
    await subscribe(service, "telegram", str(ADMIN_TG))
    await subscribe(service, "telegram", "5550002")  # a reader
    await subscribe(service, "line", ADMIN_LINE)
    await subscribe(service, "line", "U" + "b" * 32)  # a reader
    await add_confirmed_email(db, str(ADMIN_TG), "author@example.jp")
    await add_confirmed_email(db, "5550002", "reader@example.jp")
    # The admin chose only "it"; a test of an "events" issue still reaches them (the copy targets every topic).
    await service.handle_button(ChatContext(channel="telegram", address=str(ADMIN_TG)), "topic:it")
    # Admin 5550009 never subscribed: nothing can be sent to them.
    issue = await create_issue(db, IssueDraft("イベントのお知らせ", "12月5日 19時〜"), topic="events")

    copy = await create_test_send(db, admin_settings, issue.id, ["telegram", "line", "email"],
                                  actor=Actor("telegram", str(ADMIN_TG)), now=clock())
    assert copy.enqueued == {"telegram": 1, "line": 1, "email": 1}
    senders = {channel: RecordingSender(channel) for channel in ("telegram", "line", "email")}
    await Dispatcher(db, senders, service, clock=clock).dispatch(copy.issue_id)
    assert {c: s.recipients for c, s in senders.items()} == {
        "telegram": [str(ADMIN_TG)], "line": [ADMIN_LINE], "email": ["author@example.jp"]}
    async with db.read() as session:
        original = await session.get(Issue, issue.id)
        test_issue = await session.get(Issue, copy.issue_id)
        logged = (await session.exec(select(AdminAction).where(AdminAction.action == "issue.test_send"))).one()
    assert original.status == "draft" and await statuses(db, issue.id) == {}
    assert test_issue.test_of == issue.id and test_issue.topic is None and test_issue.title == "イベントのお知らせ"
    assert logged.details["test_issue_id"] == copy.issue_id and logged.actor == str(ADMIN_TG)

    # From a chat: only the asking admin's own endpoints (their Telegram chat and their email).
    mine = await create_test_send(db, admin_settings, issue.id, ["telegram", "line", "email"],
                                  actor=Actor("telegram", str(ADMIN_TG)), admins_only=[Actor("telegram", str(ADMIN_TG))])
    assert mine.enqueued == {"telegram": 1, "line": 0, "email": 1}
    # Someone who is not an admin selects nothing, and an unsubscribed admin has nothing: refused, nothing stored.
    async with db.read() as session:
        issues_before = len((await session.exec(select(Issue))).all())
    for who in (Actor("telegram", "5550002"), Actor("telegram", "5550009")):
        with pytest.raises(IssueStateError) as refused:
            await create_test_send(db, admin_settings, issue.id, ["telegram", "line", "email"], actor=who,
                                   admins_only=[who])
        assert refused.value.key == "test_no_recipients"
    async with db.read() as session:
        assert len((await session.exec(select(Issue))).all()) == issues_before
    assert (await audit(db)).ok
