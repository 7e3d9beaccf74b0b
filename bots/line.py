"""LINE edge: webhook intake (verified, stored, then processed) and the LINE sender (see core.channels).

Facts: reference/line.md. The signature is verified over the exact raw body with the SDK's ``WebhookParser``
(never parse and re-serialise first); raw events are stored, deduplicated on ``webhookEventId``, before the webhook is
answered 200, then processed once each; replies use the reply token and fall back to push on ``Invalid reply token``.
Broadcasts use multicast in batches of <= 500 user ids, each batch with its own ``X-Line-Retry-Key`` stored before the
request; a retry repeats the identical request with the same key; 409 "already accepted" means sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from linebot.v3.exceptions import InvalidSignatureError
from linebot.v3.messaging import (
    ApiException,
    AsyncMessagingApi,
    AsyncMessagingApiBlob,
    ImageMessage,
    MulticastRequest,
    PostbackAction,
    PushMessageRequest,
    QuickReply,
    QuickReplyItem,
    ReplyMessageRequest,
    TextMessage,
)
from linebot.v3.webhook import WebhookParser
from linebot.v3.webhooks import (
    Event,
    FollowEvent,
    GroupSource,
    ImageMessageContent,
    MessageEvent,
    PostbackEvent,
    RoomSource,
    TextMessageContent,
    UnfollowEvent,
)

from bots.desk import ChatOutError, DeskEdge
from bots.pacing import paced_limiter
from core.channels import OutboundMessage, Outcome, OutcomeKind, SendResult
from core.chat import ChatRouter, Incoming
from core.effects import ChatOutcome
from core.inbound import RawEventStore, finish_processing
from core.media import line_image_problem
from core.subscriptions import ChatContext, Reply, SubscriptionService
from storage.database import Database

log = logging.getLogger(__name__)

CHANNEL = "line"
MAX_MESSAGES_PER_REQUEST = 5  # reference/line.md "Sending"
MONTHLY_LIMIT_TEXT = "monthly limit"
ALREADY_ACCEPTED_STATUS = 409
#: Inline retries (seconds to wait before each) of a later request of one issue (its messages 6–10, …), after the
#: first request was accepted: its recipients are already reading the issue, as with Telegram's mid-issue retries.
#: The first request is never retried inline: a 5xx, a timeout or a rate 429 goes back to the dispatcher, which
#: repeats it with the same retry key after re-checking consent, leaving out whoever said 解除 in between.
RETRY_WAITS = (0.5, 1.0, 2.0, 4.0)
#: Seconds one multicast may take; a timeout is a temporary failure retried with the same key (reference/line.md).
MULTICAST_TIMEOUT = 30.0
#: Webhook requests whose events are processed at the same time. Unbounded, a burst of 400 webhooks starts 400
#: background tasks that fight the answers still being stored for the one SQLite writer and for the connection pool
#: (whose checkout times out after 30 s); a few keep replies overlapping while acknowledgements stay fast.
PROCESSING_CONCURRENCY = 4
#: Seconds between two bot-info look-ups of the basic id while it is unknown (one answer is kept for good).
BASIC_ID_RETRY_SECONDS = 60.0


class WebhookRejected(Exception):
    """A webhook request that must be refused: ``status`` (400) and a short ``reason``; nothing was stored."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def line_messages(reply: Reply) -> list[TextMessage]:
    """A reply as LINE messages: text with a quick-reply postback button per reply button (label <= 20 chars)."""
    quick = None
    if reply.buttons:
        quick = QuickReply(items=[
            QuickReplyItem(action=PostbackAction(label=b.label[:20], data=b.data, displayText=b.label))
            for b in reply.buttons
        ])
    return [TextMessage(text=reply.text, quickReply=quick)]


def event_time(event: Event) -> datetime | None:
    """When the user acted: the event's ``timestamp`` (milliseconds since the epoch) as aware UTC; None without one.
    Friendship changes are ordered by it (core.line_friends), not by arrival."""
    millis = getattr(event, "timestamp", None)
    return datetime.fromtimestamp(millis / 1000, tz=timezone.utc) if isinstance(millis, int) else None


def incoming_of(message: TextMessageContent) -> Incoming:
    """What the chat router needs of a LINE text message: the text (LINE text has no formatting), the message it
    quotes (``quotedMessageId``: an admin quoting a forwarded reader message answers it), its id and quote token."""
    return Incoming(text=message.text, reply_to=message.quoted_message_id, platform_message_id=message.id,
                    quote_token=message.quote_token)


