"""The LINE emulator answers the real line-bot-sdk v3 async client as api.line.me does, and its webhooks parse with
the SDK's own WebhookParser (signature verified over the raw bytes).

Facts under test: /work/shared/reference/line.md and https://developers.line.biz/en/reference/messaging-api/.
"""

from __future__ import annotations

import asyncio
import json
import re
import select
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
from linebot.v3.exceptions import InvalidSignatureError
from linebot.v3.messaging import (
    ApiException,
    AsyncApiClient,
    AsyncMessagingApi,
    ConfirmTemplate,
    Configuration,
    ErrorResponse,
    ImageMessage,
    MessageAction,
    MulticastRequest,
    PostbackAction,
    PushMessageRequest,
    QuickReply,
    QuickReplyItem,
    ReplyMessageRequest,
    TemplateMessage,
    TextMessage,
)
from linebot.v3.webhook import WebhookParser
from linebot.v3.webhooks import (
    CallbackRequest,
    FollowEvent,
    GroupSource,
    MessageEvent,
    PostbackEvent,
    TextMessageContent,
    UnfollowEvent,
    UserSource,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bots.sandbox.line_api import LineEmulator
from bots.sandbox.line_webhook_events import encode_payload
from bots.sandbox.server import LocalServer

TOKEN = "sandbox-channel-access-token"
SECRET = "sandbox-channel-secret"
REPO = Path(__file__).resolve().parents[2]


class Receiver:
    """A bot's webhook endpoint reduced to what matters: verify with the SDK parser over the raw body, collect."""

    def __init__(self) -> None:
        self.parser = WebhookParser(SECRET)
        self.raw_bodies: list[str] = []
        self.events: list[object] = []
        self.destinations: list[str | None] = []
        self.rejected = 0
        self.app = Starlette(routes=[Route("/webhooks/line", self.handle, methods=["POST"])])

    async def handle(self, request: Request) -> Response:
        body = (await request.body()).decode("utf-8")
        signature = request.headers.get("x-line-signature", "")
        try:
            payload = self.parser.parse(body, signature, as_payload=True)
        except InvalidSignatureError:
            self.rejected += 1
            return Response("invalid signature", status_code=400)
        self.raw_bodies.append(body)
        self.destinations.append(payload.destination)
        self.events.extend(payload.events)
        return Response("OK")


@pytest.fixture
def receiver():
    return Receiver()


@pytest.fixture
async def emulator(receiver):
    """The emulator, posting its webhooks to ``receiver`` (both served on 127.0.0.1, stopped together)."""
    receiver_server = LocalServer(receiver.app)
    emulator = LineEmulator(TOKEN, SECRET, webhook_url=f"{await receiver_server.start()}/webhooks/line")
    try:
        await emulator.start()
        yield emulator
    finally:
        await asyncio.gather(emulator.stop(), receiver_server.stop())


@pytest.fixture
async def api(emulator):
    async with AsyncApiClient(Configuration(host=emulator.url, access_token=TOKEN)) as client:
        yield AsyncMessagingApi(client)


async def friend(emulator: LineEmulator, name: str = "花子") -> str:
    user_id = await emulator.add_user(display_name=name)
    status, _ = await emulator.follow(user_id)
    assert status == 200
    return user_id


def error_of(exc: pytest.ExceptionInfo[ApiException]) -> ErrorResponse:
    return ErrorResponse.from_json(exc.value.body)


# ---------------------------------------------------------------------- sending


async def test_push_text_with_postback_quick_reply_is_recorded(emulator, api):
    user_id = await friend(emulator)
    message = TextMessage(
        text="利用規約をご確認ください 📨",
        quick_reply=QuickReply(items=[
            QuickReplyItem(action=PostbackAction(label="同意する", data="consent:terms-ja-3f2a9c1d", display_text="同意")),
            QuickReplyItem(action=PostbackAction(label="やめる", data="decline")),
        ]),
    )
    response = await api.push_message_with_http_info(PushMessageRequest(to=user_id, messages=[message]))

    assert response.status_code == 200
    assert re.fullmatch(r"[0-9a-f-]{36}", response.headers["x-line-request-id"])
    assert len(response.data.sent_messages) == 1 and response.data.sent_messages[0].id.isdigit()
    assert response.data.sent_messages[0].quote_token
    [delivered] = emulator.deliveries_to(user_id)
    assert delivered.via == "push" and delivered.retry_key is None
    assert delivered.request_id == response.headers["x-line-request-id"]
    sent = delivered.messages[0]
    assert sent["text"] == "利用規約をご確認ください 📨"
    assert sent["quickReply"]["items"][0] == {
        "type": "action",
        "action": {"type": "postback", "label": "同意する", "data": "consent:terms-ja-3f2a9c1d", "displayText": "同意"},
    }
    assert emulator.quota_used == 1
    assert [(r.method, r.path, r.status) for r in emulator.requests] == [("POST", "/v2/bot/message/push", 200)]


async def test_reply_token_is_single_use_and_expires_after_a_minute(emulator, api, receiver):
    user_id = await friend(emulator)
    _, event = await emulator.send_text(user_id, "登録")
    token = event["replyToken"]
    # The bot got the same token through the SDK parser.
    assert receiver.events[-1].reply_token == token

    reply = ReplyMessageRequest(reply_token=token, messages=[TextMessage(text="ご登録ありがとうございます")])
    ok = await api.reply_message(reply)
    assert len(ok.sent_messages) == 1
    with pytest.raises(ApiException) as again:
        await api.reply_message(reply)
    assert again.value.status == 400
    assert error_of(again).message == "Invalid reply token"
    assert emulator.texts_to(user_id) == ["ご登録ありがとうございます"]
    assert emulator.deliveries_to(user_id)[0].via == "reply"
    assert emulator.quota_used == 0  # replies are free

    _, late = await emulator.send_text(user_id, "状態")
    emulator.advance_clock(61)
    with pytest.raises(ApiException) as expired:
        await api.reply_message(ReplyMessageRequest(reply_token=late["replyToken"], messages=[TextMessage(text="x")]))
    assert expired.value.status == 400 and error_of(expired).message == "Invalid reply token"

    # A redelivered event's unused token works again for a minute (within 20 minutes of the event).
    status, redelivered = await emulator.redeliver(late)
    assert status == 200 and redelivered["replyToken"] == late["replyToken"]
    await api.reply_message(ReplyMessageRequest(reply_token=late["replyToken"], messages=[TextMessage(text="状態です")]))
    assert emulator.texts_to(user_id)[-1] == "状態です"


async def test_multicast_of_501_recipients_is_refused(emulator, api):
    user_id = await emulator.add_user(friend=True)
    request = MulticastRequest(to=[user_id] * 500, messages=[TextMessage(text="第1号")])
    request.to.append(user_id)  # the SDK checks 500 at construction only; the server must refuse too

    with pytest.raises(ApiException) as exc:
        await api.multicast(request)
    assert exc.value.status == 400
    error = error_of(exc)
    assert error.message == "The request body has 1 error(s)"
    assert [(d.var_property, d.message) for d in error.details] == [("to", "Size must be between 1 and 500")]
    assert emulator.delivered == [] and emulator.quota_used == 0


async def test_image_messages_need_https_urls_of_at_most_2000_characters(emulator, api):
    user_id = await emulator.add_user(friend=True)
    base = "https://news.example.jp/media/" + "a" * 64
    bad = ImageMessage(originalContentUrl="http://127.0.0.1:8000/media/x.jpg",
                       previewImageUrl=base + "-preview.jpg" + "?" + "x" * 2000)
    with pytest.raises(ApiException) as exc:
        await api.multicast(MulticastRequest(to=[user_id], messages=[bad, TextMessage(text="チラシです")]))
    assert exc.value.status == 400
    assert [(d.var_property, d.message) for d in error_of(exc).details] == [
        ("messages[0].originalContentUrl", "invalid uri scheme"),
        ("messages[0].previewImageUrl", "Length must be between 0 and 2000"),
    ]
    assert emulator.delivered == []
    good = ImageMessage(originalContentUrl=base + ".jpg", previewImageUrl=base + "-preview.jpg")
    await api.multicast(MulticastRequest(to=[user_id], messages=[good, TextMessage(text="チラシです")]))
    assert [m["type"] for m in emulator.messages_to(user_id)] == ["image", "text"]
    assert emulator.messages_to(user_id)[0]["previewImageUrl"] == base + "-preview.jpg"


async def test_multicast_retry_key_is_accepted_once(emulator, api):
    users = [await emulator.add_user(friend=True) for _ in range(3)]
    request = MulticastRequest(to=users, messages=[TextMessage(text="お便り 第1号")])
    key = str(uuid4())

    first = await api.multicast_with_http_info(request, x_line_retry_key=key)
    assert first.status_code == 200
    with pytest.raises(ApiException) as exc:
        await api.multicast(request, x_line_retry_key=key)

    assert exc.value.status == 409
    assert error_of(exc).message == "The retry key is already accepted"
    assert exc.value.headers["x-line-accepted-request-id"] == first.headers["x-line-request-id"]
    assert exc.value.headers["x-line-request-id"] != first.headers["x-line-request-id"]
    assert sorted(d.user_id for d in emulator.delivered) == sorted(users)  # nobody got it twice
    assert {d.retry_key for d in emulator.delivered} == {key}
    assert emulator.quota_used == 3
    assert [(r.path, r.status, r.retry_key) for r in emulator.requests] == [
        ("/v2/bot/message/multicast", 200, key),
        ("/v2/bot/message/multicast", 409, key),
    ]


async def test_retry_key_is_forgotten_after_24_hours_and_refused_on_reply(emulator, api):
    user_id = await friend(emulator)
    request = PushMessageRequest(to=user_id, messages=[TextMessage(text="再送テスト")])
    key = str(uuid4())
    await api.push_message(request, x_line_retry_key=key)

    emulator.advance_clock(23 * 3600)
    with pytest.raises(ApiException) as exc:
        await api.push_message(request, x_line_retry_key=key)
    assert exc.value.status == 409
    # A push's 409 repeats what was sent, so the sender can still learn the message ids.
    assert error_of(exc).sent_messages[0].id.isdigit()

    emulator.advance_clock(3600)
    await api.push_message(request, x_line_retry_key=key)
    assert emulator.texts_to(user_id) == ["再送テスト", "再送テスト"]

    with pytest.raises(ApiException) as bad_key:
        await api.push_message(request, x_line_retry_key="not-a-uuid")
    assert bad_key.value.status == 400
    _, event = await emulator.send_text(user_id, "ヘルプ")
    with pytest.raises(ApiException) as on_reply:
        await api.reply_message(
            ReplyMessageRequest(reply_token=event["replyToken"], messages=[TextMessage(text="ヘルプです")]),
            _headers={"X-Line-Retry-Key": str(uuid4())},
        )
    assert on_reply.value.status == 400
    assert len(emulator.texts_to(user_id)) == 2


async def test_accepted_then_failed_request_is_not_delivered_twice_on_retry(emulator, api):
    users = [await emulator.add_user(friend=True) for _ in range(2)]
    request = MulticastRequest(to=users, messages=[TextMessage(text="第2号")])
    emulator.fail_next("/v2/bot/message/multicast", 500, {"message": "Internal server error"},
                       accept_before_failing=True)
    key = str(uuid4())

    with pytest.raises(ApiException) as failed:
        await api.multicast(request, x_line_retry_key=key)
    assert failed.value.status == 500
    with pytest.raises(ApiException) as retried:
        await api.multicast(request, x_line_retry_key=key)
    assert retried.value.status == 409
    assert len(emulator.delivered) == 2

    # A failure before acceptance delivers nothing; the retry with the same key then goes through once.
    emulator.fail_next("/v2/bot/message/multicast", 503, "", count=1)
    key2 = str(uuid4())
    with pytest.raises(ApiException) as unavailable:
        await api.multicast(request, x_line_retry_key=key2)
    assert unavailable.value.status == 503 and len(emulator.delivered) == 2
    await api.multicast(request, x_line_retry_key=key2)
    assert len(emulator.delivered) == 4


async def test_monthly_quota_counts_recipients_and_stops_at_the_limit(emulator, api):
    a, b = await friend(emulator, "一郎"), await friend(emulator, "二郎")
    blocked = await friend(emulator, "三郎")
    await emulator.unfollow(blocked)
    emulator.set_quota(3)

    quota = await api.get_message_quota()
    assert (quota.type.value, quota.value) == ("limited", 3)
    await api.multicast(MulticastRequest(to=[a, b, blocked], messages=[TextMessage(text="第1号")]))
    assert (await api.get_message_quota_consumption()).total_usage == 2  # the blocked user is not counted

    with pytest.raises(ApiException) as over:
        await api.multicast(MulticastRequest(to=[a, b], messages=[TextMessage(text="第2号")]))
    assert over.value.status == 429
    assert error_of(over).message == "You have reached your monthly limit."
    assert emulator.texts_to(a) == ["第1号"] and emulator.texts_to(b) == ["第1号"]

    await api.push_message(PushMessageRequest(to=a, messages=[TextMessage(text="第2号")]))
    with pytest.raises(ApiException) as exhausted:
        await api.push_message(PushMessageRequest(to=b, messages=[TextMessage(text="第2号")]))
    assert exhausted.value.status == 429 and error_of(exhausted).message == "You have reached your monthly limit."
    assert (await api.get_message_quota_consumption()).total_usage == 3
    # Pushing to a blocked user still answers 200, delivers nothing and costs nothing, even at the limit.
    await api.push_message(PushMessageRequest(to=blocked, messages=[TextMessage(text="第2号")]))
    assert emulator.messages_to(blocked) == []

    emulator.set_quota(None)
    unlimited = await api.get_message_quota()
    assert unlimited.type.value == "none" and unlimited.value is None


async def test_wrong_token_is_401(emulator):
    async with AsyncApiClient(Configuration(host=emulator.url, access_token="wrong")) as client:
        with pytest.raises(ApiException) as exc:
            await AsyncMessagingApi(client).get_message_quota()
    assert exc.value.status == 401
    assert error_of(exc).message == (
        "Authentication failed. Confirm that the access token in the authorization header is valid."
    )
    assert emulator.requests[-1].status == 401


async def test_text_length_is_counted_in_utf16_code_units(emulator, api):
    user_id = await friend(emulator)
    too_long = "😀" * 2501  # 2,501 Python characters, 5,002 UTF-16 code units
    assert len(too_long) < 5000

    with pytest.raises(ApiException) as exc:
        await api.push_message(PushMessageRequest(to=user_id, messages=[TextMessage(text=too_long)]))
    assert exc.value.status == 400
    error = error_of(exc)
    assert error.message == "The request body has 1 error(s)"
    assert error.details[0].var_property == "messages[0].text"
    assert emulator.delivered == []

    await api.push_message(PushMessageRequest(to=user_id, messages=[TextMessage(text="😀" * 2500)]))
    assert emulator.texts_to(user_id) == ["😀" * 2500]


async def test_message_objects_are_validated_like_line(emulator, api):
    user_id = await friend(emulator)
    long_label = QuickReply(items=[QuickReplyItem(action=PostbackAction(label="あ" * 21, data="x"))])
    three_actions = TemplateMessage(alt_text="確認", template=ConfirmTemplate(text="登録しますか？", actions=[
        MessageAction(label="はい", text="同意"), MessageAction(label="いいえ", text="やめる"),
        MessageAction(label="あとで", text="あとで"),
    ]))
    with pytest.raises(ApiException) as exc:
        await api.push_message(PushMessageRequest(to=user_id, messages=[
            TextMessage(text="", quick_reply=long_label), three_actions,
        ]))
    assert exc.value.status == 400
    error = error_of(exc)
    assert error.message == "The request body has 3 error(s)"
    assert {d.var_property for d in error.details} == {
        "messages[0].text", "messages[0].quickReply.items[0].action.label", "messages[1].template.actions",
    }

    too_big = {"to": user_id, "messages": [{"type": "text", "text": "x" * (2 * 1024 * 1024)}]}
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.post(f"{emulator.url}/v2/bot/message/push", json=too_big,
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 413
    assert emulator.delivered == []


async def test_recipients_the_channel_cannot_reach(emulator, api):
    friend_id = await friend(emulator)
    blocked = await friend(emulator)
    await emulator.unfollow(blocked)
    stranger = "U" + "0" * 32

    with pytest.raises(ApiException) as exc:
        await api.push_message(PushMessageRequest(to=stranger, messages=[TextMessage(text="x")]))
    assert exc.value.status == 400 and error_of(exc).message == "Failed to send messages"

    await api.push_message(PushMessageRequest(to=blocked, messages=[TextMessage(text="届かない")]))
    await api.multicast(MulticastRequest(to=[friend_id, blocked, stranger], messages=[TextMessage(text="第1号")]))
    assert emulator.messages_to(blocked) == [] and emulator.messages_to(stranger) == []
    assert emulator.texts_to(friend_id) == ["第1号"]
    assert emulator.quota_used == 1

    # Coming back from a block makes pushes reach the user again.
    await emulator.follow(blocked, is_unblocked=True)
    await api.push_message(PushMessageRequest(to=blocked, messages=[TextMessage(text="おかえりなさい")]))
    assert emulator.texts_to(blocked) == ["おかえりなさい"]


async def test_profile_and_bot_info(emulator, api):
    user_id = await emulator.add_user(display_name="山田 花子")
    profile = await api.get_profile(user_id)
    assert (profile.user_id, profile.display_name) == (user_id, "山田 花子")
    with pytest.raises(ApiException) as exc:
        await api.get_profile("U" + "f" * 32)
    assert exc.value.status == 404 and error_of(exc).message == "Not found"

    info = await api.get_bot_info()
    assert info.basic_id == "@otayori-sandbox" and info.user_id == emulator.bot_user_id
    assert re.fullmatch(r"U[0-9a-f]{32}", info.user_id)


async def test_rate_limit_answers_429_and_counts(emulator, api):
    user_id = await emulator.add_user(friend=True)
    emulator.rate_limit(multicast_per_second=2)
    request = MulticastRequest(to=[user_id], messages=[TextMessage(text="連投")])
    statuses = []
    for _ in range(4):
        try:
            await api.multicast(request)
            statuses.append(200)
        except ApiException as exc:
            assert ErrorResponse.from_json(exc.body).message == (
                "The API rate limit has been exceeded. Try again later."
            )
            statuses.append(exc.status)
    assert statuses[:2] == [200, 200] and 429 in statuses[2:]
    assert emulator.rate_limited["multicast"] == statuses.count(429)
    assert len(emulator.delivered) == statuses.count(200)


async def test_wait_for_messages_is_bounded(emulator, api):
    user_id = await emulator.add_user(friend=True)

    async def later():
        await asyncio.sleep(0.05)
        await api.push_message(PushMessageRequest(to=user_id, messages=[TextMessage(text="遅れて届く")]))

    task = asyncio.create_task(later())
    messages = await emulator.wait_for_messages(user_id, 1, timeout=3.0)
    await task
    assert messages[0]["text"] == "遅れて届く"
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="遅れて届く"):
        await emulator.wait_for_messages(user_id, 2, timeout=0.2)
    assert time.monotonic() - started < 2.0


# ---------------------------------------------------------------------- webhooks


async def test_injected_events_parse_with_the_sdk(emulator, receiver):
    user_id = await emulator.add_user(display_name="花子")
    before_ms = int(datetime.now(timezone.utc).timestamp() * 1000)

    assert (await emulator.follow(user_id))[0] == 200
    assert (await emulator.send_text(user_id, "登録　seminar-2026-12 🎉"))[0] == 200
    assert (await emulator.postback(user_id, "consent:terms-ja-3f2a9c1d"))[0] == 200
    assert (await emulator.unfollow(user_id))[0] == 200
    assert (await emulator.send_group_text("C" + "1" * 32, user_id, "登録"))[0] == 200

    follow, text, postback, unfollow, group = receiver.events
    assert isinstance(follow, FollowEvent) and follow.follow.is_unblocked is False and follow.reply_token
    assert isinstance(text, MessageEvent) and isinstance(text.message, TextMessageContent)
    assert text.message.text == "登録　seminar-2026-12 🎉" and text.message.quote_token and text.message.id.isdigit()
    assert isinstance(postback, PostbackEvent) and postback.postback.data == "consent:terms-ja-3f2a9c1d"
    assert isinstance(unfollow, UnfollowEvent) and not hasattr(unfollow, "reply_token")
    assert isinstance(group.source, GroupSource)
    assert (group.source.group_id, group.source.user_id) == ("C" + "1" * 32, user_id)
    for event in (follow, text, postback, unfollow):
        assert isinstance(event.source, UserSource) and event.source.user_id == user_id
    for event in receiver.events:
        assert event.mode.value == "active" and event.delivery_context.is_redelivery is False
        assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", event.webhook_event_id)
        assert before_ms - 1000 <= event.timestamp <= before_ms + 60_000
    assert len({e.webhook_event_id for e in receiver.events}) == 5
    assert set(receiver.destinations) == {emulator.bot_user_id}
    # The raw body is UTF-8 with Japanese unescaped, and valid for the SDK's strict request model.
    assert "登録" in receiver.raw_bodies[1] and "\\u" not in receiver.raw_bodies[1]
    CallbackRequest.from_json(receiver.raw_bodies[1])
    assert emulator.is_friend(user_id) is False  # the unfollow blocked the account


async def test_batched_events_and_redelivery(emulator, receiver):
    a, b = await emulator.add_user(), await emulator.add_user()
    status, events = await emulator.send_events([emulator.text_event(a, "解除"), emulator.follow_event(b)])
    assert status == 200
    assert len(receiver.raw_bodies) == 1 and len(receiver.events) == 2
    assert [e.source.user_id for e in receiver.events] == [a, b]
    assert emulator.is_friend(b)

    status, again = await emulator.redeliver(events[0])
    assert status == 200 and again["webhookEventId"] == events[0]["webhookEventId"]
    redelivered = receiver.events[-1]
    assert redelivered.delivery_context.is_redelivery is True
    assert redelivered.webhook_event_id == events[0]["webhookEventId"]
    assert events[0]["deliveryContext"]["isRedelivery"] is False  # the original dict is left alone


async def test_forged_or_reserialised_bodies_fail_signature_verification(emulator, receiver):
    user_id = await emulator.add_user()
    body = encode_payload(emulator.bot_user_id, [emulator.text_event(user_id, "登録 😀")])
    good = emulator.sign(body)

    assert await emulator.post_raw(body, good) == 200
    assert await emulator.post_raw(body, "Zm9yZ2Vk" + good[8:]) == 400
    assert await emulator.post_raw(body, None) == 400
    # Re-serialising (here: escaping non-ASCII) changes the bytes, so the signature no longer matches.
    reserialised = json.dumps(json.loads(body)).encode("utf-8")
    assert await emulator.post_raw(reserialised, good) == 400
    with pytest.raises(InvalidSignatureError):
        WebhookParser(SECRET).parse(body.decode("utf-8"), emulator.sign(body + b" "))
    assert receiver.rejected == 3 and len(receiver.events) == 1


# ---------------------------------------------------------------------- control surface and standalone


async def test_control_surface_mirrors_the_python_api(emulator, api, receiver):
    async with httpx.AsyncClient(base_url=emulator.url, trust_env=False) as client:
        user_id = (await client.post("/_emulator/users", json={"display_name": "花子"})).json()["user_id"]
        followed = (await client.post("/_emulator/follow", json={"user_id": user_id})).json()
        assert followed["status"] == 200 and followed["event"]["type"] == "follow"
        texted = (await client.post("/_emulator/text", json={"user_id": user_id, "text": "状態"})).json()
        await client.post("/_emulator/quota", json={"limit": 100})
        await api.reply_message(ReplyMessageRequest(reply_token=texted["event"]["replyToken"],
                                                    messages=[TextMessage(text="購読中です")]))
        delivered = (await client.get("/_emulator/delivered", params={"user_id": user_id})).json()["delivered"]
        state = (await client.get("/_emulator/state")).json()
        requests = (await client.get("/_emulator/requests")).json()["requests"]
        bad = await client.post("/_emulator/text", json={"user_id": user_id})
    assert [(d["via"], d["messages"][0]["text"]) for d in delivered] == [("reply", "購読中です")]
    assert state["quota"] == {"limit": 100, "used": 0}
    assert {"user_id": user_id, "display_name": "花子", "friend": True, "blocked": False} in state["users"]
    assert [r["path"] for r in requests] == ["/v2/bot/message/reply"]
    assert bad.status_code == 400
    assert [type(e).__name__ for e in receiver.events] == ["FollowEvent", "MessageEvent"]


def test_standalone_command_serves_on_loopback():
    command = [sys.executable, "-m", "bots.sandbox.line_api", "--token", TOKEN, "--secret", SECRET, "--port", "0"]
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        _check_standalone(process)


def _check_standalone(process: subprocess.Popen) -> None:
    try:
        # The banner is printed once the socket listens; wait for it at most 15 s.
        readable, _, _ = select.select([process.stdout], [], [], 15)
        assert readable, "the emulator printed nothing within 15 s"
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert match, f"no URL in {line!r}; stderr: {process.stderr.read() if process.poll() is not None else ''}"
        url = match.group(0)
        state = httpx.get(f"{url}/_emulator/state", timeout=5, trust_env=False).json()
        assert state["bot"]["basicId"] == "@otayori-sandbox"
        quota = httpx.get(f"{url}/v2/bot/message/quota", headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=5, trust_env=False)
        assert quota.json() == {"type": "none"}
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
