"""The landing page's email form: Japanese input, no disclosure of who is subscribed, oversized bodies."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
from sqlmodel import select

from storage.models import Endpoint, InboundEvent


def code_and_path(stack, address):
    message = [m for m in stack.smtp.messages if address in m.rcpt_tos][-1]
    text = message.parsed().get_body(("plain",)).get_content()
    url = re.search(r"https?://\S+/email/confirm/[A-Za-z0-9._-]+", text).group(0)
    return url.split(stack.web_url, 1)[1]


async def test_full_width_address_is_accepted_like_in_the_chat(stack):
    async with httpx.AsyncClient(base_url=stack.web_url) as client:
        answer = await client.post("/join", data={"address": "ｈａｎａｋｏ＠ｅｘａｍｐｌｅ．ｊｐ"})
    assert answer.status_code == 200 and "hanako@example.jp" in answer.text
    assert [m.rcpt_tos for m in stack.smtp.messages] == [("hanako@example.jp",)]


async def test_form_does_not_reveal_who_is_subscribed(stack):
    async with httpx.AsyncClient(base_url=stack.web_url) as client:
        await client.post("/join", data={"address": "known@example.jp"})
        await client.post(code_and_path(stack, "known@example.jp"))
        known = await client.post("/join", data={"address": "known@example.jp"})
        fresh = await client.post("/join", data={"address": "fresh@example.jp"})
    strip = lambda page: page.text.replace("known@example.jp", "X").replace("fresh@example.jp", "X")  # noqa: E731
    assert known.status_code == fresh.status_code == 200
    assert strip(known) == strip(fresh)


async def test_oversized_or_odd_bodies_get_a_japanese_page(stack):
    async with httpx.AsyncClient(base_url=stack.web_url) as client:
        huge = await client.post("/join", data={"address": "a" * 2_000_000})
        files = await client.post("/join", files={"address": ("x.txt", b"taro@example.jp")})
    assert huge.status_code == 413 and 'lang="ja"' in huge.text
    assert files.status_code == 400 and 'lang="ja"' in files.text
    async with stack.runtime.db.read() as s:
        assert (await s.exec(select(Endpoint).where(Endpoint.channel == "email"))).all() == []


async def test_unknown_line_event_type_is_recorded_without_a_crash(stack):
    line = stack.line
    user = await line.add_user()
    event = line.text_event(user, "x")
    event["type"] = "someFutureEvent"
    body = json.dumps({"destination": "x", "events": [event]}, ensure_ascii=False).encode()
    assert await line.post_raw(body, line.sign(body)) == 200
    row = None
    for _ in range(200):  # bounded: the event is processed after the 200 answer
        async with stack.runtime.db.read() as s:
            row = (await s.exec(select(InboundEvent))).first()
        if row is not None and row.processed_at is not None:
            break
        await asyncio.sleep(0.05)
    assert row is not None and row.processed_at is not None and "someFutureEvent" in row.error


async def test_huge_webhook_body_is_refused_unread(stack):
    body = b'{"events": [' + b" " * 1_100_000 + b"]}"
    assert await stack.line.post_raw(body, stack.line.sign(body)) == 413