@dataclass
class LineWebhook:
    """Receives LINE webhooks: verify, store, acknowledge, then process each new event once."""

    channel_secret: str
    db: Database
    subscriptions: SubscriptionService
    api: AsyncMessagingApi
    #: The chat router (core.chat: the author's desk, reader replies, the grammar); None: the grammar alone.
    router: ChatRouter | None = None
    #: Carries out the outcomes' effects (bots.desk); set by the bootstrap once every platform client exists.
    edge: DeskEdge | None = None
    #: The data API (``MessagingApiBlob``: message content, e.g. an admin's photo for an issue).
    blob: AsyncMessagingApiBlob | None = None

    def __post_init__(self) -> None:
        self.parser = WebhookParser(self.channel_secret)
        self.raw_events = RawEventStore(self.db, CHANNEL)
        self._processing = asyncio.Semaphore(PROCESSING_CONCURRENCY)
        self._basic_id_asked_at: float | None = None

    async def receive(self, body: bytes, signature: str | None) -> list[str]:
        """Verify and store a webhook request; return the ``webhookEventId`` s that are new (to be processed).

        Raises :class:`WebhookRejected` (400) for a missing or wrong signature or a body that is not the webhook
        JSON; in that case nothing is stored. The console's ``{"events": []}`` is accepted and stores nothing.
        """
        if not signature:
            raise WebhookRejected(400, "missing X-Line-Signature")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WebhookRejected(400, "body is not UTF-8") from exc
        try:
            self.parser.parse(text, signature)
        except InvalidSignatureError as exc:
            raise WebhookRejected(400, "invalid signature") from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise WebhookRejected(400, f"malformed webhook body: {type(exc).__name__}") from exc
        payload = json.loads(text)
        events = payload.get("events")
        if not isinstance(events, list):
            raise WebhookRejected(400, "malformed webhook body: no events list")
        stored: list[tuple[str, str]] = []
        for raw in events:
            key = raw.get("webhookEventId") if isinstance(raw, dict) else None
            if not key:
                continue  # an event without an id cannot be deduplicated; LINE always sends one
            stored.append((str(key), json.dumps(raw, ensure_ascii=False)))
        return await self.raw_events.store(stored)

    async def process_stored(self, keys: list[str]) -> None:
        """Process stored events by key, in order; a failure of one event is logged and does not stop the rest.

        At most :data:`PROCESSING_CONCURRENCY` calls run at once; the others wait their turn.
        """
        from core.inbound import unprocessed

        async with self._processing:
            rows = await unprocessed(self.db, CHANNEL, limit=len(keys), keys=keys)
            pending = {row.event_key: row for row in rows}
            for key in keys:
                row = pending.get(key)
                if row is None:
                    continue
                try:
                    await self.process_event(json.loads(row.payload))
                except Exception as exc:  # a worker never dies on one bad event
                    log.exception("LINE event %s failed", key)
                    async with self.db.write() as session:
                        await finish_processing(session, CHANNEL, key, error=f"{type(exc).__name__}: {exc}")

    async def recover(self) -> int:
        """Process events stored but not processed before a crash; returns how many were found."""
        from core.inbound import unprocessed

        rows = await unprocessed(self.db, CHANNEL, limit=10_000)
        await self.process_stored([row.event_key for row in rows])
        return len(rows)

    async def process_event(self, raw: dict[str, Any]) -> None:
        """Act on one raw event (dict as LINE sent it), then reply. Events in ``standby`` mode are not answered."""
        key = str(raw["webhookEventId"])
        try:
            event = Event.from_dict(raw)
        except (ValueError, KeyError, TypeError) as exc:
            # LINE adds event types over time: note it in one line and mark it done (reference/line.md).
            log.info("LINE event %s of type %r not handled: %s", key, raw.get("type"), type(exc).__name__)
            async with self.db.write() as session:
                await finish_processing(session, CHANNEL, key, error=f"unhandled event type {raw.get('type')!r}")
            return
        source = event.source
        user_id = getattr(source, "user_id", None)
        if user_id is None:
            async with self.db.write() as session:
                await finish_processing(session, CHANNEL, key, error="no userId in source")
            return
        ctx = ChatContext(
            channel=CHANNEL,
            address=user_id,
            chat_type="group" if isinstance(source, (GroupSource, RoomSource)) else "private",
            event_key=key,
            evidence={"webhookEventId": key, **({"message_id": event.message.id} if isinstance(event, MessageEvent) else {})},
            user_id=user_id,  # the sender (in a group too: LINE gives the sender's userId there)
        )
        standby = str(getattr(event, "mode", "active")).lower().endswith("standby")
        # In standby another channel answers the chat: we send nothing (reference/line.md "Webhooks"). A block is
        # still a fact about this account, and it sends nothing, so an unfollow is acted on in either mode.
        if standby and not isinstance(event, UnfollowEvent):
            async with self.db.write() as session:
                await finish_processing(session, CHANNEL, key, error="standby mode: not ours to answer")
            return
        if isinstance(event, (MessageEvent, PostbackEvent)) and ctx.chat_type == "private":
            await self._learn_basic_id()  # a consent from a non-friend answers with the add-friend link
        replies: list[Reply] = []
        outcome: ChatOutcome | None = None
        at = event_time(event)
        if isinstance(event, FollowEvent):
            unblocked = bool(getattr(event.follow, "is_unblocked", False)) if event.follow else False
            replies = await self.subscriptions.handle_follow(ctx, is_unblocked=unblocked, at=at)
        elif isinstance(event, UnfollowEvent):
            await self.subscriptions.handle_blocked(ctx, at=at)
        elif isinstance(event, MessageEvent) and isinstance(event.message, TextMessageContent):
            if self.router is None:
                replies = await self.subscriptions.handle_text(ctx, event.message.text)
            else:
                outcome = await self.router.text(ctx, incoming_of(event.message))
        elif isinstance(event, PostbackEvent):
            if self.router is None:
                replies = await self.subscriptions.handle_button(ctx, event.postback.data)
            else:
                outcome = await self.router.button(ctx, event.postback.data)
        elif isinstance(event, MessageEvent) and isinstance(event.message, ImageMessageContent) and self.router:
            outcome = await self.router.photo(ctx, self._content_fetcher(event.message.id))
        else:
            async with self.db.write() as session:
                await finish_processing(session, CHANNEL, key)
        if outcome is not None:
            # LINE has no callback answers: a refused button press is told as a (free) reply.
            notice = [Reply("notice", outcome.notice)] if outcome.notice and not outcome.replies else []
            replies = [*outcome.replies, *notice]
            if self.edge is not None:
                replies += await self.edge.before_replies(outcome, CHANNEL)
        if replies:
            reply_to = user_id if ctx.chat_type == "private" else (getattr(source, "group_id", None) or getattr(source, "room_id", None))
            await self.reply(getattr(event, "reply_token", None), reply_to, replies)
        if outcome is not None and self.edge is not None:
            self.edge.after_replies(outcome)

    async def _learn_basic_id(self) -> None:
        """Give the subscription use cases the account's basic id when ``OTAYORI_LINE_BASIC_ID`` did not: from
        ``GET /v2/bot/info`` (bots.channel_ids), asked at most once per :data:`BASIC_ID_RETRY_SECONDS` until it
        answers. A failure leaves it unknown (the add-friend reply then has no link) and is logged."""
        if self.subscriptions.line_basic_id:
            return
        now = time.monotonic()
        if self._basic_id_asked_at is not None and now - self._basic_id_asked_at < BASIC_ID_RETRY_SECONDS:
            return
        self._basic_id_asked_at = now
        try:
            info = await self.api.get_bot_info()
        except Exception as exc:  # network, token: never fatal for an event
            log.warning("LINE bot info failed: %s: %s", type(exc).__name__, exc)
            return
        basic = (info.basic_id or "").strip()
        if basic:
            self.subscriptions.line_basic_id = "@" + basic.lstrip("@")

    def _content_fetcher(self, message_id: str) -> Callable[[], Awaitable[tuple[bytes, str | None]]]:
        """A download of an image message's content from the data API (``GET /v2/bot/message/{id}/content`` on
        ``OTAYORI_LINE_DATA_API_URL``; kept by LINE for a while after it was sent). Errors become ``OSError``."""

        async def fetch() -> tuple[bytes, str | None]:
            if self.blob is None:
                raise OSError("the LINE data API is not configured")
            try:
                data = await self.blob.get_message_content(message_id)
            except ApiException as exc:
                raise OSError(f"LINE {exc.status}: {_message(exc.body or '')}") from exc
            return bytes(data), None

        return fetch

    async def reply(self, reply_token: str | None, to: str | None, replies: list[Reply]) -> None:
        """Reply with the reply token (free); on ``Invalid reply token`` fall back to push (costs quota). A reply
        holds at most 5 messages: more (an author's preview) go on by push, 5 at a time, in order — never dropped."""
        messages = [m for r in replies for m in line_messages(r)]
        first, rest = messages[:MAX_MESSAGES_PER_REQUEST], messages[MAX_MESSAGES_PER_REQUEST:]
        if reply_token:
            try:
                await self.api.reply_message(ReplyMessageRequest(replyToken=reply_token, messages=first))
                first = []
            except ApiException as exc:
                if exc.status != 400 or "reply token" not in (exc.body or "").lower():
                    log.warning("LINE reply failed: %s %s", exc.status, exc.reason)
                    return
        if not to:
            return
        pushes = [first] if first else []
        pushes += [rest[i:i + MAX_MESSAGES_PER_REQUEST] for i in range(0, len(rest), MAX_MESSAGES_PER_REQUEST)]
        for batch in pushes:
            try:
                await self.api.push_message(PushMessageRequest(to=to, messages=batch))
            except ApiException as exc:
                log.warning("LINE push failed: %s %s", exc.status, exc.reason)
                return


