"""The outbox on SQLite and on PostgreSQL: atomic claims, the per-channel lease, crash recovery, consent at attempt
time, the ledger lock, retries and UTC timestamps (DESIGN.md "Delivery: an outbox"; issue 4 item 1).

Every test runs twice through ``any_db``: on a SQLite file and on a fresh PostgreSQL database (``pg_db``; skipped with
a printed reason only when ``OTAYORI_TEST_POSTGRES_URL`` is unset). The senders are fakes at the outermost edge that
record what they were asked to send; everything else is our own code on a real database.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, text, update
from sqlalchemy.exc import StatementError
from sqlmodel import select

from core.broadcast import IssueDraft, create_issue, enqueue
from core.channels import OutboundMessage, Outcome, OutcomeKind, SendResult
from core.consent import ConsentFacts, append, verify_chain
from core.dispatcher import Dispatcher, DispatchPolicy, DispatchSummary
from core.double_opt_in import EmailSubscriptions
from core.optout import OptOuts
from core.subscriptions import ChatContext, SubscriptionService
from storage.models import ChannelLease, ConsentEvent, Delivery, Endpoint, Issue, Subscriber

DRAFT = IssueDraft("12月のお便り", "**年末の勉強会**のお知らせです。\n\n全角　スペースも、絵文字🎍も。")
MAX_RECIPIENTS = {"line": 500, "telegram": 1, "email": 1}


def address_for(channel: str, index: int) -> str:
    """A realistic address: a LINE userId, a Telegram chat id, an email address."""
    if channel == "line":
        return f"U{index:032x}"
    if channel == "telegram":
        return str(700_000_000 + index)
    return f"reader{index}@example.jp"


class RecordingSender:
    """A channel sender at the edge: records every request (and when it ran) and answers ``answer`` (default: sent).

    ``before_send`` runs first (a hook to withdraw someone mid-broadcast); ``delay`` seconds make requests overlap.
    """

    def __init__(self, channel: str, max_recipients: int | None = None, *, delay: float = 0.0, answer=None,
                 before_send=None) -> None:
        self.channel = channel
        self.max_recipients = max_recipients or MAX_RECIPIENTS[channel]
        self.delay = delay
        self.answer = answer
        self.before_send = before_send
        self.requests: list[OutboundMessage] = []
        self.spans: list[tuple[float, float]] = []

    async def send(self, message: OutboundMessage) -> SendResult:
        loop = asyncio.get_running_loop()
        start = loop.time()
        if self.before_send is not None:
            await self.before_send(message)
        if self.delay:
            await asyncio.sleep(self.delay)
        self.requests.append(message)
        self.spans.append((start, loop.time()))
        answer = self.answer(message) if callable(self.answer) else self.answer
        return answer if isinstance(answer, SendResult) else SendResult(answer or Outcome.sent())

    @property
    def recipients(self) -> list[str]:
        return [address for message in self.requests for address in message.recipients]


class HangingSender(RecordingSender):
    """Records the request, then never answers: the process "dies" while the request is in flight."""

    def __init__(self, channel: str, max_recipients: int | None = None) -> None:
        super().__init__(channel, max_recipients)
        self.in_flight = asyncio.Event()

    async def send(self, message: OutboundMessage) -> SendResult:
        self.requests.append(message)
        self.in_flight.set()
        await asyncio.Event().wait()  # cancelled by the test
        raise AssertionError("unreachable")


async def seed(db, channel: str, count: int, start: int = 0) -> list[str]:
    """``count`` consented, active endpoints on ``channel`` (one subscriber each; a ``grant``, or ``confirm`` for
    email, appended to the real ledger). Returns their addresses."""
    addresses = [address_for(channel, start + index) for index in range(count)]
    async with db.write() as session:
        for address in addresses:
            subscriber = Subscriber()
            session.add(subscriber)
            await session.flush()
            endpoint = Endpoint(subscriber_id=subscriber.id, channel=channel, address=address, state="active")
            session.add(endpoint)
            await session.flush()
            await append(db, session, ConsentFacts(
                subscriber_id=subscriber.id, endpoint_id=endpoint.id, channel=channel, address=address,
                action="confirm" if channel == "email" else "grant", basis="opt_in", source="import",
            ))
    return addresses


async def statuses(db, issue_id: int) -> dict[str, str]:
    async with db.read() as session:
        rows = (await session.exec(select(Delivery, Endpoint).join(Endpoint, Endpoint.id == Delivery.endpoint_id)
                                   .where(Delivery.issue_id == issue_id))).all()
    return {endpoint.address: delivery.status for delivery, endpoint in rows}


async def deliveries(db, issue_id: int) -> dict[str, Delivery]:
    async with db.read() as session:
        rows = (await session.exec(select(Delivery, Endpoint).join(Endpoint, Endpoint.id == Delivery.endpoint_id)
                                   .where(Delivery.issue_id == issue_id))).all()
    return {endpoint.address: delivery for delivery, endpoint in rows}


async def broadcast(db, channels: list[str]) -> int:
    issue = await create_issue(db, DRAFT)
    await enqueue(db, issue.id, channels)
    return issue.id


# ---- (a) concurrent claims and the per-channel lease ---------------------------------------------------------------


async def test_concurrent_claims_never_share_a_row(any_db, settings, clock):
    """Two dispatchers (two claim loops each) empty one outbox: every row is claimed exactly once."""
    await seed(any_db, "telegram", 60)
    await seed(any_db, "line", 40)
    issue_id = await broadcast(any_db, ["telegram", "line"])
    service = SubscriptionService(any_db, settings, clock)
    dispatchers = [Dispatcher(any_db, {}, service, owner=owner, clock=clock) for owner in ("a", "b")]
    claimed: dict[str, list[int]] = {"a": [], "b": []}

    async def claim_all(dispatcher: Dispatcher, channel: str) -> None:
        for _ in range(200):  # bounded: 100 rows, at least one per productive round
            rows = await dispatcher._claim(channel, issue_id, 3)
            if not rows:
                return
            assert all(row.status == "sending" for row in rows)  # the owner: checked in the database below
            claimed[dispatcher.owner].extend(row.id for row in rows)
            await asyncio.sleep(0.002)  # let the other loops in: a claim is fast enough to take every row alone

    await asyncio.gather(*(claim_all(d, channel) for channel in ("telegram", "line") for d in dispatchers
                           for _ in range(2)))
    every = claimed["a"] + claimed["b"]
    assert len(every) == len(set(every)) == 100, Counter(every).most_common(3)
    assert claimed["a"] and claimed["b"]  # both took part: the claims really were concurrent
    async with any_db.read() as session:
        owners = dict((await session.exec(select(Delivery.id, Delivery.claimed_by))).all())
        pending = (await session.exec(select(func.count()).select_from(Delivery)  # type: ignore[call-overload]
                                      .where(Delivery.status != "sending"))).one()
    assert pending == 0
    assert {row_id for row_id, owner in owners.items() if owner == "a"} == set(claimed["a"])
    assert {row_id for row_id, owner in owners.items() if owner == "b"} == set(claimed["b"])


async def test_claim_skips_rows_another_transaction_holds(pg_db, settings, clock):
    """PostgreSQL: rows locked by another transaction are skipped (SKIP LOCKED), not waited for."""
    await seed(pg_db, "telegram", 6)
    issue_id = await broadcast(pg_db, ["telegram"])
    dispatcher = Dispatcher(pg_db, {}, SubscriptionService(pg_db, settings, clock), owner="a", clock=clock)
    async with pg_db.write() as holder:
        locked = (await holder.exec(select(Delivery.id).order_by(Delivery.id).limit(2)  # type: ignore[call-overload]
                                    .with_for_update())).all()
        rows = await asyncio.wait_for(dispatcher._claim("telegram", issue_id, 10), timeout=10)
        assert sorted(row.id for row in rows) == sorted(set(range(1, 7)) - set(locked))
    again = await dispatcher._claim("telegram", issue_id, 10)
    assert sorted(row.id for row in again) == sorted(locked)


async def test_only_one_of_many_dispatchers_gets_a_channel(any_db, settings, clock):
    """Concurrent acquisitions of a free channel, then of an expired one: exactly one dispatcher wins each time."""
    service = SubscriptionService(any_db, settings, clock)
    dispatchers = [Dispatcher(any_db, {}, service, owner=f"d{index}", clock=clock) for index in range(8)]
    for _ in range(2):
        won = await asyncio.gather(*(d.acquire_channel("line") for d in dispatchers))
        assert sum(won) == 1, won
        async with any_db.read() as session:
            lease = await session.get(ChannelLease, "line")
        assert lease is not None and lease.owner == dispatchers[won.index(True)].owner
        clock.advance(dispatchers[0].policy.channel_lease + 1)  # the holder "crashed": its lease runs out


async def test_two_dispatchers_send_each_delivery_once(any_db, settings):
    """Two full ``dispatch()`` runs at once on three channels: every delivery sent exactly once, and on each channel
    only one dispatcher sends at a time (the per-channel lease)."""
    expected = {channel: await seed(any_db, channel, count)
                for channel, count in (("telegram", 12), ("line", 30), ("email", 8))}
    issue_id = await broadcast(any_db, list(expected))
    service = SubscriptionService(any_db, settings)
    policy = DispatchPolicy(claim_size=4, concurrency=2)
    senders = {owner: {channel: RecordingSender(channel, 7 if channel == "line" else None, delay=0.003)
                       for channel in expected} for owner in ("a", "b")}
    dispatchers = [Dispatcher(any_db, senders[owner], service, policy=policy, owner=owner) for owner in ("a", "b")]
    await asyncio.wait_for(asyncio.gather(*(d.dispatch(issue_id) for d in dispatchers)), timeout=60)

    for channel, addresses in expected.items():
        sent = senders["a"][channel].recipients + senders["b"][channel].recipients
        assert Counter(sent) == Counter(addresses), channel
        spans_a, spans_b = senders["a"][channel].spans, senders["b"][channel].spans
        if spans_a and spans_b:  # both sent on this channel: one after the other, never interleaved
            assert max(end for _, end in spans_a) <= min(start for start, _ in spans_b) or \
                max(end for _, end in spans_b) <= min(start for start, _ in spans_a), channel
    assert set((await statuses(any_db, issue_id)).values()) == {"sent"}
    async with any_db.read() as session:
        assert (await session.get(Issue, issue_id)).status == "sent"
        assert (await session.exec(select(ChannelLease))).all() == []  # every lease given back


# ---- (b) recovery after a crash ---------------------------------------------------------------------------------


async def crash_mid_send(db, service, clock, channel: str, max_recipients: int) -> HangingSender:
    """Start dispatching one channel, wait until a request is in flight, then kill the dispatcher (cancel it)."""
    sender = HangingSender(channel, max_recipients)
    dispatcher = Dispatcher(db, {channel: sender}, service, owner="crashed", clock=clock,
                            policy=DispatchPolicy(concurrency=1))
    task = asyncio.create_task(dispatcher.dispatch())
    await asyncio.wait_for(sender.in_flight.wait(), timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return sender


@pytest.mark.parametrize("channel", ["telegram", "email"])
async def test_expired_lease_unattempted_pending_attempted_uncertain(any_db, settings, clock, channel):
    """Telegram and email cannot deduplicate: the row in flight at the crash becomes ``uncertain`` (never silently
    re-sent); rows claimed but never attempted return to ``pending`` and are sent by the next run."""
    addresses = await seed(any_db, channel, 4)
    issue_id = await broadcast(any_db, [channel])
    service = SubscriptionService(any_db, settings, clock)
    crashed = await crash_mid_send(any_db, service, clock, channel, 1)
    in_flight = crashed.requests[0].recipients[0]
    assert set((await statuses(any_db, issue_id)).values()) == {"sending"}

    successor = Dispatcher(any_db, {channel: RecordingSender(channel)}, service, owner="next", clock=clock)
    assert await successor.recover_expired() == {}  # the lease has not run out yet: nothing is touched
    clock.advance(successor.policy.lease + 1)
    assert await successor.recover_expired() == {"uncertain": 1, "pending": 3}
    got = await deliveries(any_db, issue_id)
    assert got[in_flight].status == "uncertain" and got[in_flight].reason
    assert all(got[a].status == "pending" and got[a].claimed_by is None for a in addresses if a != in_flight)

    sender = RecordingSender(channel)
    await Dispatcher(any_db, {channel: sender}, service, owner="next", clock=clock).dispatch(issue_id)
    assert sorted(sender.recipients) == sorted(a for a in addresses if a != in_flight)
    assert (await statuses(any_db, issue_id))[in_flight] == "uncertain"


async def test_expired_line_lease_resends_same_request_with_same_key(any_db, settings, clock):
    """LINE: the attempted multicast is repeated identically (same recipients, same X-Line-Retry-Key); the batch that
    was only claimed goes out as a fresh request."""
    addresses = await seed(any_db, "line", 5)
    issue_id = await broadcast(any_db, ["line"])
    service = SubscriptionService(any_db, settings, clock)
    crashed = await crash_mid_send(any_db, service, clock, "line", 3)
    first = crashed.requests[0]
    assert first.retry_key and len(first.recipients) == 3
    stored = await deliveries(any_db, issue_id)
    assert {stored[a].retry_key for a in first.recipients} == {first.retry_key}  # stored before the request

    clock.advance(3600)  # an hour later: LINE still remembers the key (24 h)
    sender = RecordingSender("line", 3)
    successor = Dispatcher(any_db, {"line": sender}, service, owner="next", clock=clock)
    assert await successor.recover_expired() == {"pending": 5}
    assert all(stored.retry_key == first.retry_key
               for address, stored in (await deliveries(any_db, issue_id)).items() if address in first.recipients)
    await successor.dispatch(issue_id)
    repeated = [m for m in sender.requests if m.retry_key == first.retry_key]
    assert len(repeated) == 1 and repeated[0].recipients == first.recipients
    assert Counter(sender.recipients) == Counter(addresses)
    assert set((await statuses(any_db, issue_id)).values()) == {"sent"}


async def test_expired_line_lease_older_than_a_day_is_uncertain(any_db, settings, clock):
    """A LINE retry key older than 24 h is not trusted (LINE forgets it): attempted rows become ``uncertain``."""
    addresses = await seed(any_db, "line", 5)
    issue_id = await broadcast(any_db, ["line"])
    service = SubscriptionService(any_db, settings, clock)
    first = (await crash_mid_send(any_db, service, clock, "line", 3)).requests[0]
    clock.advance(25 * 3600)
    sender = RecordingSender("line", 3)
    successor = Dispatcher(any_db, {"line": sender}, service, owner="next", clock=clock)
    assert await successor.recover_expired() == {"uncertain": 3, "pending": 2}
    await successor.dispatch(issue_id)
    assert sorted(sender.recipients) == sorted(set(addresses) - set(first.recipients))
    assert all(m.retry_key != first.retry_key for m in sender.requests)
    got = await statuses(any_db, issue_id)
    assert [got[a] for a in first.recipients] == ["uncertain"] * 3


async def test_recovery_never_overwrites_a_row_taken_meanwhile(any_db, settings, clock):
    """Two dispatchers recover the same crash at once. The first returned a never-attempted row to pending and
    dispatcher ``c`` claimed and attempted it, all in a transaction still open; the second, which read the row before,
    must not put it back to ``pending`` (on PostgreSQL that lost update would let a third dispatcher send it again)."""
    addresses = await seed(any_db, "telegram", 2)
    issue_id = await broadcast(any_db, ["telegram"])
    service = SubscriptionService(any_db, settings, clock)
    in_flight = (await crash_mid_send(any_db, service, clock, "telegram", 1)).requests[0].recipients[0]
    [unattempted] = [address for address in addresses if address != in_flight]
    clock.advance(DispatchPolicy().lease + 1)
    row_id = (await deliveries(any_db, issue_id))[unattempted].id
    late = Dispatcher(any_db, {}, service, owner="late", clock=clock)
    async with any_db.write() as first:
        await first.exec(update(Delivery).where(Delivery.id == row_id)  # type: ignore[call-overload]
                         .values(status="sending", claimed_by="c", attempted_at=clock(), attempts=1,
                                 lease_expires_at=clock() + timedelta(seconds=300)))
        second = asyncio.create_task(late.recover_expired())
        await asyncio.sleep(0.3)  # the second recoverer reads the old version, then waits for the row
    await asyncio.wait_for(second, timeout=10)
    got = await deliveries(any_db, issue_id)
    assert (got[unattempted].status, got[unattempted].claimed_by) == ("sending", "c")
    assert got[in_flight].status == "uncertain"


async def test_attempt_never_marks_a_row_recovered_meanwhile(any_db, settings, clock):
    """A dispatcher about to attempt a row whose lease another dispatcher is recovering (transaction still open) must
    see the outcome, not what it read before: it must not send a row that is ``pending`` again."""
    [address] = await seed(any_db, "telegram", 1)
    issue_id = await broadcast(any_db, ["telegram"])
    service = SubscriptionService(any_db, settings, clock)
    sender = RecordingSender("telegram")
    slow = Dispatcher(any_db, {"telegram": sender}, service, owner="slow", clock=clock)
    claimed = await slow._claim("telegram", issue_id, 10)
    async with any_db.write() as recoverer:  # the lease ran out: another dispatcher returns the row to pending
        await recoverer.exec(update(Delivery).where(Delivery.id == claimed[0].id)  # type: ignore[call-overload]
                             .values(status="pending", claimed_by=None, lease_expires_at=None))
        attempt = asyncio.create_task(slow._attempt(sender, claimed, DispatchSummary()))
        await asyncio.sleep(0.3)
    await asyncio.wait_for(attempt, timeout=10)
    assert sender.requests == []
    row = (await deliveries(any_db, issue_id))[address]
    assert (row.status, row.attempted_at, row.attempts) == ("pending", None, 0)


# ---- (c) consent at attempt time, on every channel ---------------------------------------------------------------


class FakeMailer:
    """Captures confirmation mails (the edge) so the test can confirm like a reader would."""

    def __init__(self) -> None:
        self.sent: list[dict] = []

    async def send_confirmation(self, *, to, confirm_url, code, expires_hours):
        self.sent.append({"to": to, "url": confirm_url, "code": code})
        return True


async def chat_subscribe(service: SubscriptionService, channel: str, address: str) -> ChatContext:
    ctx = ChatContext(channel=channel, address=address)
    await service.handle_text(ctx, "登録")
    assert (await service.handle_text(ctx, "同意"))[0].kind == "subscribed"
    return ctx


@pytest.mark.parametrize("channel", ["line", "telegram", "email"])
async def test_withdrawal_after_enqueue_is_skipped(any_db, settings, clock, channel):
    """After the broadcast was created: B withdraws on the channel itself, C becomes unreachable, and D says 全解除 in
    chat while the first request is being sent (its row already claimed). Only A and E are sent; B, C, D ``skipped``."""
    service = SubscriptionService(any_db, settings, clock)
    mailer = FakeMailer()
    service.email = EmailSubscriptions(any_db, settings, mailer, clock)
    people: dict[str, tuple[ChatContext, str]] = {}  # name -> (their chat, their address on `channel`)
    for index, name in enumerate("ABCDE"):
        chat = await chat_subscribe(service, "telegram", address_for("telegram", index))
        if channel == "telegram":
            people[name] = (chat, chat.address)
        elif channel == "line":
            line_chat = await chat_subscribe(service, "line", address_for("line", index))
            people[name] = (line_chat, line_chat.address)
        else:  # email: double opt-in from the chat (メール <address>, then the 6-digit code typed back)
            address = address_for("email", index)
            await service.handle_text(chat, f"メール　{address}")  # a full-width space, as phones type it
            assert (await service.handle_text(chat, mailer.sent[-1]["code"]))[0].kind == "email_confirm_confirmed"
            people[name] = (chat, address)
    issue_id = await broadcast(any_db, [channel])
    assert len(await statuses(any_db, issue_id)) == 5

    b_chat, b_address = people["B"]
    if channel == "email":
        async with any_db.read() as session:
            b_endpoint = (await session.exec(select(Endpoint).where(Endpoint.address == b_address))).one()
        optouts = OptOuts(any_db, settings, clock)
        result = await optouts.unsubscribe(optouts.tokens.unsubscribe_token(b_endpoint.id), source="one_click",
                                           scope_all=False, evidence={})
        assert result.withdrawn == 1
    else:
        assert (await service.handle_text(b_chat, "解除"))[0].kind == "withdrawn"
    async with any_db.write() as session:
        c_endpoint = (await session.exec(select(Endpoint).where(Endpoint.address == people["C"][1]))).one()
        await service.mark_blocked(session, c_endpoint, evidence={"test": "bounced or blocked"})

    async def withdraw_d_during_the_broadcast(message: OutboundMessage) -> None:
        if message.recipients == (people["A"][1],):
            assert (await service.handle_text(people["D"][0], "全解除"))[0].kind == "withdrawn_all"

    sender = RecordingSender(channel, 1, before_send=withdraw_d_during_the_broadcast)
    dispatcher = Dispatcher(any_db, {channel: sender}, service, clock=clock, policy=DispatchPolicy(concurrency=1))
    summary = await dispatcher.dispatch(issue_id)
    assert sender.recipients == [people["A"][1], people["E"][1]]
    got = await statuses(any_db, issue_id)
    assert {name: got[address] for name, (_, address) in people.items()} == {
        "A": "sent", "B": "skipped", "C": "skipped", "D": "skipped", "E": "sent"}
    assert summary.finished[channel]["skipped"] == 3
    from core.audit import audit

    report = await audit(any_db)
    assert report.ok and report.deliveries == 2


# ---- (d) the ledger under concurrent appends ---------------------------------------------------------------------


async def test_ledger_chain_never_forks_under_concurrent_appends(any_db, settings, clock):
    """30 appends at once (15 direct, 15 chat withdrawals): 30 more events, one unbroken chain (advisory lock on
    PostgreSQL, the one writer on SQLite)."""
    service = SubscriptionService(any_db, settings, clock)
    addresses = await seed(any_db, "line", 15)
    async with any_db.read() as session:
        before = (await session.exec(select(func.count()).select_from(ConsentEvent))).one()

    async def direct(index: int) -> None:
        async with any_db.write() as session:
            await append(any_db, session, ConsentFacts(
                subscriber_id=1000 + index, endpoint_id=None, channel="email", address=f"済{index}@example.jp",
                action="withdraw", basis="opt_in", source="admin", evidence={"note": "電話で解除の依頼"},
            ))

    async def withdraw(address: str) -> None:
        assert (await service.handle_text(ChatContext(channel="line", address=address), "解除"))[0].kind == "withdrawn"

    await asyncio.wait_for(asyncio.gather(*(direct(i) for i in range(15)), *(withdraw(a) for a in addresses)),
                           timeout=60)
    async with any_db.read() as session:
        events = list((await session.exec(select(ConsentEvent).order_by(ConsentEvent.id))).all())
    assert len(events) == before + 30
    assert [event.id for event in events] == list(range(1, len(events) + 1))
    assert len({event.prev_hash for event in events}) == len(events)
    assert verify_chain(events) == []


# ---- (e) temporary failures: backoff, then failed --------------------------------------------------------------


@pytest.mark.parametrize("channel", ["telegram", "line"])
async def test_temporary_failures_back_off_then_fail(any_db, settings, clock, channel):
    """Each temporary failure waits ``backoff_base * 2**(attempts-1)`` seconds; after ``max_attempts`` -> ``failed``.
    A LINE retry repeats the request with the same retry key."""
    [address] = await seed(any_db, channel, 1)
    issue_id = await broadcast(any_db, [channel])
    sender = RecordingSender(channel, answer=Outcome(OutcomeKind.TEMPORARY, "500 Internal Server Error"))
    dispatcher = Dispatcher(any_db, {channel: sender}, SubscriptionService(any_db, settings, clock), clock=clock,
                            policy=DispatchPolicy(max_attempts=3, backoff_base=10.0))
    start = clock()

    async def run() -> Delivery:
        await dispatcher.dispatch(issue_id, wait_for_retries=False)
        return (await deliveries(any_db, issue_id))[address]

    row = await run()
    assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 1, start + timedelta(seconds=10))
    clock.advance(9.9)
    assert (await run()).attempts == 1 and len(sender.requests) == 1  # not due yet
    clock.advance(0.1)
    row = await run()
    assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 2, start + timedelta(seconds=30))
    clock.advance(20)
    row = await run()
    assert (row.status, row.attempts) == ("failed", 3) and "gave up after 3 attempts" in row.reason
    assert len(sender.requests) == 3
    if channel == "line":
        assert len({m.retry_key for m in sender.requests}) == 1 and sender.requests[0].retry_key
    clock.advance(3600)
    await run()
    assert len(sender.requests) == 3  # failed is final


async def test_retry_after_is_honoured_and_age_limit_fails(any_db, settings, clock):
    """A platform's ``retry_after`` sets the wait; past ``max_age`` since the first attempt no retry is made."""
    [address] = await seed(any_db, "telegram", 1)
    issue_id = await broadcast(any_db, ["telegram"])
    sender = RecordingSender("telegram", answer=Outcome(OutcomeKind.TEMPORARY, "Too Many Requests", retry_after=42))
    dispatcher = Dispatcher(any_db, {"telegram": sender}, SubscriptionService(any_db, settings, clock), clock=clock,
                            policy=DispatchPolicy(max_attempts=100, max_age=60))
    await dispatcher.dispatch(issue_id, wait_for_retries=False)
    row = (await deliveries(any_db, issue_id))[address]
    assert row.next_attempt_at == clock() + timedelta(seconds=42)
    clock.advance(42)
    await dispatcher.dispatch(issue_id, wait_for_retries=False)
    clock.advance(42)  # 84 s after the first attempt > max_age
    await dispatcher.dispatch(issue_id, wait_for_retries=False)
    row = (await deliveries(any_db, issue_id))[address]
    assert (row.status, row.attempts, len(sender.requests)) == ("failed", 3, 3)


