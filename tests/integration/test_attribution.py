"""Campaign attribution from every entry point (issue 6 item 4): Telegram ``/start CODE``, LINE ``登録 CODE`` and the
landing page form. Payloads that are not a registered code — wrong alphabet, too long, unknown, a deep link with
``==`` padding or dots — subscribe with campaign unknown (None), the raw text kept (at most 200 characters) in the
evidence; nothing crashes. ``otayori stats`` counts sign-ups and withdrawals per campaign and channel."""

from __future__ import annotations

import pytest
from sqlmodel import select

from core.campaigns import RAW_LIMIT, add_campaign
from core.stats import collect_stats
from storage.models import ConsentEvent, Endpoint, TermsOffer

CODE = "seminar-2026-12"

# (payload as sent after /start or 登録, the campaign recorded, the raw text kept in the evidence)
PAYLOADS = [
    pytest.param(CODE, CODE, None, id="registered"),
    pytest.param("SEMINAR-2026-12", CODE, None, id="registered-other-case"),
    pytest.param("UNKNOWN", None, "UNKNOWN", id="unknown-code"),
    pytest.param("c2VtaW5hci0yMDI2LTEy==", None, "c2VtaW5hci0yMDI2LTEy==", id="base64-padding"),
    pytest.param("seminar.2026.12", None, "seminar.2026.12", id="dots"),
    pytest.param("a" * 65, None, "a" * 65, id="65-characters"),
    pytest.param("東京セミナー", None, "東京セミナー", id="japanese"),
    pytest.param("x" * 3000, None, "x" * RAW_LIMIT, id="3000-characters"),
]


async def grant_of(stack, channel: str, address: str) -> ConsentEvent:
    async with stack.runtime.db.read() as session:
        return (await session.exec(select(ConsentEvent).where(
            ConsentEvent.channel == channel, ConsentEvent.action == "grant"))).one()


async def endpoint(stack, channel: str, address: str) -> Endpoint:
    async with stack.runtime.db.read() as session:
        return (await session.exec(select(Endpoint).where(
            Endpoint.channel == channel, Endpoint.address == address))).one()


@pytest.mark.parametrize("payload, campaign, raw", PAYLOADS)
async def test_telegram_start_payload(stack, payload: str, campaign: str | None, raw: str | None):
    await add_campaign(stack.runtime.db, CODE, "12月 東京セミナー")
    tg = stack.telegram
    user = tg.add_user(first_name="花子").id
    tg.send_text(user, f"/start {payload}")
    terms = (await tg.wait_for_messages(user, 1))[-1]
    assert "プライバシーポリシー" in terms.text  # the terms, whatever the payload
    tg.press_button(user, terms.message_id, terms.buttons[0]["callback_data"])
    done = (await tg.wait_for_messages(user, 2))[-1]
    assert "ご登録ありがとうございます" in done.text  # the person can still subscribe
    assert (await endpoint(stack, "telegram", str(user))).state == "active"
    grant = await grant_of(stack, "telegram", str(user))
    assert grant.campaign == campaign
    assert grant.evidence.get("campaign_raw") == raw


@pytest.mark.parametrize("payload, campaign, raw", PAYLOADS)
async def test_line_subscribe_keyword_with_campaign(stack, payload: str, campaign: str | None, raw: str | None):
    await add_campaign(stack.runtime.db, CODE, "12月 東京セミナー")
    line = stack.line
    user = await line.add_user(display_name="参加者")
    await line.send_text(user, f"登録　{payload}")  # an ideographic space, as a Japanese keyboard types it
    terms = (await line.wait_for_messages(user, 1))[-1]
    assert "プライバシーポリシー" in terms["text"]
    await line.postback(user, terms["quickReply"]["items"][0]["action"]["data"])
    done = (await line.wait_for_messages(user, 2))[-1]
    assert "ご登録ありがとうございます" in done["text"]
    grant = await grant_of(stack, "line", user)
    assert grant.campaign == campaign
    assert grant.evidence.get("campaign_raw") == raw
    async with stack.runtime.db.read() as session:
        offer = (await session.exec(select(TermsOffer).where(TermsOffer.address == user))).one()
    assert (offer.campaign, offer.campaign_raw) == (campaign, raw)


async def test_stats_count_sign_ups_and_withdrawals_per_campaign_and_channel(stack):
    await add_campaign(stack.runtime.db, CODE, "12月 東京セミナー")
    tg, line = stack.telegram, stack.line
    for text in (f"/start {CODE}", "/start UNKNOWN", f"/start {CODE}"):
        user = tg.add_user().id
        tg.send_text(user, text)
        terms = (await tg.wait_for_messages(user, 1))[-1]
        tg.press_button(user, terms.message_id, terms.buttons[0]["callback_data"])
        await tg.wait_for_messages(user, 2)
    leaver = await line.add_user()
    await line.send_text(leaver, f"登録 {CODE}")
    terms = (await line.wait_for_messages(leaver, 1))[-1]
    await line.postback(leaver, terms["quickReply"]["items"][0]["action"]["data"])
    await line.wait_for_messages(leaver, 2)
    await line.send_text(leaver, "解除")
    await line.wait_for_messages(leaver, 3)

    stats = await collect_stats(stack.runtime.db, stack.settings)
    assert stats.signups_by_campaign == {(CODE, "telegram"): 2, (None, "telegram"): 1, (CODE, "line"): 1}
    assert stats.withdrawals_by_campaign == {(CODE, "line"): 1}