class LineSender:
    """Multicasts issues to LINE users (<= 500 per request, <= 5 messages per request) under a request-rate limit.

    See :mod:`core.channels` for the contract. ``rate_per_second``: multicast requests/s (LINE allows 200/s; the
    default 150 keeps a margin: reference/line.md "Sending"). ``request_timeout``: seconds one multicast may take
    before it counts as a timeout and is repeated with the same retry key (the SDK's own default is 5 minutes).

    A photo issue (``message.image``) starts with an image message (``originalContentUrl`` = the picture,
    ``previewImageUrl`` = its preview JPEG, both served by our web app under ``OTAYORI_PUBLIC_URL``), then the text:
    the image takes one of the 5 message slots of the first request. LINE fetches the URLs itself and only over
    HTTPS: an ``http://`` URL is refused here (delivery ``failed``, the reason names OTAYORI_PUBLIC_URL) — the
    broadcast is normally refused before it starts (core.media.check_image_channels).
    """

    channel = CHANNEL
    max_recipients = 500

    def __init__(self, api: AsyncMessagingApi, rate_per_second: float, retry_waits: tuple[float, ...] = RETRY_WAITS,
                 request_timeout: float = MULTICAST_TIMEOUT) -> None:
        self.api = api
        self.limiter = paced_limiter(rate_per_second)
        self.retry_waits = retry_waits
        self.request_timeout = request_timeout

    async def quota_remaining(self) -> int | None:
        """Messages left this month: ``GET /v2/bot/message/quota`` minus ``/quota/consumption`` (approximate, as LINE
        says), or None when the plan has no limit or the quota cannot be read (reference/line.md "Sending")."""
        try:
            quota = await self.api.get_message_quota()
            if str(getattr(quota.type, "value", quota.type)) != "limited" or quota.value is None:
                return None
            used = await self.api.get_message_quota_consumption()
        except (ApiException, OSError, TimeoutError) as exc:
            log.warning("LINE quota could not be read: %s", type(exc).__name__)
            return None
        return max(int(quota.value) - int(used.total_usage or 0), 0)

    async def send(self, message: OutboundMessage) -> SendResult:
        """Multicast every part to the recipients; parts beyond 5 go in further requests whose retry keys derive from
        the batch key (uuid5), so a retry of the whole batch repeats each request under its own key. One attempt per
        request: a temporary failure is returned to the dispatcher, which repeats it after re-checking consent."""
        assert message.retry_key, "LINE sends need a retry key stored before the request"
        messages: list[ImageMessage | TextMessage] = [TextMessage(text=text) for text in message.parts]
        if message.image is not None:
            refused = line_image_problem(message.image)
            if refused is not None:
                return SendResult(Outcome(OutcomeKind.REJECTED, reason=str(refused)))
            messages.insert(0, ImageMessage(originalContentUrl=message.image.url,
                                            previewImageUrl=message.image.preview_url))
        groups = [messages[i : i + MAX_MESSAGES_PER_REQUEST] for i in range(0, len(messages), MAX_MESSAGES_PER_REQUEST)]
        first = Outcome.sent()
        for index, group in enumerate(groups):
            key = message.retry_key if index == 0 else str(uuid.uuid5(uuid.UUID(message.retry_key), str(index)))
            request = MulticastRequest(to=list(message.recipients), messages=group)
            outcome = await self._multicast(request, key, turn_taken=message.turn_taken and index == 0,
                                            waits=() if index == 0 else self.retry_waits)
            if outcome.kind is not OutcomeKind.SENT:
                return SendResult(outcome)
            if index == 0:
                first = outcome  # whether LINE had accepted this request before (409) is told by its first part
        return SendResult(first)

    async def take_turn(self) -> None:
        """Wait until the request-rate limit (multicast requests/s) lets one more request start, and count it; the
        dispatcher calls it before the attempt mark (see :class:`core.channels.ChannelSender`)."""
        await self.limiter.acquire()

    async def _multicast(self, request: MulticastRequest, retry_key: str, *, turn_taken: bool = False,
                         waits: tuple[float, ...] = ()) -> Outcome:
        """One multicast under ``retry_key``, tried again after each of ``waits`` (seconds) on a temporary failure."""
        last: Outcome = Outcome(OutcomeKind.TEMPORARY, reason="not attempted")
        for attempt, wait in enumerate((0.0, *waits)):
            if wait:
                await asyncio.sleep(wait)
            if not (turn_taken and attempt == 0):  # a retry is a new request: it takes its own turn
                await self.limiter.acquire()
            try:
                await self.api.multicast(request, x_line_retry_key=retry_key, _request_timeout=self.request_timeout)
                return Outcome.sent()
            except ApiException as exc:
                body = exc.body or ""
                if exc.status == ALREADY_ACCEPTED_STATUS:  # the same retry key was accepted before: it was sent
                    return Outcome(OutcomeKind.SENT, reason="already accepted (same retry key)", already_accepted=True)
                if exc.status == 429 and MONTHLY_LIMIT_TEXT in body:
                    return Outcome(OutcomeKind.CHANNEL_WIDE, reason="LINE monthly message limit reached")
                if exc.status == 429 or (exc.status or 0) >= 500:
                    last = Outcome(OutcomeKind.TEMPORARY, reason=f"LINE {exc.status}: {_message(body)}")
                    continue  # the identical request, same key
                if exc.status in (401, 403):
                    return Outcome(OutcomeKind.CHANNEL_WIDE, reason=f"LINE {exc.status}: {_message(body)}")
                return Outcome(OutcomeKind.REJECTED, reason=f"LINE {exc.status}: {_message(body)}")
            except (TimeoutError, OSError) as exc:
                last = Outcome(OutcomeKind.TEMPORARY, reason=f"LINE network error: {type(exc).__name__}")
            except Exception as exc:  # aiohttp errors: the SDK does not wrap them (reference/line.md)
                if type(exc).__module__.startswith("aiohttp"):
                    last = Outcome(OutcomeKind.TEMPORARY, reason=f"LINE network error: {type(exc).__name__}")
                    continue
                raise
        return last