async def test_dispatch_waits_for_retries_in_real_time(any_db, settings):
    """With the real clock, ``dispatch()`` sleeps through the backoff and ends with ``failed``; the gaps grow."""
    [address] = await seed(any_db, "telegram", 1)
    issue_id = await broadcast(any_db, ["telegram"])
    sender = RecordingSender("telegram", answer=Outcome(OutcomeKind.TEMPORARY, "timeout"))
    dispatcher = Dispatcher(any_db, {"telegram": sender}, SubscriptionService(any_db, settings),
                            policy=DispatchPolicy(max_attempts=3, backoff_base=0.2))
    await asyncio.wait_for(dispatcher.dispatch(issue_id), timeout=30)
    assert (await statuses(any_db, issue_id))[address] == "failed"
    starts = [start for start, _ in sender.spans]
    assert len(starts) == 3
    assert starts[1] - starts[0] >= 0.2 - 0.01 and starts[2] - starts[1] >= 0.4 - 0.01


# ---- (f) timestamps ----------------------------------------------------------------------------------------------


async def test_timestamps_round_trip_as_aware_utc(any_db):
    """Aware values in any zone come back as the same instant in UTC, with microseconds; naive values are refused;
    SQL comparisons and min() see instants, not local wall times."""
    tokyo = timezone(timedelta(hours=9), "JST")
    new_york = timezone(timedelta(hours=-5))
    created = datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=tokyo)  # 00:30:15.123456 UTC
    started = datetime(2026, 11, 30, 19, 30, 15, 999999, tzinfo=new_york)  # 1 December 00:30:15.999999 UTC
    async with any_db.write() as session:
        issue = Issue(title="時刻", body_md="本文", created_at=created, started_at=started)
        session.add(issue)
        await session.flush()
        issue_id = issue.id
    async with any_db.read() as session:
        if any_db.is_postgresql:
            await session.exec(text("SET LOCAL TIME ZONE 'Asia/Tokyo'"))  # type: ignore[call-overload]
        stored = (await session.exec(select(Issue).where(Issue.id == issue_id))).one()
        later = (await session.exec(select(func.count()).select_from(Issue)  # type: ignore[call-overload]
                                    .where(Issue.started_at > created))).one()
        earliest = (await session.exec(select(func.min(Issue.started_at)))).one()  # type: ignore[call-overload]
    assert stored.created_at.tzinfo is not None and stored.created_at.utcoffset() == timedelta(0)
    assert stored.created_at == created
    assert stored.created_at.replace(tzinfo=None) == datetime(2026, 12, 1, 0, 30, 15, 123456)
    assert stored.started_at == started and stored.started_at.microsecond == 999999
    assert later == 1  # 00:30:15.999999 UTC is after 00:30:15.123456 UTC, though 19:30 < 09:30 as wall times
    assert earliest == started and earliest.utcoffset() == timedelta(0)
    with pytest.raises((ValueError, StatementError)):
        async with any_db.write() as session:
            await session.exec(update(Issue).where(Issue.id == issue_id)  # type: ignore[call-overload]
                               .values(finished_at=datetime(2026, 12, 1, 9, 0)))
    async with any_db.read() as session:
        assert (await session.get(Issue, issue_id)).finished_at is None
