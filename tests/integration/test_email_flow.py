"""Email end to end: double opt-in from the chat and the web, newsletters and one-click unsubscribe, against a real
SMTP server (aiosmtpd) whose received bytes are parsed back."""

from __future__ import annotations

import email.policy
import re
from email import message_from_bytes

import httpx
from sqlmodel import select

from bots.broadcasting import broadcast_with
from core.broadcast import IssueDraft
from core.campaigns import add_campaign
from storage.models import ConsentEvent, Endpoint

ISSUE = IssueDraft("①㈱髙😀ｶﾞ 12月号: パスワード管理とバックアップ、発表練習会のお知らせ",
                   "**二段階認証**を有効に。\n\n- 3-2-1 バックアップ\n- 髙橋さんの㈱①😀ｶﾞ")


async def ledger(stack):
    async with stack.runtime.db.read() as s:
        return list((await s.exec(select(ConsentEvent).order_by(ConsentEvent.id))).all())


async def endpoint(stack, address):
    async with stack.runtime.db.read() as s:
        return (await s.exec(select(Endpoint).where(Endpoint.address == address))).first()


def mails_to(stack, address):
    return [m for m in stack.smtp.messages if address in m.rcpt_tos]


def confirmation_parts(message) -> tuple[str, str]:
    text = message.parsed().get_body(("plain",)).get_content()
    code = re.search(r"確認コード:\s*(\d{6})(?!\d)", text).group(1)  # the link above may hold 6 digits too
    url = re.search(r"https?://\S+/email/confirm/[A-Za-z0-9._-]+", text).group(0)
    return code, url


async def telegram_subscriber(stack) -> int:
    tg = stack.telegram
    user = tg.add_user().id
    tg.send_text(user, "登録")
    terms = (await tg.wait_for_messages(user, 1))[-1]
    tg.press_button(user, terms.message_id, terms.buttons[0]["callback_data"])
    await tg.wait_for_messages(user, 2)
    return user


async def test_chat_double_opt_in_then_newsletter_with_law_and_rfc8058(stack):
    tg = stack.telegram
    user = await telegram_subscriber(stack)
    tg.send_text(user, "メール　Ｔａｒｏ＠Ｅｘａｍｐｌｅ．ｊｐ")
    reply = (await tg.wait_for_messages(user, 3))[-1]
    assert "taro@example.jp" in reply.text and "6桁" in reply.text
    assert (await endpoint(stack, "taro@example.jp")).state == "pending"
    [mail] = mails_to(stack, "taro@example.jp")
    code, _url = confirmation_parts(mail)
    tg.send_text(user, code)
    done = (await tg.wait_for_messages(user, 4))[-1]
    assert "確認しました" in done.text
    assert (await endpoint(stack, "taro@example.jp")).state == "active"
    assert [(e.action, e.channel, e.source) for e in await ledger(stack)][-1] == ("confirm", "email", "chat")
    tg.send_text(user, "状態")
    status = (await tg.wait_for_messages(user, 5))[-1]
    assert "メール" in status.text and "配信中" in status.text

    result = await broadcast_with(stack.runtime, ISSUE)
    assert result.report.counts[("email", "sent")] == 1
    raw = mails_to(stack, "taro@example.jp")[-1].data
    parsed = message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == ISSUE.title  # UTF-8 round trip of ①㈱髙😀ｶﾞ
    assert parsed.get_content_type() == "multipart/alternative"
    unsubscribe = parsed["List-Unsubscribe"]
    assert unsubscribe.startswith("<http") and "/unsubscribe/" in unsubscribe
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    settings = stack.settings
    for part in ("plain", "html"):
        body = parsed.get_body((part,)).get_content()
        assert "①㈱髙😀ｶﾞ" in body or "髙橋さんの㈱①😀ｶﾞ" in body
        for item in (settings.sender_name, settings.sender_postal_address, settings.sender_contact):
            assert item in body, (part, item)
        assert "配信停止" in body and "/unsubscribe/" in body
    for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        assert b"=?utf-8?q??=" not in line.lower()


