"""The rehearsal sandbox's page and JSON API (issue 6 item 7): chatting as LINE and Telegram users through the real
bots, SDKs and database, acting as the admin, and reading the SMTP sink's mails. With credentials (the ordinary
stack, which has the emulators' ones), ``/sandbox`` does not exist."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlmodel import select

from bots.sandbox.rehearsal_page import ADMIN_LINE_ID, ADMIN_TELEGRAM_ID
from bots.sandbox.rehearsal_run import rehearsal_settings
from bots.sandbox.stack import free_loopback_port, running_stack
from core.texts import CONSENT_BUTTON
from storage.models import ConsentEvent, Endpoint

JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def sandbox(tmp_path):
    async with running_stack(rehearsal_settings(tmp_path, free_loopback_port()), sandbox_page=True) as running:
        yield running


async def state_of(stack, channel: str, address: str) -> str | None:
    async with stack.runtime.db.read() as session:
        row = (await session.exec(select(Endpoint).where(Endpoint.channel == channel,
                                                         Endpoint.address == address))).first()
        return row.state if row else None


async def chat_until(client, person: dict, predicate, what: str) -> list[dict]:
    """Poll the chat endpoint (as the page does) until ``predicate(messages)``; bounded at 10 s."""
    messages: list[dict] = []
    for _ in range(200):
        answer = await client.get("/sandbox/api/chat", params={"platform": person["platform"], "id": person["id"]})
        assert answer.status_code == 200, answer.text
        messages = answer.json()["messages"]
        if predicate(messages):
            return messages
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}: {messages}")


def bot_texts(messages: list[dict]) -> list[str]:
    return [m["text"] for m in messages if m["from"] == "bot"]


async def subscribe(client, person: dict) -> None:
    """登録, then press the consent button shown under the terms, through the sandbox API."""
    said = await client.post("/sandbox/api/say", json={**person, "text": "登録"})
    assert said.status_code == 200, said.text
    asked = {"from": "you", "text": "登録", "buttons": []}  # the user's own line is shown too

    def terms_after_asking(ms: list[dict]) -> bool:  # on LINE the follow greeting showed terms before 登録
        return asked in ms and any(any(b["label"] == CONSENT_BUTTON["ja"] for b in m["buttons"])
                                   for m in ms[ms.index(asked) + 1:])

    messages = await chat_until(client, person, terms_after_asking, "the terms with the button after 登録")
    terms = [m for m in messages if any(b["label"] == CONSENT_BUTTON["ja"] for b in m["buttons"])][-1]
    assert "プライバシーポリシー" in terms["text"]
    button = next(b for b in terms["buttons"] if b["label"] == CONSENT_BUTTON["ja"])
    pressed = await client.post("/sandbox/api/press", json={**person, **button})
    assert pressed.status_code == 200, pressed.text
    await chat_until(client, person, lambda ms: any("ご登録ありがとうございます" in t for t in bot_texts(ms)),
                     "the welcome")


async def subscribe_and_leave(stack, platform: str, name: str) -> None:
    async with httpx.AsyncClient(base_url=stack.web_url) as client:
        page = await client.get("/sandbox")
        assert page.status_code == 200 and "リハーサル" in page.text and 'lang="ja"' in page.text
        added = await client.post("/sandbox/api/people", json={"platform": platform, "name": name})
        assert added.status_code == 200, added.text
        person = added.json()
        assert person["name"] == " ".join(name.split()) and not person["admin"]

        await subscribe(client, person)
        assert await state_of(stack, platform, person["id"]) == "active"

        await client.post("/sandbox/api/say", json={**person, "text": "　解除　"})  # U+3000 around it
        for _ in range(200):
            if await state_of(stack, platform, person["id"]) == "unsubscribed":
                break
            await asyncio.sleep(0.05)
        assert await state_of(stack, platform, person["id"]) == "unsubscribed"
    async with stack.runtime.db.read() as session:
        actions = [e.action for e in (await session.exec(select(ConsentEvent).order_by(ConsentEvent.id))).all()]
    assert actions[-2:] == ["grant", "withdraw"]


async def test_line_user_subscribes_and_leaves_in_the_sandbox(sandbox):
    await subscribe_and_leave(sandbox, "line", "  山田　花子 ")
    assert any("プライバシーポリシー" in t for t in sandbox.line.texts_to(
        sandbox.line.delivered[0].user_id))  # the follow greeting went through the real LINE SDK


async def test_telegram_user_subscribes_and_leaves_in_the_sandbox(sandbox):
    await subscribe_and_leave(sandbox, "telegram", "佐藤 太郎😀")
    assert any(call.method == "answerCallbackQuery" for call in sandbox.telegram.calls)


async def test_email_from_the_chat_lands_in_the_sandbox_inbox(sandbox):
    async with httpx.AsyncClient(base_url=sandbox.web_url) as client:
        assert (await client.get("/sandbox/api/inbox")).json() == {"mails": []}
        person = (await client.post("/sandbox/api/people", json={"platform": "telegram", "name": "鈴木"})).json()
        await subscribe(client, person)
        await client.post("/sandbox/api/say", json={**person, "text": "メール a@example.com"})
        mails: list[dict] = []
        for _ in range(200):
            mails = (await client.get("/sandbox/api/inbox")).json()["mails"]
            if mails:
                break
            await asyncio.sleep(0.05)
    assert len(mails) == 1 and mails[0]["to"] == "a@example.com"
    assert "リハーサル" in mails[0]["text"] and "/email/confirm/" in mails[0]["text"]
    assert await state_of(sandbox, "email", "a@example.com") == "pending"


async def test_the_sandbox_admin_is_an_admin_on_both_platforms(sandbox):
    assert sandbox.settings.telegram_admin_ids == [ADMIN_TELEGRAM_ID]
    assert sandbox.settings.line_admin_user_ids == [ADMIN_LINE_ID]
    async with httpx.AsyncClient(base_url=sandbox.web_url) as client:
        people = (await client.get("/sandbox/api/people")).json()["people"]
        assert {(p["platform"], p["id"]) for p in people if p["admin"]} == {
            ("telegram", str(ADMIN_TELEGRAM_ID)), ("line", ADMIN_LINE_ID)}
        admin = next(p for p in people if p["platform"] == "telegram")
        await client.post("/sandbox/api/say", json={**admin, "text": "配信"})
        await chat_until(client, admin, lambda ms: any("下書き" in t for t in bot_texts(ms)), "a new draft")


async def test_the_sandbox_api_refuses_bad_requests(sandbox):
    async with httpx.AsyncClient(base_url=sandbox.web_url) as client:
        # A plain form post (what another site could make a browser send) is refused.
        form = await client.post("/sandbox/api/people", data={"platform": "line", "name": "x"})
        assert form.status_code == 400
        for body in ({"platform": "sms", "name": "x"}, {"platform": "line", "name": "   "},
                     {"platform": "line", "name": "長" * 41}, {"platform": "line"}):
            assert (await client.post("/sandbox/api/people", json=body)).status_code == 400, body
        unknown = await client.post("/sandbox/api/say", json={"platform": "line", "id": "Uxx", "text": "登録"})
        assert unknown.status_code == 400 and unknown.json()["error"] == "unknown person"
        person = (await client.post("/sandbox/api/people", json={"platform": "telegram", "name": "<b>太郎</b>"})).json()
        assert person["name"] == "<b>太郎</b>"  # kept as text; the page sets it with textContent
        missing = await client.post("/sandbox/api/press", json={**person, "data": "nope", "label": "x",
                                                                "message_id": 999})
        assert missing.status_code == 400
        empty = await client.post("/sandbox/api/say", json={**person, "text": " "})
        assert empty.status_code == 400
        page = await client.get("/sandbox")
        assert "<b>太郎</b>" not in page.text


async def test_no_sandbox_when_credentials_are_set(stack):
    """The ordinary stack has channel credentials: /sandbox and its API do not exist."""
    async with httpx.AsyncClient(base_url=stack.web_url) as client:
        for path in ("/sandbox", "/sandbox/api/people", "/sandbox/api/inbox"):
            answer = await client.get(path)
            assert answer.status_code == 404, path
            assert "ページが見つかりません" in answer.text
        assert (await client.post("/sandbox/api/say", json={"platform": "line", "id": "U", "text": "登録"})
                ).status_code in (404, 405)
