"""LINE first contact (issue 6 item 5), end to end: the emulator posts signed webhooks to our app, the real
line-bot-sdk replies. Friendship is known from follow/unfollow only (core.line_friends); a consent from a user known
not to be a friend is granted but waits in ``pending`` with the add-friend link, and their follow activates it without
a second ledger event; unknown friendship behaves as before."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlmodel import select

from bots.broadcasting import broadcast_with
from core.broadcast import IssueDraft
from storage.models import ConsentEvent, Endpoint, InboundEvent, LineFriend, TermsOffer
from tests.integration.test_line_flow import quick_reply_data, subscribe, until

ADD_FRIEND = "https://line.me/R/ti/p/%40otayori-sandbox"  # the emulator's basic id, from GET /v2/bot/info
ISSUE = IssueDraft("1月のお便り", "新年の勉強会のお知らせです。")


async def rows(stack, model, *where):
    async with stack.runtime.db.read() as s:
        return list((await s.exec(select(model).where(*where))).all())


async def endpoint_of(stack, user: str) -> Endpoint | None:
    found = await rows(stack, Endpoint, Endpoint.channel == "line", Endpoint.address == user)
    return found[0] if found else None


async def friendship(stack, user: str) -> LineFriend | None:
    found = await rows(stack, LineFriend, LineFriend.user_id == user)
    return found[0] if found else None


async def test_follow_greets_with_the_terms_and_a_consent_button(stack):
    line = stack.line
    user = await line.add_user(display_name="山田　花子")
    status, event = await line.follow(user)
    assert status == 200
    greeting = (await line.wait_for_messages(user, 1))[0]
    assert "プライバシーポリシー" in greeting["text"] and "解除" in greeting["text"]
    assert quick_reply_data(greeting).startswith("consent:")
    known = await friendship(stack, user)
    assert known is not None and known.friend is True and known.webhook_event_id == event["webhookEventId"]
    assert await endpoint_of(stack, user) is None  # a follow alone subscribes nobody


async def test_consent_from_a_known_non_friend_waits_for_the_follow(stack):
    line = stack.line
    reader = await line.add_user(display_name="既存読者")
    await subscribe(stack, reader)  # an active subscriber, so the broadcast has someone to reach
    user = await line.add_user(display_name="佐藤😀")
    await line.follow(user)
    await line.unfollow(user)
    await until(lambda: _friend_is(stack, user, False), "the unfollow")

    await line.send_text(user, "登録　ＳＥＭＩＮＡＲ")  # U+3000 and full-width: an unknown campaign
    terms = (await line.wait_for_messages(user, 2))[-1]
    status, consent_event = await line.postback(user, quick_reply_data(terms))
    assert status == 200
    answer = (await line.wait_for_messages(user, 3))[-1]
    assert ADD_FRIEND in answer["text"] and "友だち追加" in answer["text"]
    endpoint = await endpoint_of(stack, user)
    assert endpoint is not None and endpoint.state == "pending"
    events = await rows(stack, ConsentEvent, ConsentEvent.endpoint_id == endpoint.id)
    assert [e.action for e in events] == ["grant"]
    grant = events[0]
    assert grant.evidence["awaiting_friendship"] is True
    assert grant.evidence["webhookEventId"] == consent_event["webhookEventId"]
    assert grant.evidence["consent_via"] == "button" and grant.wording_sha256

    # 登録 again while waiting: the link again, no new offer; the broadcast skips the pending endpoint.
    offers = len(await rows(stack, TermsOffer, TermsOffer.address == user))
    await line.send_text(user, "登録")
    assert ADD_FRIEND in (await line.wait_for_messages(user, 4))[-1]["text"]
    assert len(await rows(stack, TermsOffer, TermsOffer.address == user)) == offers
    result = await broadcast_with(stack.runtime, ISSUE)
    assert result is not None and result.report.by_status() == {"sent": 1}
    assert not any("1月のお便り" in text for text in line.texts_to(user))

    status, follow = await line.follow(user, is_unblocked=True)
    assert status == 200
    welcome = (await line.wait_for_messages(user, 5))[-1]
    assert "友だち追加ありがとうございます" in welcome["text"] and "quickReply" not in welcome
    assert (await endpoint_of(stack, user)).state == "active"
    events = await rows(stack, ConsentEvent, ConsentEvent.endpoint_id == endpoint.id)
    assert [e.id for e in events] == [grant.id]  # activation rests on the earlier grant: no invented consent
    assert (await friendship(stack, user)).webhook_event_id == follow["webhookEventId"]

    # LINE redelivers the follow: processed once (no second welcome, nothing new in the ledger).
    assert (await line.redeliver(follow))[0] == 200
    await asyncio_sleep_a_little()
    assert len(line.messages_to(user)) == 5
    assert len(await rows(stack, ConsentEvent, ConsentEvent.endpoint_id == endpoint.id)) == 1

    result = await broadcast_with(stack.runtime, IssueDraft("2月のお便り", "二月号です。"))
    assert result is not None and result.report.by_status() == {"sent": 2}
    assert any("2月のお便り" in text for text in line.texts_to(user))

    await line.unfollow(user)  # a block is a withdrawal, as before
    await until(lambda: _state_is(stack, user, "unreachable"), "the block")
    events = await rows(stack, ConsentEvent, ConsentEvent.endpoint_id == endpoint.id)
    assert [(e.action, e.source) for e in events] == [("grant", "chat"), ("withdraw", "blocked")]


async def test_a_waiting_consent_withdrawn_is_not_activated_by_a_later_follow(stack):
    line = stack.line
    user = await line.add_user()
    await line.unfollow(user)  # known not a friend, never subscribed: remembered all the same
    await until(lambda: _friend_is(stack, user, False), "the unfollow")
    await line.send_text(user, "subscribe")
    await line.postback(user, quick_reply_data((await line.wait_for_messages(user, 1))[-1]))
    await until(lambda: _state_is(stack, user, "pending"), "the waiting consent")
    await line.send_text(user, "配信停止")
    await until(lambda: _state_is(stack, user, "unsubscribed"), "the withdrawal")
    await line.follow(user, is_unblocked=True)
    greeting = (await line.wait_for_messages(user, 4))[-1]
    assert quick_reply_data(greeting).startswith("consent:")  # the terms again: a fresh consent is needed
    assert (await endpoint_of(stack, user)).state == "unsubscribed"


async def test_unknown_friendship_subscribes_at_once_as_before(stack):
    line = stack.line
    user = await line.add_user()  # wrote without a follow we saw: friendship unknown
    await line.send_text(user, "とうろく")
    terms = (await line.wait_for_messages(user, 1))[-1]
    await line.postback(user, quick_reply_data(terms))
    assert "ご登録ありがとうございます" in (await line.wait_for_messages(user, 2))[-1]["text"]
    assert (await endpoint_of(stack, user)).state == "active"
    assert await friendship(stack, user) is None


async def test_follow_of_an_unknown_user_redelivered_is_processed_once(stack):
    line = stack.line
    user = "U" + "0123456789abcdef" * 2  # never registered with the emulator nor known to us
    event = line.follow_event(user)
    status, _ = await line.send_events([event])
    assert status == 200
    assert len(await line.wait_for_messages(user, 1)) == 1
    assert (await line.redeliver(event))[0] == 200
    assert (await line.send_events([event]))[0] == 200  # the same event again, not even marked as a redelivery
    await asyncio_sleep_a_little()
    assert len(line.messages_to(user)) == 1
    assert len(await rows(stack, TermsOffer, TermsOffer.address == user)) == 1
    assert len(await rows(stack, InboundEvent, InboundEvent.event_key == event["webhookEventId"])) == 1
    assert (await friendship(stack, user)).friend is True


async def test_an_older_unfollow_arriving_late_does_not_undo_a_newer_follow(stack):
    line = stack.line
    user = await line.add_user()
    follow = line.follow_event(user)
    late = line.unfollow_event(user)
    late["timestamp"] = follow["timestamp"] - int(timedelta(minutes=5).total_seconds() * 1000)
    assert (await line.send_events([follow, late]))[0] == 200  # one request, out of order (reference/line.md)
    await until(lambda: _processed(stack, late["webhookEventId"]), "both events")
    known = await friendship(stack, user)
    assert known.friend is True and known.webhook_event_id == follow["webhookEventId"]


async def asyncio_sleep_a_little() -> None:
    """Events are processed after the 200: give a (wrongly) repeated event the time to show its effect."""
    await asyncio.sleep(0.3)


async def _friend_is(stack, user: str, value: bool) -> bool:
    known = await friendship(stack, user)
    return known is not None and known.friend is value


async def _state_is(stack, user: str, state: str) -> bool:
    endpoint = await endpoint_of(stack, user)
    return endpoint is not None and endpoint.state == state


async def _processed(stack, key: str) -> bool:
    found = await rows(stack, InboundEvent, InboundEvent.event_key == key)
    return bool(found) and found[0].processed_at is not None
