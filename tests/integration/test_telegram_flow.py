"""Telegram end to end: real python-telegram-bot polling the emulator; subscribe -> consent -> broadcast -> 解除."""

from __future__ import annotations

import asyncio

from sqlmodel import select

from bots.broadcasting import broadcast_with
from core.broadcast import IssueDraft
from storage.models import ConsentEvent, Endpoint

ISSUE = IssueDraft("12月のIT通信", "## パスワード管理\n\n**二段階認証**を有効にしましょう。<script>x</script>")


async def ledger(stack):
    async with stack.runtime.db.read() as s:
        return list((await s.exec(select(ConsentEvent).order_by(ConsentEvent.id))).all())


async def endpoint_state(stack, address):
    async with stack.runtime.db.read() as s:
        row = (await s.exec(select(Endpoint).where(Endpoint.address == str(address)))).first()
        return row.state if row else None


async def subscribe(stack, user_id: int, start_text: str = "/start seminar-2026-12") -> None:
    tg = stack.telegram
    tg.send_text(user_id, start_text)
    terms = (await tg.wait_for_messages(user_id, 1))[-1]
    assert "プライバシーポリシー" in terms.text
    update_id = tg.press_button(user_id, terms.message_id, terms.buttons[0]["callback_data"])
    await tg.wait_for_callback_answer(update_id)
    done = (await tg.wait_for_messages(user_id, 2))[-1]
    assert "ご登録ありがとうございます" in done.text


async def test_subscribe_broadcast_withdraw(stack):
    tg = stack.telegram
    alice = tg.add_user(first_name="花子").id
    bob = tg.add_user(first_name="太郎").id
    await subscribe(stack, alice)
    await subscribe(stack, bob, "登録")
    assert await endpoint_state(stack, alice) == "active"
    commands = [c["command"] for c in tg.commands()]
    assert {"start", "stop", "help", "status"} <= set(commands)

    result = await broadcast_with(stack.runtime, ISSUE)
    assert result.report.by_status() == {"sent": 2}
    issue_message = tg.messages_to(alice)[-1]
    assert "12月のIT通信" in issue_message.text and "二段階認証" in issue_message.text
    assert "<script>" in issue_message.text  # author text shown as text, escaped on the wire
    assert "解除" in issue_message.text.splitlines()[-1]

    tg.send_text(bob, "解除　")
    reply = (await tg.wait_for_messages(bob, 4))[-1]
    assert "停止しました" in reply.text
    assert await endpoint_state(stack, bob) == "unsubscribed"
    before = len(tg.messages_to(bob))
    result = await broadcast_with(stack.runtime, IssueDraft("次号", "本文"))
    assert result.report.by_status() == {"sent": 1}
    assert len(tg.messages_to(bob)) == before  # nothing after 解除
    actions = [(e.action, e.source, e.campaign) for e in await ledger(stack)]
    assert actions == [("grant", "chat", None), ("grant", "chat", None), ("withdraw", "chat", None)]


async def test_block_is_withdraw_and_unblock_needs_fresh_consent(stack):
    tg = stack.telegram
    user = tg.add_user().id
    await subscribe(stack, user, "登録")
    tg.block(user)
    await tg.wait_for_updates_consumed()
    for _ in range(100):  # bounded: the update is handled asynchronously after it was fetched
        if await endpoint_state(stack, user) == "unreachable":
            break
        await asyncio.sleep(0.05)
    assert await endpoint_state(stack, user) == "unreachable"
    assert [(e.action, e.source) for e in await ledger(stack)][-1] == ("withdraw", "blocked")
    tg.unblock(user)
    terms = (await tg.wait_for_messages(user, 3))[-1]
    assert terms.buttons and "プライバシーポリシー" in terms.text
    assert await endpoint_state(stack, user) == "unreachable"  # not resubscribed by unblocking


async def test_group_chat_refused_and_unknown_text_gets_help(stack):
    tg = stack.telegram
    user = tg.add_user().id
    tg.send_group_text(-100200, user, "/start")
    tg.send_text(user, "こんにちは😀")
    help_text = (await tg.wait_for_messages(user, 1))[-1]
    assert "使えることば" in help_text.text
    refusal = (await tg.wait_for_messages(-100200, 1))[-1]
    assert "1対1" in refusal.text
    assert await ledger(stack) == []