async def test_web_form_double_opt_in_with_campaign(stack):
    await add_campaign(stack.runtime.db, "seminar-2026-12", "12月 東京セミナー")
    async with httpx.AsyncClient(base_url=stack.web_url, headers={"User-Agent": "pytest-browser"}) as client:
        page = await client.get("/join/seminar-2026-12")
        assert page.status_code == 200 and "12月 東京セミナー" in page.text and 'action="/join/seminar-2026-12"' in page.text
        bad = await client.post("/join/seminar-2026-12", data={"address": "hanako＠"})
        assert bad.status_code == 400 and stack.smtp.messages == []
        sent = await client.post("/join/seminar-2026-12", data={"address": "Hanako@Example.jp"})
        assert sent.status_code == 200 and "確認メール" in sent.text
        _code, url = confirmation_parts(mails_to(stack, "hanako@example.jp")[0])
        path = url.split(stack.web_url, 1)[1]
        shown = await client.get(path)
        assert shown.status_code == 200 and "登録を確定する" in shown.text
        assert (await endpoint(stack, "hanako@example.jp")).state == "pending"  # GET changed nothing
        confirmed = await client.post(path)
        assert confirmed.status_code == 200 and "完了" in confirmed.text
        again = await client.post(path)
        assert again.status_code == 400  # single-use
        forged = await client.post(path[:-3] + "abc")
        assert forged.status_code == 400
    assert (await endpoint(stack, "hanako@example.jp")).state == "active"
    event = (await ledger(stack))[-1]
    assert (event.action, event.source, event.campaign) == ("confirm", "web", "seminar-2026-12")
    assert event.evidence["confirm_user_agent"] == "pytest-browser" and event.evidence["confirm_ip"] == "127.0.0.1"


async def confirmed_web_address(stack, client, address):
    await client.post("/join", data={"address": address})
    _code, url = confirmation_parts(mails_to(stack, address)[-1])
    await client.post(url.split(stack.web_url, 1)[1])
    return await endpoint(stack, address)


async def test_one_click_unsubscribe_variants(stack):
    async with httpx.AsyncClient(base_url=stack.web_url) as client:
        bodies = [
            {"data": {"List-Unsubscribe": "One-Click"}},
            {"files": {"List-Unsubscribe": (None, "One-Click")}},
            {"content": b""},
        ]
        for index, body in enumerate(bodies):
            address = f"reader{index}@example.jp"
            row = await confirmed_web_address(stack, client, address)
            token = stack.runtime.optouts.unsubscribe_url(row.id).rsplit("/", 1)[1]
            page = await client.get(f"/unsubscribe/{token}")
            assert page.status_code == 200 and address in page.text
            assert (await endpoint(stack, address)).state == "active"  # the GET changed nothing
            answer = await client.post(f"/unsubscribe/{token}", **body)
            assert answer.status_code == 200 and not answer.is_redirect
            assert (await endpoint(stack, address)).state == "unsubscribed"
            repeat = await client.post(f"/unsubscribe/{token}", **body)
            assert repeat.status_code == 200
            event = (await ledger(stack))[-1]
            assert (event.action, event.source, event.endpoint_id) == ("withdraw", "one_click", row.id)
        forged = await client.post("/unsubscribe/" + token[:-4] + "AAAA")
        assert forged.status_code == 400


async def test_unsubscribe_page_button_can_stop_every_channel(stack):
    tg = stack.telegram
    user = await telegram_subscriber(stack)
    tg.send_text(user, "メール both@example.jp")
    await tg.wait_for_messages(user, 3)
    code, _ = confirmation_parts(mails_to(stack, "both@example.jp")[0])
    tg.send_text(user, code)
    await tg.wait_for_messages(user, 4)
    row = await endpoint(stack, "both@example.jp")
    token = stack.runtime.optouts.unsubscribe_url(row.id).rsplit("/", 1)[1]
    async with httpx.AsyncClient(base_url=stack.web_url) as client:
        page = await client.get(f"/unsubscribe/{token}")
        assert "すべての配信を停止する" in page.text and "Telegram" in page.text
        answer = await client.post(f"/unsubscribe/{token}", data={"scope": "all"})
        assert answer.status_code == 200
    assert (await endpoint(stack, "both@example.jp")).state == "unsubscribed"
    assert (await endpoint(stack, str(user))).state == "unsubscribed"
    sources = {(e.channel, e.source) for e in (await ledger(stack))[-2:]}
    assert sources == {("email", "web"), ("telegram", "web")}


async def test_bounce_marks_unreachable_and_quota_defers_the_rest(stack):
    async with httpx.AsyncClient(base_url=stack.web_url) as client:
        for name in ("gone", "ok1", "ok2"):
            await confirmed_web_address(stack, client, f"{name}@example.jp")
    stack.smtp.fail("rcpt", "550 5.1.1 <gone@example.jp>: Recipient address rejected: User unknown",
                    recipient="gone@example.jp")
    result = await broadcast_with(stack.runtime, IssueDraft("号外", "本文"))
    assert result.report.counts.get(("email", "sent")) == 2
    assert result.report.counts.get(("email", "failed")) == 1
    assert (await endpoint(stack, "gone@example.jp")).state == "unreachable"
    stack.smtp.clear_faults()
    stack.smtp.fail("rcpt", "550 5.4.5 Daily sending quota exceeded")
    result = await broadcast_with(stack.runtime, IssueDraft("号外2", "本文"))
    assert result.report.counts.get(("email", "deferred")) == 2
    assert result.summary.notices and result.summary.notices[0].channel == "email"
    for name in ("ok1", "ok2"):
        assert (await endpoint(stack, f"{name}@example.jp")).state == "active"  # nobody marked bounced