def _message(body: str) -> str:
    try:
        return str(json.loads(body).get("message", body))[:200]
    except (ValueError, AttributeError):
        return body[:200]


class LineOut:
    """Sends to any LINE user for the author's desk (bots.desk.ChatOut): admin notices and reports, answers to
    readers (quoting their message), the stats chart. Every send is a push (it counts against the monthly quota);
    LINE messages cannot be edited. SDK errors become :class:`bots.desk.ChatOutError`."""

    channel = CHANNEL
    can_edit = False

    def __init__(self, api: AsyncMessagingApi) -> None:
        self.api = api

    async def send(self, chat: str, reply: Reply, *, reply_to: str | None = None,
                   quote_token: str | None = None) -> list[str]:
        """Push ``reply`` to ``chat`` (a user id); ``quote_token`` quotes the reader's message in the answer
        (``reply_to`` is Telegram's and not used here). Returns the ids LINE gave the messages (``sentMessages``):
        an admin's quote of one of them arrives as the webhook's ``quotedMessageId``."""
        messages = line_messages(reply)
        if quote_token:
            messages[0].quote_token = quote_token
        response = await self._push(chat, messages)
        return [str(sent.id) for sent in (response.sent_messages or [])] if response is not None else []

    async def _push(self, chat: str, messages: list[Any]) -> Any:
        try:
            return await self.api.push_message(PushMessageRequest(to=chat, messages=messages))
        except ApiException as exc:
            raise ChatOutError(f"LINE {exc.status}: {_message(exc.body or '')}") from exc
        except (OSError, TimeoutError) as exc:
            raise ChatOutError(f"LINE network error: {type(exc).__name__}") from exc

    async def edit(self, chat: str, message_id: str, reply: Reply) -> None:
        """LINE messages cannot be edited."""
        raise ChatOutError("LINE messages cannot be edited")

    async def send_picture(self, chat: str, png: bytes, url: str | None, caption: str) -> None:
        """An image message loading ``url`` (LINE fetches it over https itself; the bytes are not uploaded)."""
        if not url:
            raise ChatOutError("LINE images need an https URL")
        await self._push(chat, [ImageMessage(originalContentUrl=url, previewImageUrl=url)])

    async def display_name(self, user_id: str) -> str | None:
        """The user's LINE display name (profile API), or None when it cannot be read."""
        try:
            profile = await self.api.get_profile(user_id)
        except (ApiException, OSError, TimeoutError):
            return None
        return str(profile.display_name) if profile.display_name else None
