"""Broadcast + dispatcher over a real SQLite file with fake senders (the outermost edge): outcomes and consent."""

from __future__ import annotations

from sqlmodel import select

from core.broadcast import IssueDraft, create_issue, enqueue, recipient_counts
from core.channels import OutboundMessage, Outcome, OutcomeKind, SendResult
from core.dispatcher import Dispatcher, DispatchPolicy
from core.subscriptions import ChatContext, SubscriptionService
from storage.models import ConsentEvent, Delivery, Endpoint, Issue


class FakeSender:
    """Records requests; answers from a script keyed by recipient (default: sent)."""

    def __init__(self, channel: str, max_recipients: int, script=None, before_send=None) -> None:
        self.channel = channel
        self.max_recipients = max_recipients
        self.script = script or {}
        self.requests: list[OutboundMessage] = []
        self.before_send = before_send

    async def send(self, message: OutboundMessage) -> SendResult:
        if self.before_send is not None:
            await self.before_send(message)
        self.requests.append(message)
        per = {r: self.script[r] for r in message.recipients if r in self.script}
        return SendResult(Outcome.sent(), per)


async def subscribe(service: SubscriptionService, channel: str, address: str) -> None:
    ctx = ChatContext(channel=channel, address=address)
    await service.handle_text(ctx, "登録")
    replies = await service.handle_text(ctx, "同意")
    assert replies[0].kind == "subscribed"


async def statuses(db, issue_id: int) -> dict[str, str]:
    async with db.read() as s:
        rows = (await s.exec(select(Delivery, Endpoint).join(Endpoint, Endpoint.id == Delivery.endpoint_id)
                             .where(Delivery.issue_id == issue_id))).all()
        return {e.address: d.status for d, e in rows}


DRAFT = IssueDraft("12月のIT通信", "**パスワード管理**のコツ。\n\n勉強会のお知らせ。")


async def test_broadcast_reaches_consented_only_and_marks_outcomes(db, settings, clock):
    service = SubscriptionService(db, settings, clock)
    for address in ("1", "2", "3", "4"):
        await subscribe(service, "telegram", address)
    for index in range(3):
        await subscribe(service, "line", f"U{index:032x}")
    await service.handle_text(ChatContext(channel="telegram", address="4"), "解除")
    await service.handle_text(ChatContext(channel="telegram", address="5"), "登録")  # never consented
    assert await recipient_counts(db, ["telegram", "line"]) == {"telegram": 3, "line": 3}

    telegram = FakeSender("telegram", 1, {"2": Outcome(OutcomeKind.PERMANENT, "Forbidden: bot was blocked by the user", blocked=True)})
    line = FakeSender("line", 500)
    issue = await create_issue(db, DRAFT)
    counts = await enqueue(db, issue.id, ["telegram", "line"])
    assert counts == {"telegram": 3, "line": 3}
    assert await enqueue(db, issue.id, ["telegram", "line"]) == counts  # idempotent
    summary = await Dispatcher(db, {"telegram": telegram, "line": line}, service, clock=clock).dispatch(issue.id)
    assert sorted(m.recipients[0] for m in telegram.requests) == ["1", "2", "3"]
    assert len(line.requests) == 1 and len(line.requests[0].recipients) == 3 and line.requests[0].retry_key
    assert "パスワード管理" in telegram.requests[0].parts[0] and "<b>" in telegram.requests[0].parts[0]
    assert "解除" in line.requests[0].parts[-1]  # every chat issue ends saying how to stop
    got = await statuses(db, issue.id)
    assert got["1"] == "sent" and got["2"] == "failed" and got["3"] == "sent"
    assert summary.finished["telegram"]["failed"] == 1
    async with db.read() as s:
        blocked = (await s.exec(select(Endpoint).where(Endpoint.address == "2"))).one()
        assert blocked.state == "unreachable"
        last = (await s.exec(select(ConsentEvent).order_by(ConsentEvent.id.desc()))).first()
        assert (last.action, last.source) == ("withdraw", "blocked")
        assert (await s.get(Issue, issue.id)).status == "sent"


async def test_withdrawal_after_enqueue_means_skipped(db, settings, clock):
    service = SubscriptionService(db, settings, clock)
    for address in ("1", "2", "3"):
        await subscribe(service, "telegram", address)
    issue = await create_issue(db, DRAFT)
    await enqueue(db, issue.id, ["telegram"])

    async def withdraw_3_before_first_send(message: OutboundMessage) -> None:
        if message.recipients == ("1",):
            await service.handle_text(ChatContext(channel="telegram", address="3"), "解除")

    sender = FakeSender("telegram", 1, before_send=withdraw_3_before_first_send)
    await Dispatcher(db, {"telegram": sender}, service, clock=clock,
                     policy=DispatchPolicy(concurrency=1)).dispatch(issue.id)
    assert [m.recipients[0] for m in sender.requests] == ["1", "2"]
    assert (await statuses(db, issue.id))["3"] == "skipped"


