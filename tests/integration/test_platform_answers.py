"""Platform answers (issue 4, item 3): every test is a real broadcast — dispatcher -> sender -> real SDK -> emulator.

Telegram (reference/telegram.md): 429 ``retry_after``, 403 blocked/deactivated, ``ChatMigrated``, ``Can't parse
entities``, text over 4,096 characters and about 1 message/s per chat. LINE (reference/line.md): one
``X-Line-Retry-Key`` per multicast batch stored before the request, 5xx/timeout retried with the same key, 409
"already accepted" = sent, 429 rate, 429 monthly limit, text over 5,000 UTF-16 code units, 500 recipients per request,
the quota read before a broadcast.

Subscribers are made through the subscription use case (what the chat handlers call after 登録 / 同意), which is
quicker than the chat flow; the chat flows have their own tests. The 1,200-reader test imports its readers (source
``import``) in one transaction, chained with the ledger's own hash functions and verified: two chat turns each would
take about a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from sqlmodel import select

from bots.broadcasting import broadcast_with
from bots.sandbox.stack import running_stack, sandbox_settings
from core import consent, render, texts
from core.broadcast import IssueDraft, requeue
from core.subscriptions import ChatContext
from storage.models import (
    Basis,
    ConsentAction,
    ConsentEvent,
    ConsentSource,
    Delivery,
    DeliveryStatus,
    Endpoint,
    EndpointState,
    Subscriber,
)
from storage.types import utcnow

MULTICAST = "/v2/bot/message/multicast"
ISSUE = IssueDraft("12月のIT通信", "**二段階認証**を有効にしましょう。\n\n勉強会: 12月5日(金)19時〜 <新宿> & オンライン")


@contextlib.asynccontextmanager
async def stack_with(tmp_path, **overrides):
    async with running_stack(sandbox_settings(tmp_path, **overrides)) as running:
        yield running


async def subscribe(stack, channel: str, address: str) -> None:
    """登録 then 同意 in a private chat, through the use case the chat handlers call."""
    ctx = ChatContext(channel=channel, address=address)
    await stack.runtime.subscriptions.handle_text(ctx, "登録")
    replies = await stack.runtime.subscriptions.handle_text(ctx, "同意")
    assert replies[0].kind == "subscribed"


async def telegram_readers(stack, count: int) -> list[int]:
    chats = [stack.telegram.add_user(first_name=f"読者{i}").id for i in range(count)]
    for chat in chats:
        await subscribe(stack, "telegram", str(chat))
    return chats


async def line_readers(stack, count: int) -> list[str]:
    users = [await stack.line.add_user(display_name=f"読者{i}", friend=True) for i in range(count)]
    for user in users:
        await subscribe(stack, "line", user)
    return users


async def import_line_readers(stack, count: int) -> list[str]:
    """``count`` LINE friends granted by an import (source ``import``) in one write transaction.

    The ledger events are chained with the ledger's own functions and inserted at once (``consent.append`` costs
    one database round trip per event, which is most of a minute for a thousand); the chain is verified after.
    """
    users = [await stack.line.add_user(display_name=f"読者{i}", friend=True) for i in range(count)]
    async with stack.runtime.db.write() as session:
        subscribers = [Subscriber() for _ in users]
        session.add_all(subscribers)
        await session.flush()
        endpoints = [Endpoint(subscriber_id=subscriber.id, channel="line", address=user, friend=True,
                              state=EndpointState.ACTIVE.value, basis=Basis.OPT_IN.value)
                     for subscriber, user in zip(subscribers, users)]
        session.add_all(endpoints)
        await session.flush()
        key = await consent.ledger_key(session)
        head = (await session.exec(select(ConsentEvent.id, ConsentEvent.hash)
                                   .order_by(ConsentEvent.id.desc()).limit(1))).first()
        last_id, prev_hash = head if head else (0, consent.GENESIS_HASH)
        now = utcnow()
        events = []
        for offset, row in enumerate(endpoints, start=1):
            event = ConsentEvent(
                id=last_id + offset, occurred_at=now, subscriber_id=row.subscriber_id, endpoint_id=row.id,
                channel="line", action=ConsentAction.GRANT.value, basis=Basis.OPT_IN.value,
                source=ConsentSource.IMPORT.value, evidence={"import": "test_platform_answers"},
                address_hmac=consent.address_hmac(key, "line", row.address), prev_hash=prev_hash, hash="")
            event.hash = prev_hash = consent.chain_hash(prev_hash, consent.hashed_record(event))
            events.append(event)
        session.add_all(events)
    async with stack.runtime.db.read() as session:
        chain = (await session.exec(select(ConsentEvent).order_by(ConsentEvent.id))).all()
    assert consent.verify_chain(chain) == []
    return users


async def deliveries(stack, issue_id: int) -> dict[str, Delivery]:
    """The issue's delivery rows keyed by the endpoint's current address."""
    async with stack.runtime.db.read() as s:
        rows = (await s.exec(select(Delivery, Endpoint).join(Endpoint, Endpoint.id == Delivery.endpoint_id)
                             .where(Delivery.issue_id == issue_id))).all()
    return {endpoint.address: delivery for delivery, endpoint in rows}


async def endpoint(stack, channel: str, address: str) -> Endpoint | None:
    async with stack.runtime.db.read() as s:
        return (await s.exec(select(Endpoint).where(Endpoint.channel == channel, Endpoint.address == address))).first()


def send_calls(tg, chat: int | None = None):
    return [c for c in tg.calls
            if c.method == "sendMessage" and (chat is None or str(c.params.get("chat_id")) == str(chat))]


def multicasts(line):
    return [r for r in line.requests if r.path == MULTICAST]


# ---- Telegram -----------------------------------------------------------------------------------------------------


async def test_telegram_429_waits_retry_after_resends_same_message_and_skips_nobody(tmp_path):
    # Our limiter allows a burst of 5/s; the emulator allows 4/s overall, so the fifth send of the burst is refused
    # with retry_after 2. Every send during those 2 s would be a violation (Telegram extends the penalty).
    async with stack_with(tmp_path, telegram_rate_per_second=5) as stack:
        tg = stack.telegram
        chats = await telegram_readers(stack, 8)
        tg.rate_limit(4, None, retry_after=2)
        result = await broadcast_with(stack.runtime, ISSUE)

        assert result.report.by_status() == {"sent": 8}
        assert tg.too_many_requests >= 1
        assert tg.retry_after_violations == 0
        texts_sent = {chat: [m.raw_text for m in tg.messages_to(chat)] for chat in chats}
        assert all(len(t) == 1 for t in texts_sent.values()), texts_sent  # everybody exactly once
        assert len({t[0] for t in texts_sent.values()}) == 1  # the same message, resent as it was
        refused = [c for c in send_calls(tg) if c.status == 429]
        assert refused
        for call in refused:
            chat = call.params["chat_id"]
            resent = [c for c in send_calls(tg, chat) if c.status == 200 and c.at > call.at]
            assert len(resent) == 1
            assert resent[0].at - call.at >= 2.0  # waited at least retry_after before resending that chat's message
            assert resent[0].params["text"] == call.params["text"]


async def test_telegram_403_blocked_and_deactivated_mark_unreachable_and_the_loop_goes_on(tmp_path):
    async with stack_with(tmp_path) as stack:
        tg = stack.telegram
        chats = await telegram_readers(stack, 3)
        tg.fail_next("sendMessage", 403, "Forbidden: bot was blocked by the user")
        result = await broadcast_with(stack.runtime, ISSUE)

        assert result.report.by_status() == {"sent": 2, "failed": 1}
        [blocked] = [int(c.params["chat_id"]) for c in send_calls(tg) if c.status == 403]
        others = [chat for chat in chats if chat != blocked]
        assert all(len(tg.messages_to(chat)) == 1 for chat in others)  # the others still got it
        rows = await deliveries(stack, result.issue_id)
        assert rows[str(blocked)].status == "failed" and "blocked" in rows[str(blocked)].reason
        blocked_endpoint = await endpoint(stack, "telegram", str(blocked))
        assert blocked_endpoint.state == "unreachable"
        async with stack.runtime.db.read() as s:
            events = (await s.exec(select(ConsentEvent).where(ConsentEvent.endpoint_id == blocked_endpoint.id)
                                   .order_by(ConsentEvent.id))).all()
        assert (events[-1].action, events[-1].source) == ("withdraw", "blocked")

        gone, still = others
        tg.deactivate(gone)  # the account was deleted: 403 "user is deactivated", no update
        result = await broadcast_with(stack.runtime, IssueDraft("次号", "本文です。"))
        assert result.report.by_status() == {"sent": 1, "failed": 1}
        rows = await deliveries(stack, result.issue_id)
        assert str(blocked) not in rows  # unreachable endpoints get no delivery at all
        assert rows[str(gone)].status == "failed" and "deactivated" in rows[str(gone)].reason
        assert (await endpoint(stack, "telegram", str(gone))).state == "unreachable"
        assert len(tg.messages_to(still)) == 2 and len(tg.messages_to(gone)) == 1


async def test_telegram_chat_migrated_stores_the_new_id_and_resends_there(tmp_path):
    async with stack_with(tmp_path) as stack:
        tg = stack.telegram
        old, new = -4001, -1001000004001
        # Groups cannot subscribe through the chat today; an endpoint of a group (an import, or a rule that may
        # change) is made through the use case directly, as a private context would be.
        await subscribe(stack, "telegram", str(old))
        tg.migrate_chat(old, new)
        result = await broadcast_with(stack.runtime, ISSUE)

        assert result.report.by_status() == {"sent": 1}
        assert [c.status for c in send_calls(tg, old)] == [400]
        assert tg.messages_to(old) == []
        assert len(tg.messages_to(new)) == 1  # delivered once, to the new id
        assert await endpoint(stack, "telegram", str(old)) is None
        moved = await endpoint(stack, "telegram", str(new))
        assert moved is not None and moved.state == "active"
        assert (await deliveries(stack, result.issue_id))[str(new)].status == "sent"


async def test_telegram_cant_parse_entities_resends_as_plain_text(tmp_path):
    async with stack_with(tmp_path) as stack:
        tg = stack.telegram
        [chat] = await telegram_readers(stack, 1)
        tg.fail_next("sendMessage", 400, "Bad Request: can't parse entities: Can't find end tag corresponding to "
                                         "start tag \"b\"")
        result = await broadcast_with(stack.runtime, ISSUE)

        assert result.report.by_status() == {"sent": 1}
        calls = send_calls(tg, chat)
        assert [c.status for c in calls] == [400, 200]
        assert calls[0].params.get("parse_mode") == "HTML" and not calls[1].params.get("parse_mode")
        [message] = tg.messages_to(chat)
        assert message.parse_mode is None
        assert "12月のIT通信" in message.text and "二段階認証" in message.text and "<新宿> & オンライン" in message.text
        assert "<b>" not in message.text  # plain text, not our HTML shown raw


async def test_telegram_long_text_is_split_at_paragraphs_in_order_and_spaced_per_chat(tmp_path):
    paragraphs = [f"**段落{i:02d}** " + "お知らせの本文です。<注意> & 確認。" * 17 + f"以上{i:02d}。" for i in range(30)]
    draft = IssueDraft("長い号", "\n\n".join(paragraphs))
    footer = texts.text("issue_footer", "ja")
    expected = render.issue_parts("telegram", draft.title, draft.body_md, footer)
    assert len(expected) >= 3
    async with stack_with(tmp_path) as stack:
        tg = stack.telegram
        chats = await telegram_readers(stack, 2)
        tg.rate_limit(None, 1, retry_after=1)  # Telegram: about 1 message/s in one chat
        started = time.monotonic()
        result = await broadcast_with(stack.runtime, draft)
        elapsed = time.monotonic() - started

        assert result.report.by_status() == {"sent": 2}
        assert tg.too_many_requests == 0
        assert all(c.status == 200 for c in send_calls(tg))  # every part accepted (HTML and length validated)
        for chat in chats:
            messages = tg.messages_to(chat)
            assert [m.raw_text for m in messages] == expected  # all parts, in order, once
            assert all(len(m.text) <= 4096 for m in messages)
            gaps = [b.at - a.at for a, b in zip(messages, messages[1:])]
            assert min(gaps) >= 1.0, gaps
            # Never inside a paragraph (so never inside a tag): each paragraph is whole in exactly one message,
            # and the paragraphs come in order.
            where = []
            for i in range(30):
                shown = f"段落{i:02d} " + "お知らせの本文です。<注意> & 確認。" * 17 + f"以上{i:02d}。"
                holders = [n for n, m in enumerate(messages) if shown in m.text]
                assert len(holders) == 1, (i, holders)
                where.append(holders[0])
            assert where == sorted(where)
        # The two chats were served side by side: waiting between parts does not hold the overall limiter.
        assert elapsed < 2 * (len(expected) - 1)


async def test_telegram_answers_after_the_first_part_never_resend_the_parts_already_sent(tmp_path):
    paragraphs = [f"**段落{i:02d}** " + "お知らせの本文です。" * 40 for i in range(30)]
    draft = IssueDraft("長い号", "\n\n".join(paragraphs))
    expected = render.issue_parts("telegram", draft.title, draft.body_md, texts.text("issue_footer", "ja"))
    assert len(expected) >= 3
    async with stack_with(tmp_path) as stack:
        tg = stack.telegram
        [chat] = await telegram_readers(stack, 1)
        task = asyncio.create_task(broadcast_with(stack.runtime, draft))

        async def after_parts(count: int) -> None:
            for _ in range(500):  # bounded; parts come about 1 s apart
                if len(tg.messages_to(chat)) >= count or task.done():
                    return
                await asyncio.sleep(0.01)

        await after_parts(1)
        tg.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", {"retry_after": 1})  # part 2 refused
        await after_parts(2)
        tg.fail_next("sendMessage", 400, "Bad Request: can't parse entities: Unsupported start tag")  # part 3
        result = await task

        assert result.report.by_status() == {"sent": 1}
        messages = tg.messages_to(chat)
        assert len(messages) == len(expected)  # nothing sent twice
        assert [m.raw_text for m in messages[:2]] == expected[:2] and messages[1].parse_mode == "HTML"
        assert all(m.parse_mode is None and "<b>" not in m.raw_text for m in messages[2:])  # the rest as plain text
        assert "段落29" in messages[-1].text  # ... and complete
        statuses = [c.status for c in send_calls(tg, chat)]
        assert statuses == [200, 429, 200, 400] + [200] * (len(expected) - 2)
        refused, resent = [c for c in send_calls(tg, chat)][1:3]
        assert resent.at - refused.at >= 1.0 and resent.params["text"] == refused.params["text"]


# ---- LINE ---------------------------------------------------------------------------------------------------------


async def test_line_retry_key_is_stored_before_the_request_and_an_accepted_500_is_answered_409(tmp_path):
    async with stack_with(tmp_path) as stack:
        line = stack.line
        users = await line_readers(stack, 3)
        # LINE accepts the request (delivers it) but the answer is a 500, 0.8 s later.
        line.fail_next(MULTICAST, 500, {"message": "Internal Server Error"}, accept_before_failing=True, delay=0.8)
        task = asyncio.create_task(broadcast_with(stack.runtime, ISSUE))
        for _ in range(200):  # bounded: until LINE has accepted the request
            if line.delivered or task.done():
                break
            await asyncio.sleep(0.01)
        assert line.delivered, "LINE never accepted the multicast"
        key = line.delivered[0].retry_key
        # At the moment LINE accepted it (its answer still pending), the key is already committed on every row.
        async with stack.runtime.db.read() as s:
            rows = (await s.exec(select(Delivery).where(Delivery.channel == "line"))).all()
        assert len(rows) == 3
        assert {row.retry_key for row in rows} == {key}
        assert all(row.status == "sending" and row.attempted_at is not None for row in rows)

        result = await task
        assert result.report.by_status() == {"sent": 3}
        requests = multicasts(line)
        assert [r.status for r in requests] == [500, 409]  # the identical request again; 409 = it was sent
        assert {r.retry_key for r in requests} == {key}
        assert requests[0].body == requests[1].body and sorted(requests[0].body["to"]) == sorted(users)
        assert all(len(line.deliveries_to(user)) == 1 for user in users)  # exactly once


async def test_line_5xx_and_timeout_repeat_the_same_request_with_the_same_key(tmp_path):
    async with stack_with(tmp_path) as stack:
        line = stack.line
        users = await line_readers(stack, 2)
        line.fail_next(MULTICAST, 503, {"message": "Service Unavailable"}, count=2)  # refused, nothing sent
        result = await broadcast_with(stack.runtime, ISSUE)
        assert result.report.by_status() == {"sent": 2}
        requests = multicasts(line)
        assert [r.status for r in requests] == [503, 503, 200]
        assert len({r.retry_key for r in requests}) == 1 and requests[0].retry_key
        assert all(len(line.deliveries_to(user)) == 1 for user in users)

        # A timeout after LINE accepted: the same key again is answered 409, nobody gets it twice.
        line.clear_records()
        stack.runtime.senders["line"].request_timeout = 0.3
        line.fail_next(MULTICAST, 500, {"message": "Internal Server Error"}, accept_before_failing=True, delay=3.0)
        started = time.monotonic()
        result = await broadcast_with(stack.runtime, IssueDraft("次号", "本文です。"))
        assert time.monotonic() - started < 2.5  # it gave up waiting for the answer, it did not get the 500
        assert result.report.by_status() == {"sent": 2}
        for _ in range(100):  # bounded: the emulator records the timed-out request when its delayed answer ends
            if len(multicasts(line)) == 2:
                break
            await asyncio.sleep(0.05)
        requests = multicasts(line)
        assert sorted(r.status for r in requests) == [409, 500]
        assert len({r.retry_key for r in requests}) == 1
        assert requests[0].body == requests[1].body
        assert all(len(line.deliveries_to(user)) == 1 for user in users)


async def test_line_rate_429_backs_off_and_retries(tmp_path):
    rate_message = {"message": "The API rate limit has been exceeded. Try again later."}
    async with stack_with(tmp_path) as stack:
        line = stack.line
        users = await line_readers(stack, 2)
        line.fail_next(MULTICAST, 429, rate_message, count=2)
        result = await broadcast_with(stack.runtime, ISSUE)
        assert result.report.by_status() == {"sent": 2}
        requests = multicasts(line)
        assert [r.status for r in requests] == [429, 429, 200]
        assert len({r.retry_key for r in requests}) == 1
        waits = [(b.at - a.at).total_seconds() for a, b in zip(requests, requests[1:])]
        assert waits[0] >= 0.4 and waits[1] >= 0.9  # backing off, longer each time
        assert all(len(line.deliveries_to(user)) == 1 for user in users)

        # The emulator's own limiter: an issue of 6 messages takes 2 requests back to back; at 1 request/s the
        # second is refused 429 and sent after backing off.
        line.clear_records()
        line.rate_limit(multicast_per_second=1)
        long = IssueDraft("長い号", "\n\n".join(f"第{i}部。" + "あ" * 4900 for i in range(6)))
        result = await broadcast_with(stack.runtime, long)
        assert result.report.by_status() == {"sent": 2}
        assert line.rate_limited["multicast"] >= 1
        accepted = [r for r in multicasts(line) if r.status == 200]
        assert len(accepted) == 2
        assert all(len(line.deliveries_to(user)) == 2 for user in users)


async def test_line_monthly_limit_defers_line_lets_telegram_finish_and_resume_sends_the_rest(tmp_path):
    async with stack_with(tmp_path) as stack:
        line, tg = stack.line, stack.telegram
        users = await line_readers(stack, 3)
        chats = await telegram_readers(stack, 2)
        line.fail_next(MULTICAST, 429, {"message": "You have reached your monthly limit."})
        result = await broadcast_with(stack.runtime, ISSUE)

        assert result.report.counts == {("line", "deferred"): 3, ("telegram", "sent"): 2}
        assert "failed" not in result.report.by_status()
        assert len(multicasts(line)) == 1  # no further LINE requests once the month's quota is gone
        [notice] = [n for n in result.summary.notices if n.channel == "line"]
        assert "monthly" in notice.reason and notice.deferred == 3
        assert all(len(tg.messages_to(chat)) == 1 for chat in chats)
        assert all(line.deliveries_to(user) == [] for user in users)

        # The plan changed: `otayori deliveries resume ISSUE` re-queues the deferred ones and dispatches.
        line.set_quota(None)
        assert await requeue(stack.runtime.db, result.issue_id, DeliveryStatus.DEFERRED) == 3
        summary = await stack.runtime.dispatcher().dispatch(result.issue_id)
        assert summary.finished["line"]["sent"] == 3
        assert set(s.status for s in (await deliveries(stack, result.issue_id)).values()) == {"sent"}
        assert all(len(line.deliveries_to(user)) == 1 for user in users)  # exactly once
        assert all(len(tg.messages_to(chat)) == 1 for chat in chats)  # Telegram not sent again


async def test_line_long_text_is_split_under_5000_utf16_units_at_most_5_messages_per_request(tmp_path):
    # Emoji count 2 UTF-16 code units each: 30,000+ units, more than 5 parts, so 2 requests per batch.
    body = "\n\n".join(f"第{i:02d}段落 " + "予定です😀" * 300 for i in range(20))
    draft = IssueDraft("長い号😀", body)
    expected = render.issue_parts("line", draft.title, draft.body_md, texts.text("issue_footer", "ja"))
    assert len(expected) > 5
    async with stack_with(tmp_path) as stack:
        line = stack.line
        users = await line_readers(stack, 2)
        result = await broadcast_with(stack.runtime, draft)

        assert result.report.by_status() == {"sent": 2}
        requests = multicasts(line)
        assert all(r.status == 200 for r in requests)
        assert len(requests) == -(-len(expected) // 5)
        assert all(1 <= len(r.body["messages"]) <= 5 for r in requests)
        assert len({r.retry_key for r in requests}) == len(requests)  # each request its own (derived) key
        for user in users:
            got = line.texts_to(user)
            assert got == expected  # every part, in order, once
            assert all(render.utf16_length(t) <= 5000 for t in got)
            assert "".join(got).count("予定です😀") == 20 * 300  # nothing lost at the cuts


async def test_line_1200_recipients_take_exactly_three_multicasts(tmp_path):
    async with stack_with(tmp_path) as stack:
        line = stack.line
        users = await import_line_readers(stack, 1200)
        result = await broadcast_with(stack.runtime, ISSUE)

        assert result.report.by_status() == {"sent": 1200}
        requests = multicasts(line)
        assert len(requests) == 3 and all(r.status == 200 for r in requests)
        assert all(len(r.body["to"]) <= 500 for r in requests)
        assert sorted(u for r in requests for u in r.body["to"]) == sorted(users)
        assert len({r.retry_key for r in requests}) == 3  # one key per batch
        assert sorted(d.user_id for d in line.delivered) == sorted(users)  # each exactly once


async def test_line_quota_is_read_before_the_broadcast_and_the_excess_deferred(tmp_path):
    async with stack_with(tmp_path) as stack:
        line = stack.line
        users = await line_readers(stack, 8)
        line.set_quota(10, used=5)  # 5 messages left this month
        result = await broadcast_with(stack.runtime, ISSUE)

        assert result.report.counts == {("line", "sent"): 5, ("line", "deferred"): 3}
        assert line.quota_used == 10
        assert all(r.status == 200 for r in multicasts(line))  # no request was sent that had to fail
        reached = [user for user in users if line.deliveries_to(user)]
        assert len(reached) == 5 and all(len(line.deliveries_to(user)) == 1 for user in reached)
        assert any(n.channel == "line" and n.deferred == 3 for n in result.summary.notices)


async def _withdraw_while_held(stack, user: str, *, accepted: bool) -> tuple[dict[str, str], list]:
    """Broadcast to the LINE readers while LINE holds the first multicast 1.5 s and then answers 500 (having accepted
    it, or not); ``user`` says 解除 while it is held. Returns ({user id: delivery status}, multicast records)."""
    line = stack.line
    line.fail_next(MULTICAST, 500, {"message": "Internal server error"}, delay=1.5,
                   accept_before_failing=accepted)
    sending = asyncio.create_task(broadcast_with(stack.runtime, ISSUE))
    for _ in range(100):  # bounded: the held request arrives within a second
        if line.requests or line.delivered:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    replies = await stack.runtime.subscriptions.handle_text(ChatContext(channel="line", address=user), "解除。")
    assert replies, "解除 got no answer"
    await asyncio.wait_for(sending, 60)
    async with stack.runtime.db.read() as session:
        rows = (await session.exec(select(Endpoint.address, Delivery.status)
                                   .join(Delivery, Delivery.endpoint_id == Endpoint.id))).all()
    return dict(rows), multicasts(line)


async def test_line_repeat_after_a_5xx_leaves_out_who_withdrew_meanwhile(tmp_path):
    """LINE refused the first request unprocessed (500); a reader says 解除 before the repeat: the repeat (same retry
    key) goes to the others only, and the reader never gets the issue: `skipped`."""
    async with stack_with(tmp_path) as stack:
        users = await line_readers(stack, 3)
        gone = users[0]
        statuses, requests = await _withdraw_while_held(stack, gone, accepted=False)
        assert len(stack.line.deliveries_to(gone)) == 0
        assert all(len(stack.line.deliveries_to(u)) == 1 for u in users[1:])
        assert statuses == {gone: "skipped", users[1]: "sent", users[2]: "sent"}
        assert [r.status for r in requests] == [500, 200]
        assert len({r.retry_key for r in requests}) == 1  # the same request again, less the one who left
        assert sorted(requests[-1].body["to"]) == sorted(users[1:])  # the repeat names only who stayed


async def test_line_repeat_of_an_accepted_request_counts_who_withdrew_meanwhile_as_sent(tmp_path):
    """LINE had accepted the first request (then answered 500): the reader who said 解除 afterwards already had the
    issue; the repeat answers 409 and their delivery is recorded `sent` — nobody gets a second copy."""
    async with stack_with(tmp_path) as stack:
        users = await line_readers(stack, 2)
        gone = users[0]
        statuses, requests = await _withdraw_while_held(stack, gone, accepted=True)
        assert all(len(stack.line.deliveries_to(u)) == 1 for u in users)
        assert statuses == {gone: "sent", users[1]: "sent"}
        assert [r.status for r in requests] == [500, 409]


async def test_telegram_parts_stop_when_the_reader_withdraws_between_them(tmp_path):
    """An issue too long for one Telegram message goes as parts 1 s apart; a 解除 between them stops the rest."""
    async with stack_with(tmp_path) as stack:
        tg = stack.telegram
        [chat] = await telegram_readers(stack, 1)
        long = IssueDraft("長い号", "\n\n".join(f"第{i}部。" + "あ" * 3000 for i in range(3)))
        sending = asyncio.create_task(broadcast_with(stack.runtime, long, channels=["telegram"]))
        for _ in range(100):  # bounded: the first part arrives within a second
            if any("長い号" in (m.text or "") for m in tg.messages_to(chat)):
                break
            await asyncio.sleep(0.05)
        await stack.runtime.subscriptions.handle_text(ChatContext(channel="telegram", address=str(chat)), "解除")
        await asyncio.wait_for(sending, 60)
        parts = [m for m in tg.messages_to(chat) if "あああ" in (m.text or "")]
        assert len(parts) == 1, [m.text[:20] for m in parts]
