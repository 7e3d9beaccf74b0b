"""Bad and awkward input (issue 2 "Bad input"), each its own test, through the real stack.

LINE: the emulator signs and posts webhooks to our app; our replies go through the real line-bot-sdk client back to
the emulator, whose records are what the tests read. Telegram: the real python-telegram-bot Application polls the
emulator. The basic refusals (missing/forged signature, ``{not json``, ``{"events": []}``, one redelivery) are in
test_line_flow.py; this file covers the rest.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from sqlmodel import func, select
from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bots.sandbox import line_webhook_events as ev
from core import texts
from core.campaigns import add_campaign
from storage.models import ConsentEvent, Endpoint, InboundEvent, Subscriber, TermsOffer

TABLES = (Subscriber, Endpoint, ConsentEvent, TermsOffer, InboundEvent)
HELP_JA = texts.text("help", "ja")
HELP_EN = texts.text("help", "en")
NOT_SUBSCRIBED = texts.text("not_subscribed", "ja")
GROUP_REFUSED = texts.text("group_refused", "ja")


# ---------------------------------------------------------------------------------------------------- helpers


async def counts(stack) -> dict[str, int]:
    """Rows per table: what "no state change" is checked against."""
    async with stack.runtime.db.read() as s:
        return {m.__name__: (await s.exec(select(func.count()).select_from(m))).one() for m in TABLES}


async def inbound(stack, key: str) -> InboundEvent | None:
    async with stack.runtime.db.read() as s:
        return (await s.exec(select(InboundEvent).where(InboundEvent.event_key == key))).first()


async def until(predicate, what: str, timeout: float = 5.0) -> None:
    """Wait (bounded) for an async predicate: webhook events are processed after the 200."""
    for _ in range(int(timeout / 0.02)):
        if await predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def processed(stack, *events: dict) -> None:
    """Wait until every event (by ``webhookEventId``) is stored and processed."""

    async def done() -> bool:
        rows = [await inbound(stack, e["webhookEventId"]) for e in events]
        return all(r is not None and r.processed_at is not None for r in rows)

    await until(done, f"{len(events)} event(s) processed")


async def ledger(stack) -> list[tuple[str, str]]:
    async with stack.runtime.db.read() as s:
        rows = (await s.exec(select(ConsentEvent).order_by(ConsentEvent.id))).all()
        return [(e.action, e.source) for e in rows]


async def endpoint_state(stack, address: str) -> str | None:
    async with stack.runtime.db.read() as s:
        row = (await s.exec(select(Endpoint).where(Endpoint.address == address))).first()
        return row.state if row else None


def consent_data(message: dict) -> str:
    return message["quickReply"]["items"][0]["action"]["data"]


async def line_text(stack, user: str, text: str) -> dict:
    """``user`` sends ``text``; returns the event once it is processed and its one reply has arrived (the reply is
    sent after the transaction that marks the event processed commits)."""
    before = len(stack.line.messages_to(user))
    status, event = await stack.line.send_text(user, text)
    assert status == 200
    await processed(stack, event)
    await stack.line.wait_for_messages(user, before + 1)
    return event


async def subscribe_on_line(stack, user: str) -> None:
    line = stack.line
    await line.follow(user)
    greeting = (await line.wait_for_messages(user, 1))[-1]
    await line.postback(user, consent_data(greeting))
    await line.wait_for_messages(user, 2)
    assert await endpoint_state(stack, user) == "active"


# ---------------------------------------------------------------------------------------------------- LINE: the request


@pytest.mark.parametrize("body", [
    b"[]",
    b'{"events": "x"}',
    b'{"destination": "U0"}',
    b'{"events": [{}]}',
    b'{"events": [{"type": "message", "webhookEventId": "01H0000000000000000000000"}]}',
], ids=["list", "events-string", "no-events", "event-empty", "event-incomplete"])
async def test_json_that_is_not_a_webhook_is_refused_and_stores_nothing(stack, body):
    before = await counts(stack)
    assert await stack.line.post_raw(body, stack.line.sign(body)) == 400
    assert await counts(stack) == before


async def test_body_that_is_not_utf8_is_refused_even_when_signed(stack):
    body = '{"destination": "U0", "events": []}'.encode("utf-16")
    assert await stack.line.post_raw(body, stack.line.sign(body)) == 400


async def test_signature_of_a_reserialised_body_or_another_secret_is_refused(stack):
    line = stack.line
    user = await line.add_user()
    event = line.text_event(user, "登録 🎉")
    raw = ev.encode_payload(line.bot_user_id, [event])  # what LINE sends: UTF-8, no escapes
    ascii_copy = json.dumps(json.loads(raw)).encode("ascii")  # the same JSON with \\u escapes: other bytes
    assert await line.post_raw(ascii_copy, line.sign(raw)) == 400
    assert await line.post_raw(raw, ev.sign("another-channel-secret", raw)) == 400
    assert await line.post_raw(raw, line.sign(raw) + "x") == 400
    assert (await counts(stack))["InboundEvent"] == 0
    assert line.delivered == []


async def test_console_verify_with_destination_is_200_and_stores_nothing(stack):
    body = ev.encode_payload(stack.line.bot_user_id, [])
    assert await stack.line.post_raw(body, stack.line.sign(body)) == 200
    assert (await counts(stack))["InboundEvent"] == 0


async def test_raw_utf8_japanese_and_emoji_are_accepted_and_processed(stack):
    line = stack.line
    user = await line.add_user()
    text = "登録　🎉"  # U+3000 and an emoji outside the BMP (a UTF-16 surrogate pair), raw UTF-8 on the wire
    status, event = await line.send_text(user, text)
    assert status == 200
    assert text.encode("utf-8") in line.webhook_posts[-1].body  # signed over the raw UTF-8 bytes
    await processed(stack, event)
    row = await inbound(stack, event["webhookEventId"])
    assert json.loads(row.payload)["message"]["text"] == text  # stored exactly as sent
    terms = (await line.wait_for_messages(user, 1))[-1]
    assert "プライバシーポリシー" in terms["text"]
    async with stack.runtime.db.read() as s:
        offer = (await s.exec(select(TermsOffer).where(TermsOffer.address == user))).one()
    assert offer.campaign is None and offer.campaign_raw == "🎉"  # an unknown campaign, the raw text kept


async def test_one_request_with_several_users_out_of_order(stack):
    line = stack.line
    await add_campaign(stack.runtime.db, "seminar-2026-12", "12月セミナー")
    a, b, c = [await line.add_user(display_name=n) for n in ("一郎", "二郎", "三郎")]
    events = [line.text_event(a, "登録 seminar-2026-12"), line.follow_event(b), line.text_event(c, "解除")]
    for event, seconds_ago in zip(events, (1, 30, 5), strict=True):  # LINE does not promise order
        event["timestamp"] -= seconds_ago * 1000
    status, _ = await line.send_events(events)
    assert status == 200
    await processed(stack, *events)
    for user in (a, b, c):
        await line.wait_for_messages(user, 1)
    assert len(line.deliveries_to(a)) == len(line.deliveries_to(b)) == len(line.deliveries_to(c)) == 1
    assert "プライバシーポリシー" in line.texts_to(a)[0] and "プライバシーポリシー" in line.texts_to(b)[0]
    assert line.texts_to(c) == [NOT_SUBSCRIBED]
    assert all(d.via == "reply" for d in line.delivered)
    async with stack.runtime.db.read() as s:
        offers = {o.address: o.campaign for o in (await s.exec(select(TermsOffer))).all()}
    assert offers == {a: "seminar-2026-12", b: None}
    assert await counts(stack) == {"Subscriber": 0, "Endpoint": 0, "ConsentEvent": 0, "TermsOffer": 2,
                                   "InboundEvent": 3}


async def test_the_same_event_twice_at_once_is_handled_once(stack):
    line = stack.line
    user = await line.add_user()
    event = line.text_event(user, "登録")
    (first, _), (second, again) = await asyncio.gather(line.send_events([event]), line.redeliver(event))
    assert (first, second) == (200, 200)
    assert again["deliveryContext"]["isRedelivery"] is True
    await processed(stack, event)
    await line.wait_for_messages(user, 1)
    await asyncio.sleep(0.2)  # a second, wrong processing would reply within this time
    assert len(line.deliveries_to(user)) == 1
    assert (await counts(stack))["InboundEvent"] == 1
    assert (await counts(stack))["TermsOffer"] == 1


async def test_redelivered_consent_after_processing_grants_once(stack):
    line = stack.line
    user = await line.add_user()
    await line.follow(user)
    greeting = (await line.wait_for_messages(user, 1))[-1]
    _, press = await line.postback(user, consent_data(greeting))
    await processed(stack, press)
    await line.wait_for_messages(user, 2)
    status, _ = await line.redeliver(press)
    assert status == 200
    await asyncio.sleep(0.2)
    assert len(line.deliveries_to(user)) == 2  # the greeting and one confirmation
    assert await ledger(stack) == [("grant", "chat")]


# ---------------------------------------------------------------------------------------------------- LINE: events


async def test_standby_events_get_no_reply_and_change_nothing(stack):
    line = stack.line
    user = await line.add_user(friend=True)
    event = line.text_event(user, "登録")
    event["mode"] = "standby"  # another channel (a module) answers this chat now
    status, _ = await line.send_events([event])
    assert status == 200
    await processed(stack, event)
    await asyncio.sleep(0.2)
    assert line.delivered == []
    assert [r for r in line.requests if r.path.startswith("/v2/bot/message")] == []
    assert (await counts(stack))["TermsOffer"] == 0


async def test_block_in_standby_mode_still_withdraws(stack):
    line = stack.line
    user = await line.add_user()
    await subscribe_on_line(stack, user)
    event = line.unfollow_event(user)
    event["mode"] = "standby"
    status, _ = await line.send_events([event])
    assert status == 200
    await processed(stack, event)
    assert await endpoint_state(stack, user) == "unreachable"
    assert await ledger(stack) == [("grant", "chat"), ("withdraw", "blocked")]


async def test_unblock_shows_the_terms_again_and_does_not_resubscribe(stack):
    line = stack.line
    user = await line.add_user()
    await subscribe_on_line(stack, user)
    await line.unfollow(user)
    await until(lambda: _state_is(stack, user, "unreachable"), "the block")
    sent_before = len(line.messages_to(user))

    _, event = await line.follow(user, is_unblocked=True)
    await processed(stack, event)
    terms = (await line.wait_for_messages(user, sent_before + 1))[-1]
    assert "プライバシーポリシー" in terms["text"] and consent_data(terms).startswith("consent:")
    assert await endpoint_state(stack, user) == "unreachable"  # not resubscribed by coming back
    assert await ledger(stack) == [("grant", "chat"), ("withdraw", "blocked")]

    await line.postback(user, consent_data(terms))  # a fresh consent does subscribe again
    await until(lambda: _state_is(stack, user, "active"), "the fresh consent")
    assert await ledger(stack) == [("grant", "chat"), ("withdraw", "blocked"), ("grant", "chat")]


async def _state_is(stack, user: str, state: str) -> bool:
    return await endpoint_state(stack, user) == state


async def test_subscribe_in_a_group_is_refused_politely_and_stores_no_offer(stack):
    line = stack.line
    group, user = ev.new_group_id(), await line.add_user()
    for text in ("登録", "同意", "解除"):
        status, event = await line.send_group_text(group, user, text)
        assert status == 200
        await processed(stack, event)
    await line.wait_for_messages(group, 3)
    assert line.texts_to(group) == [GROUP_REFUSED] * 3  # replied in the group, not to the person
    assert line.deliveries_to(user) == []
    assert await counts(stack) == {"Subscriber": 0, "Endpoint": 0, "ConsentEvent": 0, "TermsOffer": 0,
                                   "InboundEvent": 3}


async def test_group_small_talk_gets_no_answer(stack):
    line = stack.line
    group, user = ev.new_group_id(), await line.add_user()
    _, event = await line.send_group_text(group, user, "今日の勉強会、楽しかったですね")
    await processed(stack, event)
    await asyncio.sleep(0.2)
    assert line.delivered == []


async def test_invalid_reply_token_falls_back_to_push(stack):
    line = stack.line
    user = await line.add_user(friend=True)
    line.fail_next("/v2/bot/message/reply", 400, {"message": "Invalid reply token"})
    await line_text(stack, user, "登録")
    deliveries = await _wait_deliveries(line, user, 1)
    assert [d.via for d in deliveries] == ["push"]
    assert "プライバシーポリシー" in deliveries[0].messages[0]["text"]
    replies = [r.status for r in line.requests if r.path == "/v2/bot/message/reply"]
    assert replies == [400]


async def test_other_reply_failures_are_logged_not_pushed(stack, caplog):
    caplog.set_level(logging.WARNING, logger="bots.line")
    line = stack.line
    user = await line.add_user(friend=True)
    line.fail_next("/v2/bot/message/reply", 500, {"message": "Internal Server Error"})
    status, event = await line.send_text(user, "ヘルプ")
    assert status == 200
    await processed(stack, event)

    async def logged() -> bool:
        return any("LINE reply failed: 500" in r.getMessage() for r in caplog.records)

    await until(logged, "the warning")
    await asyncio.sleep(0.2)
    assert line.delivered == []  # a 500 may have been delivered: no second message by push
    assert (await inbound(stack, event["webhookEventId"])).error is None


async def _wait_deliveries(line, user: str, count: int):
    await line.wait_for_messages(user, count)
    return line.deliveries_to(user)


# ---------------------------------------------------------------------------------------------------- LINE: grammar


async def test_unknown_text_gets_help_and_changes_nothing(stack):
    line = stack.line
    user = await line.add_user()
    await line_text(stack, user, "こんにちは😀　来月のセミナーはありますか?")
    assert line.texts_to(user) == [HELP_JA]
    assert await counts(stack) == {"Subscriber": 0, "Endpoint": 0, "ConsentEvent": 0, "TermsOffer": 0,
                                   "InboundEvent": 1}


async def test_a_sentence_containing_the_keyword_is_not_a_command(stack):
    line = stack.line
    user = await line.add_user()
    await subscribe_on_line(stack, user)
    await line_text(stack, user, "解除の方法を教えてください")
    assert line.texts_to(user)[-1] == HELP_JA
    assert await endpoint_state(stack, user) == "active"
    assert await ledger(stack) == [("grant", "chat")]


async def test_withdraw_from_someone_never_subscribed_is_answered_politely(stack):
    line = stack.line
    user = await line.add_user()
    await line_text(stack, user, "解除")
    await line_text(stack, user, "配信停止\u200b")  # with a zero-width space from a copy-paste
    assert line.texts_to(user) == [NOT_SUBSCRIBED, NOT_SUBSCRIBED]
    assert await counts(stack) == {"Subscriber": 0, "Endpoint": 0, "ConsentEvent": 0, "TermsOffer": 0,
                                   "InboundEvent": 2}


async def test_consent_without_terms_shown_shows_the_terms(stack):
    line = stack.line
    user = await line.add_user()
    await line_text(stack, user, "同意")
    terms = line.messages_to(user)
    assert len(terms) == 1 and "プライバシーポリシー" in terms[0]["text"]
    assert consent_data(terms[0]).startswith("consent:")
    assert await ledger(stack) == []
    assert await endpoint_state(stack, user) is None
    assert (await counts(stack))["TermsOffer"] == 1  # the terms were shown now: that offer is recorded


async def test_a_forged_consent_button_for_someone_elses_offer_subscribes_nobody(stack):
    line = stack.line
    alice, mallory = await line.add_user(), await line.add_user()
    await line_text(stack, alice, "登録")
    data = consent_data(line.messages_to(alice)[0])
    _, press = await line.postback(mallory, data)  # postback data copied from Alice's button
    await processed(stack, press)
    await line.wait_for_messages(mallory, 1)
    assert await ledger(stack) == []
    assert await endpoint_state(stack, alice) is None and await endpoint_state(stack, mallory) is None
    assert "プライバシーポリシー" in line.texts_to(mallory)[0]  # Mallory is shown the terms, nothing more


async def test_very_long_text_gets_help_and_stores_only_the_event(stack):
    line = stack.line
    user = await line.add_user()
    text = ("長文テスト🙂" * 2000)[:10_000]
    event = await line_text(stack, user, text)
    assert line.texts_to(user) == [HELP_JA]
    assert json.loads((await inbound(stack, event["webhookEventId"])).payload)["message"]["text"] == text
    assert await counts(stack) == {"Subscriber": 0, "Endpoint": 0, "ConsentEvent": 0, "TermsOffer": 0,
                                   "InboundEvent": 1}


@pytest.mark.parametrize("text", ["\u200b\u2060\ufeff", "\u3000 \u3000", "\ufe0f"],
                         ids=["format-chars", "spaces", "variation-selector"])
async def test_invisible_text_gets_help_and_stores_only_the_event(stack, text):
    line = stack.line
    user = await line.add_user()
    await line_text(stack, user, text)
    assert line.texts_to(user) == [HELP_JA]
    assert await counts(stack) == {"Subscriber": 0, "Endpoint": 0, "ConsentEvent": 0, "TermsOffer": 0,
                                   "InboundEvent": 1}


@pytest.mark.parametrize("data", ["consent", "{}", "x" * 400, "topics", "🙏"],
                         ids=["consent-no-colon", "json", "400-chars", "topics", "emoji"])
async def test_unknown_postback_gets_help_and_changes_nothing(stack, data):
    line = stack.line
    user = await line.add_user()
    status, press = await line.postback(user, data)
    assert status == 200
    await processed(stack, press)  # handled, not left failed
    assert (await line.wait_for_messages(user, 1))[-1]["text"] == HELP_JA
    assert await counts(stack) == {"Subscriber": 0, "Endpoint": 0, "ConsentEvent": 0, "TermsOffer": 0,
                                   "InboundEvent": 1}


@pytest.mark.parametrize("data", ["consent:99999999999999999999999", "consent:9223372036854775808", "consent:0",
                                  "consent:abc", "consent:"])
async def test_a_consent_button_naming_no_offer_shows_the_terms_and_subscribes_nobody(stack, data):
    line = stack.line
    user = await line.add_user()
    await line_text(stack, user, "登録")  # an offer exists: a forged button must still not consent to it
    _, press = await line.postback(user, data)
    await processed(stack, press)
    terms = (await line.wait_for_messages(user, 2))[-1]
    assert "プライバシーポリシー" in terms["text"]
    assert await ledger(stack) == [] and await endpoint_state(stack, user) is None


async def test_withdraw_with_punctuation_or_emoji_withdraws_on_line(stack):
    line = stack.line
    user = await line.add_user()
    await subscribe_on_line(stack, user)
    await line_text(stack, user, "🙅解除！")
    assert line.texts_to(user)[-1] == texts.text("withdrawn", "ja")
    assert await endpoint_state(stack, user) == "unsubscribed"


# ---------------------------------------------------------------------------------------------------- Telegram


async def test_telegram_unknown_callback_data_gets_help(stack):
    tg = stack.telegram
    user = tg.add_user().id
    # A button our bot does not make (any more): an old menu, sent through the real client as an earlier version did.
    old = await stack.runtime.telegram_bot.send_message(
        user, "古いメニュー", reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("旧", callback_data="menu:2019")]]))
    update_id = tg.press_button(user, old.message_id, "menu:2019")
    await tg.wait_for_callback_answer(update_id)
    assert (await tg.wait_for_messages(user, 2))[-1].text == HELP_JA
    assert (await inbound(stack, f"update:{update_id}")).processed_at is not None
    assert {k: v for k, v in (await counts(stack)).items() if k != "InboundEvent"} == \
           {"Subscriber": 0, "Endpoint": 0, "ConsentEvent": 0, "TermsOffer": 0}


@pytest.mark.parametrize("text", ["/broadcast", "/send", "/stats", "/cancel", "配信"])
async def test_telegram_admin_verbs_from_a_reader_get_the_japanese_help(stack, text):
    user = stack.telegram.add_user(language_code="ja").id
    assert await tg_reply(stack, user, text) == HELP_JA


async def test_telegram_withdraw_with_a_full_stop_withdraws(stack):
    tg = stack.telegram
    user = tg.add_user().id
    terms = await tg_reply(stack, user, "登録。")
    assert "プライバシーポリシー" in terms
    message = tg.messages_to(user)[-1]
    update_id = tg.press_button(user, message.message_id, message.buttons[0]["callback_data"])
    await tg.wait_for_callback_answer(update_id)
    await tg.wait_for_messages(user, 2)
    assert await endpoint_state(stack, str(user)) == "active"
    assert await tg_reply(stack, user, "解除。") == texts.text("withdrawn", "ja")
    assert await endpoint_state(stack, str(user)) == "unsubscribed"
    assert await ledger(stack) == [("grant", "chat"), ("withdraw", "chat")]


async def tg_reply(stack, user_id: int, text: str) -> str:
    tg = stack.telegram
    sent = len(tg.messages_to(user_id))
    tg.send_text(user_id, text)
    return (await tg.wait_for_messages(user_id, sent + 1))[-1].text


@pytest.mark.parametrize("text", ["/foo bar", "\u200b\u2060", "こんにちは"],
                         ids=["unknown-command", "invisible", "small-talk"])
async def test_telegram_unknown_input_gets_help_and_changes_nothing(stack, text):
    user = stack.telegram.add_user().id
    before = await counts(stack)
    reply = await tg_reply(stack, user, text)
    assert reply in (HELP_JA, HELP_EN)
    after = await counts(stack)
    assert {k: v for k, v in after.items() if k != "InboundEvent"} == \
           {k: v for k, v in before.items() if k != "InboundEvent"}


async def test_telegram_withdraw_and_consent_from_a_stranger(stack):
    user = stack.telegram.add_user().id
    assert await tg_reply(stack, user, "/stop") == NOT_SUBSCRIBED
    terms = await tg_reply(stack, user, "同意")
    assert "プライバシーポリシー" in terms
    assert await ledger(stack) == []
    assert await endpoint_state(stack, str(user)) is None