async def test_temporary_failure_retries_then_sends(db, settings, clock):
    service = SubscriptionService(db, settings, clock)
    await subscribe(service, "telegram", "1")
    issue = await create_issue(db, DRAFT)
    await enqueue(db, issue.id, ["telegram"])
    answers = [Outcome(OutcomeKind.TEMPORARY, "Too Many Requests: retry after 0", retry_after=0.0)]

    class Flaky(FakeSender):
        async def send(self, message):
            self.requests.append(message)
            return SendResult(answers.pop(0) if answers else Outcome.sent())

    sender = Flaky("telegram", 1)
    await Dispatcher(db, {"telegram": sender}, service).dispatch(issue.id)
    assert len(sender.requests) == 2
    assert (await statuses(db, issue.id))["1"] == "sent"


async def test_channel_wide_stop_defers_the_rest(db, settings, clock):
    service = SubscriptionService(db, settings, clock)
    for index in range(3):
        await subscribe(service, "line", f"U{index:032x}")
    issue = await create_issue(db, DRAFT)
    await enqueue(db, issue.id, ["line"])

    class Quota(FakeSender):
        async def send(self, message):
            self.requests.append(message)
            return SendResult(Outcome(OutcomeKind.CHANNEL_WIDE, "LINE monthly message limit reached"))

    sender = Quota("line", 2)
    summary = await Dispatcher(db, {"line": sender}, service, clock=clock,
                               policy=DispatchPolicy(concurrency=1)).dispatch(issue.id)
    assert set((await statuses(db, issue.id)).values()) == {"deferred"}
    assert summary.notices and summary.notices[0].deferred == 3
    assert len(sender.requests) == 1


async def test_only_one_dispatcher_holds_a_channel(db, settings, clock):
    service = SubscriptionService(db, settings, clock)
    first = Dispatcher(db, {}, service, clock=clock, owner="a")
    second = Dispatcher(db, {}, service, clock=clock, owner="b")
    assert await first.acquire_channel("telegram")
    assert not await second.acquire_channel("telegram")
    assert await first.acquire_channel("telegram")  # renewing is fine
    clock.advance(first.policy.channel_lease + 1)  # the holder crashed: its lease runs out
    assert await second.acquire_channel("telegram")
    await second.release_channel("telegram")
    assert await first.acquire_channel("telegram")


async def test_resume_and_retry_uncertain_requeue(db, settings, clock):
    from core.broadcast import requeue
    from storage.models import DeliveryStatus

    service = SubscriptionService(db, settings, clock)
    for index in range(3):
        await subscribe(service, "line", f"U{index:032x}")
    issue = await create_issue(db, DRAFT)
    await enqueue(db, issue.id, ["line"])

    class Quota(FakeSender):
        async def send(self, message):
            self.requests.append(message)
            return SendResult(Outcome(OutcomeKind.CHANNEL_WIDE, "LINE monthly message limit reached"))

    await Dispatcher(db, {"line": Quota("line", 500)}, service, clock=clock).dispatch(issue.id)
    assert set((await statuses(db, issue.id)).values()) == {"deferred"}
    await service.handle_text(ChatContext(channel="line", address=f"U{0:032x}"), "解除")
    assert await requeue(db, issue.id, DeliveryStatus.DEFERRED) == 3
    ok = FakeSender("line", 500)
    await Dispatcher(db, {"line": ok}, service, clock=clock).dispatch(issue.id)
    got = await statuses(db, issue.id)
    assert got[f"U{0:032x}"] == "skipped"  # withdrew while deferred: never sent
    assert sorted(got.values()) == ["sent", "sent", "skipped"]
    assert len(ok.requests) == 1 and len(ok.requests[0].recipients) == 2


async def test_a_retry_key_group_is_claimed_whole(db, settings, clock):
    """Rows sharing a LINE retry key are one request: a claim that takes one of them takes them all."""
    from sqlalchemy import update as sa_update

    service = SubscriptionService(db, settings, clock)
    for index in range(4):
        await subscribe(service, "line", f"U{index:032x}")
    issue = await create_issue(db, DRAFT)
    await enqueue(db, issue.id, ["line"])
    async with db.write() as s:
        rows = (await s.exec(select(Delivery).order_by(Delivery.id))).all()
        # rows 2-4 were one multicast that failed temporarily; row 1 is fresh
        await s.exec(sa_update(Delivery).where(Delivery.id.in_([r.id for r in rows[1:]]))
                     .values(retry_key="11111111-1111-4111-8111-111111111111", attempted_at=clock(),
                             first_attempted_at=clock()))
    dispatcher = Dispatcher(db, {}, service, clock=clock)
    claimed = await dispatcher._claim("line", issue.id, 2)  # the limit would cut the group in two
    assert sorted(r.id for r in claimed) == sorted(r.id for r in rows)
    groups = dispatcher._group(FakeSender("line", 500), claimed)
    assert sorted(len(g) for g in groups) == [1, 3]
