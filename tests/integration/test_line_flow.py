"""LINE end to end: the emulator posts signed webhooks to our app; the real line-bot-sdk client replies/multicasts."""

from __future__ import annotations

import asyncio
import json

import httpx
from sqlmodel import func, select

from bots.broadcasting import broadcast_with
from core.broadcast import IssueDraft
from core.campaigns import add_campaign
from storage.models import ConsentEvent, Endpoint, InboundEvent

ISSUE = IssueDraft("12月のIT通信", "**二段階認証**を有効にしましょう。\n\n勉強会: 12月5日(金)19時〜")


async def ledger(stack):
    async with stack.runtime.db.read() as s:
        return list((await s.exec(select(ConsentEvent).order_by(ConsentEvent.id))).all())


async def endpoint_state(stack, address):
    async with stack.runtime.db.read() as s:
        row = (await s.exec(select(Endpoint).where(Endpoint.address == address))).first()
        return row.state if row else None


def quick_reply_data(message: dict) -> str:
    return message["quickReply"]["items"][0]["action"]["data"]


async def until(predicate, what: str, timeout: float = 5.0):
    """Wait (bounded) for an async predicate: webhook events are processed after the 200."""
    for _ in range(int(timeout / 0.05)):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def subscribe(stack, user: str, text: str = "登録") -> None:
    line = stack.line
    status, _ = await line.follow(user)
    assert status == 200
    greeting = (await line.wait_for_messages(user, 1))[-1]
    assert "プライバシーポリシー" in greeting["text"]
    await line.send_text(user, text)
    terms = (await line.wait_for_messages(user, 2))[-1]
    status, _ = await line.postback(user, quick_reply_data(terms))
    assert status == 200
    done = (await line.wait_for_messages(user, 3))[-1]
    assert "ご登録ありがとうございます" in done["text"]


async def test_subscribe_broadcast_withdraw_on_line(stack):
    line = stack.line
    await add_campaign(stack.runtime.db, "seminar-2026-12", "12月 東京セミナー")
    users = [await line.add_user(display_name=f"参加者{i}") for i in range(3)]
    await subscribe(stack, users[0], "登録 ＳＥＭＩＮＡＲ-2026-12")  # full-width campaign code
    await subscribe(stack, users[1], "とうろく ")
    await subscribe(stack, users[2], "登録　unknown-code")
    grants = [e for e in await ledger(stack) if e.action == "grant"]
    assert [g.campaign for g in grants] == ["seminar-2026-12", None, None]
    assert grants[2].evidence["campaign_raw"] == "unknown-code"
    assert all(g.evidence["webhookEventId"] for g in grants)

    result = await broadcast_with(stack.runtime, ISSUE)
    assert result.report.by_status() == {"sent": 3}
    multicasts = [r for r in line.requests if r.path.endswith("/multicast")]
    assert len(multicasts) == 1 and multicasts[0].retry_key
    for user in users:
        texts = line.texts_to(user)
        assert "【12月のIT通信】" in texts[-1] and "二段階認証" in texts[-1] and "解除" in texts[-1]

    await line.send_text(users[1], "かいじょ")
    await until(lambda: _is(stack, users[1], "unsubscribed"), "withdrawal")
    await line.unfollow(users[2])
    await until(lambda: _is(stack, users[2], "unreachable"), "block")
    counts = {u: len(line.texts_to(u)) for u in users}
    result = await broadcast_with(stack.runtime, IssueDraft("次号", "本文"))
    assert result.report.by_status() == {"sent": 1}
    assert len(line.texts_to(users[0])) == counts[users[0]] + 1
    assert len(line.texts_to(users[1])) == counts[users[1]]
    assert len(line.texts_to(users[2])) == counts[users[2]]
    tail = [(e.action, e.source) for e in await ledger(stack)][-2:]
    assert tail == [("withdraw", "chat"), ("withdraw", "blocked")]


async def _is(stack, address, state):
    return await endpoint_state(stack, address) == state


async def test_redelivered_event_is_handled_once(stack):
    line = stack.line
    user = await line.add_user()
    await line.follow(user)
    await line.wait_for_messages(user, 1)
    await line.send_text(user, "登録")
    terms = (await line.wait_for_messages(user, 2))[-1]
    status, event = await line.postback(user, quick_reply_data(terms))
    await line.wait_for_messages(user, 3)
    status, _ = await line.redeliver(event)
    assert status == 200
    await asyncio.sleep(0.3)
    assert len(line.texts_to(user)) == 3  # one reply, not two
    assert [e.action for e in await ledger(stack)] == ["grant"]


async def test_forged_and_malformed_webhooks_are_refused_and_store_nothing(stack):
    line = stack.line
    user = await line.add_user()
    body = json.dumps({"destination": "x", "events": [line.text_event(user, "登録")]}, ensure_ascii=False).encode()
    assert await line.post_raw(body, None) == 400
    assert await line.post_raw(body, "Zm9yZ2Vk") == 400
    assert await line.post_raw(b"{not json", line.sign(b"{not json")) == 400
    assert await line.post_raw(b'{"events": []}', line.sign(b'{"events": []}')) == 200
    async with stack.runtime.db.read() as s:
        assert (await s.exec(select(func.count()).select_from(InboundEvent))).one() == 0
    # raw UTF-8 Japanese and emoji with a correct signature -> accepted
    event = line.text_event(user, "こんにちは😀　")
    raw = json.dumps({"destination": "x", "events": [event]}, ensure_ascii=False).encode("utf-8")
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{stack.web_url}/webhooks/line", content=raw,
                                   headers={"X-Line-Signature": line.sign(raw), "Content-Type": "application/json"})
    assert answer.status_code == 200
    async with stack.runtime.db.read() as s:
        assert (await s.exec(select(func.count()).select_from(InboundEvent))).one() == 1
