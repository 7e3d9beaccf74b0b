"""Telegram webhook mode end to end: the real python-telegram-bot Application (no updater) behind our Starlette app,
the Telegram emulator calling setWebhook's URL with the secret header, one SQLite file."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from sqlmodel import select
from telegram import Bot

from bots.sandbox.stack import running_stack, sandbox_settings
from bots.telegram_webhook import ALLOWED_UPDATES, SECRET_HEADER
from storage.models import ConsentEvent, Endpoint, InboundEvent, TermsOffer

SECRET = "otayori-WEBHOOK_secret-0123456789"


@pytest.fixture
async def hooked(tmp_path):
    settings = sandbox_settings(tmp_path, telegram_mode="webhook", telegram_webhook_secret=SECRET)
    async with running_stack(settings) as running:
        yield running


async def rows(stack, model, *where):
    async with stack.runtime.db.read() as session:
        return list((await session.exec(select(model).where(*where))).all())


async def until(predicate, what: str, timeout: float = 5.0):
    """Poll an async ``predicate`` every 20 ms until it is truthy (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def deliveries_of(tg, update_id: int) -> list:
    return [d for d in tg.webhook_deliveries if d.update_id == update_id]


def text_update(update_id: int, user_id: int, text: str) -> dict:
    """A Bot API Update for a private text message, as Telegram would POST it."""
    user = {"id": user_id, "is_bot": False, "first_name": "鈴木"}
    return {"update_id": update_id, "message": {
        "message_id": 1, "date": int(time.time()), "chat": {"id": user_id, "type": "private", "first_name": "鈴木"},
        "from": user, "text": text}}


async def test_webhook_mode_registers_and_subscribes_with_japanese_input(hooked):
    tg = hooked.telegram
    assert tg.webhook_url == f"{hooked.web_url}/webhooks/telegram"
    set_call = [c for c in tg.calls if c.method == "setWebhook"][-1]
    assert set_call.params["secret_token"] == SECRET
    assert set(json.loads(set_call.params["allowed_updates"])) == set(ALLOWED_UPDATES)
    assert not [c for c in tg.calls if c.method == "getUpdates"]  # nobody polls in webhook mode

    user = tg.add_user(first_name="花子").id
    tg.send_text(user, "\u3000登録\u200b ")  # U+3000 and a zero-width space around the keyword
    terms = (await tg.wait_for_messages(user, 1))[-1]
    assert "プライバシーポリシー" in terms.text
    tg.send_text(user, "同意\u3000")
    done = (await tg.wait_for_messages(user, 2))[-1]
    assert "ご登録ありがとうございます" in done.text
    endpoint = (await rows(hooked, Endpoint, Endpoint.address == str(user)))[0]
    assert endpoint.state == "active"
    grants = await rows(hooked, ConsentEvent, ConsentEvent.endpoint_id == endpoint.id)
    assert [(e.action, e.source) for e in grants] == [("grant", "chat")]
    assert "update_id" in grants[0].evidence
    statuses = {d.status for d in tg.webhook_deliveries}
    assert statuses == {200}, tg.webhook_deliveries
    stored = await rows(hooked, InboundEvent, InboundEvent.channel == "telegram")
    assert len(stored) == 2 and all(row.processed_at is not None for row in stored)


async def test_wrong_or_missing_secret_is_refused_and_nothing_is_stored(hooked):
    tg = hooked.telegram
    user = tg.add_user(first_name="次郎").id
    update = text_update(990_000_001, user, "登録")
    url = f"{hooked.web_url}/webhooks/telegram"
    async with httpx.AsyncClient(timeout=5.0) as client:
        for headers in ({}, {SECRET_HEADER: ""}, {SECRET_HEADER: SECRET[:-1]}, {SECRET_HEADER: SECRET + "x"},
                        {SECRET_HEADER: SECRET.upper()}):
            answer = await client.post(url, json=update, headers=headers)
            assert answer.status_code == 403, headers
        await asyncio.sleep(0.3)  # a wrongly accepted update would be processed in the background by now
        assert await rows(hooked, InboundEvent, InboundEvent.channel == "telegram") == []
        assert await rows(hooked, TermsOffer) == []
        assert tg.messages_to(user) == []
        # The same update with the right secret is taken: the refusals above were about the secret only.
        answer = await client.post(url, json=update, headers={SECRET_HEADER: SECRET})
        assert answer.status_code == 200
    assert "プライバシーポリシー" in (await tg.wait_for_messages(user, 1))[-1].text


async def test_emulator_delivery_with_a_wrong_secret_gets_403_and_changes_nothing(hooked):
    tg = hooked.telegram
    tg.webhook_max_attempts = 3
    # Someone re-registers the webhook with another secret (as a leaked token could): deliveries carry that one.
    async with Bot(hooked.settings.telegram_bot_token, base_url=tg.api_url) as intruder:
        await intruder.set_webhook(url=tg.webhook_url, secret_token="not-our-secret")
    user = tg.add_user(first_name="三郎").id
    update_id = tg.send_text(user, "登録")
    attempts = await tg.wait_until(lambda: len(deliveries_of(tg, update_id)) == 3 and deliveries_of(tg, update_id),
                                   what="three refused deliveries")
    assert [d.status for d in attempts] == [403, 403, 403]
    assert await rows(hooked, InboundEvent, InboundEvent.channel == "telegram") == []
    assert await rows(hooked, TermsOffer) == [] and tg.messages_to(user) == []


async def test_a_retried_update_is_processed_once(hooked):
    tg = hooked.telegram
    user = tg.add_user(first_name="さくら").id
    tg.lose_webhook_answers(1)  # our 200 for 登録 never reaches "Telegram": it delivers the update again
    ask = tg.send_text(user, "登録")
    await tg.wait_until(lambda: len(deliveries_of(tg, ask)) == 2, what="the retried 登録")
    terms = (await tg.wait_for_messages(user, 1))[-1]
    tg.lose_webhook_answers(1)
    agree = tg.send_text(user, "同意")
    await tg.wait_until(lambda: len(deliveries_of(tg, agree)) == 2, what="the retried 同意")
    assert [(d.status, d.error) for d in deliveries_of(tg, agree)] == [(200, "answer lost"), (200, None)]
    # Processing is in arrival order: once the answer to a later 状態 is here, both retries were handled.
    tg.send_text(user, "状態")
    await tg.wait_for_messages(user, 3)
    await asyncio.sleep(0.2)
    texts = [m.text for m in tg.messages_to(user)]
    assert len(texts) == 3, texts  # terms, thanks, status: nothing twice
    assert texts[0] == terms.text and "ご登録ありがとうございます" in texts[1]
    endpoint = (await rows(hooked, Endpoint, Endpoint.address == str(user)))[0]
    events = await rows(hooked, ConsentEvent, ConsentEvent.endpoint_id == endpoint.id)
    assert [e.action for e in events] == ["grant"]
    assert len(await rows(hooked, TermsOffer)) == 1
    keys = sorted(row.event_key for row in await rows(hooked, InboundEvent, InboundEvent.channel == "telegram"))
    assert keys == sorted(f"update:{u}" for u in (ask, agree, agree + 1))


async def test_otayori_run_serves_the_webhook_and_sets_it_once_listening(tmp_path):
    """``otayori run`` itself (a subprocess, as ``make run``): it listens, then calls setWebhook; 登録 is answered."""
    from bots.sandbox.stack import free_loopback_port
    from bots.sandbox.telegram_api import TelegramEmulator
    from tests.integration.test_cli import OTAYORI, cli_env

    token = "7000000002:" + "B" * 35
    port = free_loopback_port()
    async with TelegramEmulator(token) as tg:
        env = cli_env(telegram_bot_token=token, telegram_api_url=tg.api_url, telegram_file_url=tg.file_url,
                      telegram_mode="webhook", telegram_webhook_secret=SECRET, http_port=port,
                      public_url=f"http://127.0.0.1:{port}", sender_name="山田IT事務所",
                      secret_key=sandbox_settings(tmp_path).secret_key,
                      database_url=f"sqlite+aiosqlite:///{tmp_path / 'run.sqlite3'}")
        process = await asyncio.create_subprocess_exec(*OTAYORI, "run", cwd=tmp_path, env=env,
                                                       stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            await tg.wait_until(lambda: tg.webhook_url, timeout=30.0, what="setWebhook from otayori run")
            assert tg.webhook_url == f"http://127.0.0.1:{port}/webhooks/telegram"
            user = tg.add_user(first_name="四郎").id
            update_id = tg.send_text(user, "登録")
            terms = (await tg.wait_for_messages(user, 1, timeout=10.0))[-1]
            assert "プライバシーポリシー" in terms.text
            # The server listened before setWebhook, so the very first delivery was taken.
            assert [d.status for d in deliveries_of(tg, update_id)] == [200]
        finally:
            if process.returncode is None:
                process.terminate()  # SIGTERM to the one process this test started
            _out, err = await asyncio.wait_for(process.communicate(), 30.0)
        assert process.returncode in (0, -15), err.decode(errors="replace")[-2000:]


async def test_updates_acknowledged_but_not_processed_are_processed_once_at_start(hooked):
    """A stop between the 200 and the processing leaves a stored, unprocessed update: the next start (running_telegram
    calls ``recover``) processes it, and only once."""
    from core.inbound import store_raw

    tg = hooked.telegram
    user = tg.add_user(first_name="五郎").id
    update = text_update(990_000_101, user, "とうろく")
    assert await store_raw(hooked.runtime.db, "telegram", [("update:990000101", json.dumps(update))]) == [
        "update:990000101"]
    hook = hooked.runtime.telegram_webhook
    assert await hook.recover() == 1
    assert "プライバシーポリシー" in (await tg.wait_for_messages(user, 1))[-1].text
    assert await hook.recover() == 0
    await asyncio.sleep(0.2)
    assert len(tg.messages_to(user)) == 1
    stored = await rows(hooked, InboundEvent, InboundEvent.event_key == "update:990000101")
    assert stored[0].processed_at is not None
