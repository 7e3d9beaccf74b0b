"""A local emulator of the LINE Messaging API, for tests and the rehearsal sandbox.

It answers the endpoints otayori uses exactly as api.line.me does (status codes, JSON bodies, headers), so the real
``linebot.v3`` SDK can be pointed at it with ``Configuration(host=emulator_url, access_token=token)``, and it injects
user activity (follow, text, postback, block...) as correctly signed webhooks POSTed to ``webhook_url``.

Facts it reproduces (https://developers.line.biz/en/reference/messaging-api/, /work/shared/reference/line.md):

- ``Authorization: Bearer <channel access token>``; otherwise 401.
- reply (free; single-use reply token valid 60 s), push (1 recipient), multicast (1..500 user ids); 1..5 messages;
  request body <= 2 MB (413); invalid bodies -> 400 ``{"message": "The request body has N error(s)", "details"}``.
- ``X-Line-Retry-Key`` (a UUID) on push/multicast only (400 on reply); an accepted key is remembered 24 h and a
  repeat answers 409 ``{"message": "The retry key is already accepted"}`` with ``x-line-accepted-request-id`` and
  delivers nothing again. Every API response carries ``x-line-request-id``.
- Push/multicast to a user who blocked the account (or never added it): 200, nothing delivered, not counted. Push to
  an id the channel does not know: 400 ``Failed to send messages``. Multicast silently skips such ids.
- Monthly quota: each delivered push/multicast recipient counts 1 (month in Japan time, as LINE bills); a request
  that does not fit -> 429 ``You have reached your monthly limit.`` and nothing is sent.
- Rich menus ("Rich menu" reference): create (validated as in ``line_validation.validate_rich_menu``: size
  800..2500 x 250..1686 with width/height >= 1.45, at most 20 areas within the size, rich-menu action types; at most
  1,000 per channel), list, get, delete; upload its image once on the data API (``image/png`` or ``image/jpeg``,
  <= 1 MB, exactly the menu's size; otherwise 400/413/415); set, get and cancel the default (a menu without an image
  cannot be the default: 400). Deleting the default menu leaves no default.

Knobs for delivery tests (see :meth:`LineEmulator.rate_limit` and :meth:`LineEmulator.fail_next`) and a JSON control
surface under ``/_emulator/`` (see :meth:`LineEmulator.control_routes`). Run it standalone with
``python -m bots.sandbox.line_api --token T --secret S --webhook-url URL --port N`` (always on 127.0.0.1).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import hmac
import io
import itertools
import json
import re
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bots.sandbox import line_webhook_events as ev
from bots.sandbox.line_validation import (
    MAX_MULTICAST_RECIPIENTS,
    Detail,
    body_errors,
    validate_messages,
    validate_rich_menu,
)
from bots.sandbox.server import LocalServer

REPLY_TOKEN_TTL = timedelta(seconds=60)
"""A reply token is valid about one minute after the webhook was sent (reference: "Send reply message")."""
REDELIVERED_REPLY_TOKEN_MAX_AGE = timedelta(minutes=20)
"""A redelivered event's token works within 1 minute of the redelivery and 20 minutes of the original event."""
RETRY_KEY_TTL = timedelta(hours=24)
"""LINE remembers an accepted ``X-Line-Retry-Key`` for 24 hours (reference: "Retry failed API request")."""
MAX_BODY_BYTES = 2 * 1024 * 1024
"""Request body limit of the Messaging API: 2 MB (larger -> 413)."""
JST = timezone(timedelta(hours=9))

AUTH_FAILED = "Authentication failed. Confirm that the access token in the authorization header is valid."
INVALID_REPLY_TOKEN = "Invalid reply token"
RETRY_KEY_ACCEPTED = "The retry key is already accepted"
MONTHLY_LIMIT = "You have reached your monthly limit."
RATE_LIMITED = "The API rate limit has been exceeded. Try again later."
FAILED_TO_SEND = "Failed to send messages"
NOT_FOUND = "Not found"
# LINE does not document these two strings; clients must branch on the status code, not on them.
RETRY_KEY_INVALID = "The value of the X-Line-Retry-Key header is invalid"
RETRY_KEY_UNSUPPORTED = "The X-Line-Retry-Key header is not supported by this API"
TOO_LARGE = "Request Entity Too Large"
RICH_MENU_NOT_FOUND = "richmenu not found"
IMAGE_ALREADY_UPLOADED = "An image has already been uploaded to the richmenu"
IMAGE_NOT_UPLOADED = "must upload richmenu image before applying it to user"
NO_DEFAULT_RICH_MENU = "no default richmenu"
MAX_RICH_MENUS = 1000
MAX_RICH_MENU_IMAGE_BYTES = 1024 * 1024
RICH_MENU_IMAGE_TYPES = ("image/png", "image/jpeg")

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

Via = Literal["reply", "push", "multicast"]
_Handler = Callable[[Request, "_Call"], Awaitable[Response]]


@dataclass(frozen=True)
class Delivered:
    """One message batch that reached one recipient.

    ``user_id`` is the recipient (a user id, or a group id for a push/reply to a group); ``messages`` the message
    objects as sent (JSON dicts); ``via`` the endpoint; ``request_id`` the ``x-line-request-id`` of the accepting
    request; ``retry_key`` its ``X-Line-Retry-Key`` (lower-case) or None; ``at`` the emulator clock (UTC).
    """

    user_id: str
    messages: list[dict[str, Any]]
    via: Via
    request_id: str
    retry_key: str | None
    at: datetime
    #: The ids LINE gave the messages (``sentMessages[].id``; reply and push only — multicast answers none). A user
    #: who quotes one of them sends it back as ``quotedMessageId``.
    message_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class ApiRequest:
    """One request to the Messaging API surface (``/v2/...``), whatever its outcome.

    ``status`` is the HTTP status answered; ``retry_key`` the ``X-Line-Retry-Key`` header as sent (or None);
    ``body`` the parsed JSON body (None for GET or unparseable bodies).
    """

    method: str
    path: str
    status: int
    retry_key: str | None
    request_id: str
    at: datetime
    body: Any = None


@dataclass(frozen=True)
class WebhookPost:
    """One webhook request the emulator sent: ``status`` answered by the receiver, exact ``body`` bytes, signature."""

    status: int
    body: bytes
    signature: str | None
    at: datetime


@dataclass
class RichMenu:
    """A rich menu as created: ``rich_menu_id``, the object as sent (``body``: size, areas…), and its uploaded image
    (``image`` bytes and ``image_type``, None until uploaded)."""

    rich_menu_id: str
    body: dict[str, Any]
    image: bytes | None = None
    image_type: str | None = None


@dataclass
class _User:
    user_id: str
    display_name: str
    friend: bool = False
    blocked: bool = False


@dataclass
class _ReplyToken:
    target: str
    event_at: datetime
    expires_at: datetime
    used: bool = False


@dataclass
class _AcceptedKey:
    accepted_at: datetime
    request_id: str
    response_body: dict[str, Any]


@dataclass
class _Failure:
    status: int
    body: Any
    remaining: int
    accept_before_failing: bool
    delay: float


@dataclass
class _LeakyBucket:
    """At most ``rate`` requests of burst, draining at ``rate`` per second (the shape of aiolimiter's limiter).

    Real time (``time.monotonic``), not the emulator clock: rate limits are about the pace of real requests.
    """

    rate: float
    level: float = 0.0
    last: float = field(default_factory=time.monotonic)

    def try_take(self) -> bool:
        now = time.monotonic()
        self.level = max(0.0, self.level - (now - self.last) * self.rate)
        self.last = now
        if self.level + 1 > max(self.rate, 1.0):
            return False
        self.level += 1
        return True


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class LineEmulator:
    """In-process LINE Messaging API + webhook sender for one channel.

    ``channel_access_token`` is the only accepted bearer token; ``channel_secret`` signs the webhooks;
    ``webhook_url`` (settable at any time) receives them; ``basic_id`` is what ``GET /v2/bot/info`` reports.

    Public state: ``delivered`` (list of :class:`Delivered`), ``requests`` (list of :class:`ApiRequest`),
    ``webhook_posts`` (list of :class:`WebhookPost`), ``rate_limited`` (429s answered by the rate limiter, per
    ``"push"``/``"multicast"``), ``now`` (a callable returning an aware UTC datetime: replace it, or use
    :meth:`advance_clock`, to jump time for reply-token, retry-key and quota-month tests), ``bot_user_id``.
    """

    def __init__(
        self,
        channel_access_token: str,
        channel_secret: str,
        *,
        webhook_url: str | None = None,
        basic_id: str = "@otayori-sandbox",
    ) -> None:
        self.channel_access_token = channel_access_token
        self.channel_secret = channel_secret
        self.webhook_url = webhook_url
        self.basic_id = basic_id
        self.bot_display_name = "お便りサンドボックス"
        self.bot_user_id = ev.new_user_id()
        self.webhook_timeout = 10.0
        """Seconds the emulator waits for the webhook receiver (LINE itself gives up after about 2 s)."""
        self.now: Callable[[], datetime] = _utcnow
        self.delivered: list[Delivered] = []
        self.requests: list[ApiRequest] = []
        self.webhook_posts: list[WebhookPost] = []
        self.rate_limited: dict[str, int] = {"push": 0, "multicast": 0}
        self._users: dict[str, _User] = {}
        self._groups: dict[str, set[str]] = {}
        self._reply_tokens: dict[str, _ReplyToken] = {}
        self._retry_keys: dict[str, _AcceptedKey] = {}
        self._quote_tokens: set[str] = set()  # issued with users' messages and our sentMessages
        self._contents: dict[str, tuple[bytes, str]] = {}  # message id -> (bytes, type) of what users sent
        self.rich_menus: dict[str, RichMenu] = {}
        """Rich menus that exist (created and not deleted), by id, in creation order."""
        self.default_rich_menu_id: str | None = None
        self._quota_limit: int | None = None
        self._usage: dict[tuple[int, int], int] = {}
        self._buckets: dict[str, _LeakyBucket | None] = {"push": None, "multicast": None}
        self._failures: dict[str, list[_Failure]] = {}
        self._message_ids = itertools.count(int(time.time() * 1000) * 1000)
        self._server: LocalServer | None = None
        self._ssl_context: ssl.SSLContext | None = None
        self.app = Starlette(routes=self._api_routes() + self.control_routes())

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (loopback only; 0 = a free port) and return the base URL, e.g.
        ``http://127.0.0.1:41234``: use it as ``Configuration.host`` for the messaging and the data API."""
        if self._server is not None:
            raise RuntimeError("the LINE emulator is already started")
        self._server = LocalServer(self.app, host=host, port=port)
        return await self._server.start()

    async def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._server is not None:
            await self._server.stop()
            self._server = None

    @property
    def url(self) -> str:
        """Base URL while started. Raises RuntimeError before :meth:`start`."""
        if self._server is None:
            raise RuntimeError("the LINE emulator is not started")
        return self._server.url

    async def __aenter__(self) -> LineEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ knobs

    def advance_clock(self, seconds: float) -> None:
        """Move the emulator clock ``seconds`` forward (wraps the current ``now``)."""
        base = self.now
        delta = timedelta(seconds=seconds)
        self.now = lambda: base() + delta

    def set_quota(self, limit: int | None, *, used: int | None = None) -> None:
        """Set the monthly message quota (``None`` = no limit, ``{"type":"none"}``); ``used`` overrides this
        month's consumption (for tests that start near the limit)."""
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0 or None")
        self._quota_limit = limit
        if used is not None:
            self._usage[self._month()] = used

    @property
    def quota_used(self) -> int:
        """Messages counted this month (Japan time): one per delivered push/multicast recipient."""
        return self._usage.get(self._month(), 0)

    def rate_limit(self, multicast_per_second: float | None = None, push_per_second: float | None = None) -> None:
        """Enforce request rates (None = unlimited, the default) with a leaky bucket of one second of burst.

        Over the rate: 429 ``{"message": "The API rate limit has been exceeded. Try again later."}``, nothing sent,
        and ``rate_limited["multicast"|"push"]`` counts it. LINE's real limits are 200 req/s (multicast) and
        2,000 req/s (push); configure clients a little below the emulator's rate, as network jitter bunches requests.
        """
        for kind, rate in (("multicast", multicast_per_second), ("push", push_per_second)):
            if rate is not None and rate <= 0:
                raise ValueError(f"{kind} rate must be > 0 or None")
            self._buckets[kind] = _LeakyBucket(rate) if rate is not None else None

    def fail_next(
        self,
        path: str,
        status: int,
        body: dict[str, Any] | list[Any] | str | None = None,
        count: int = 1,
        accept_before_failing: bool = False,
        *,
        delay: float = 0.0,
    ) -> None:
        """Answer the next ``count`` authenticated requests to ``path`` (e.g. ``/v2/bot/message/multicast``) with
        ``status`` and ``body`` (a dict/list is sent as JSON, a str as is), after ``delay`` seconds.

        With ``accept_before_failing=False`` nothing is processed. With ``True`` the request is processed first —
        delivered, counted, its retry key remembered — and only the answer is the failure: LINE accepted it but the
        client saw a 5xx or a timeout, which is exactly what ``X-Line-Retry-Key`` exists for.
        """
        if count < 1:
            raise ValueError("count must be >= 1")
        self._failures.setdefault(path, []).append(_Failure(status, body, count, accept_before_failing, delay))

    def clear_records(self) -> None:
        """Forget ``delivered``, ``requests``, ``webhook_posts`` and the rate-limit counters (not users or keys)."""
        self.delivered.clear()
        self.requests.clear()
        self.webhook_posts.clear()
        self.rate_limited = {"push": 0, "multicast": 0}

    # ------------------------------------------------------------------ records

    def deliveries_to(self, user_id: str) -> list[Delivered]:
        """Every :class:`Delivered` batch that reached ``user_id`` (a user or group id), oldest first."""
        return [d for d in self.delivered if d.user_id == user_id]

    def messages_to(self, user_id: str) -> list[dict[str, Any]]:
        """Every message object delivered to ``user_id``, flattened across batches, oldest first."""
        return [m for d in self.deliveries_to(user_id) for m in d.messages]

    def texts_to(self, user_id: str) -> list[str]:
        """The ``text`` of every text message delivered to ``user_id``, oldest first."""
        return [m["text"] for m in self.messages_to(user_id) if m.get("type") == "text"]

    async def wait_for_messages(self, user_id: str, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until at least ``count`` messages were delivered to ``user_id``; return them all (flattened).

        Raises TimeoutError after ``timeout`` seconds, listing what did arrive.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            messages = self.messages_to(user_id)
            if len(messages) >= count:
                return messages
            if loop.time() >= deadline:
                raise TimeoutError(
                    f"{len(messages)} of {count} message(s) reached {user_id} within {timeout} s: "
                    + json.dumps(messages, ensure_ascii=False)[:2000]
                )
            await asyncio.sleep(0.01)

    def is_friend(self, user_id: str) -> bool:
        """True when ``user_id`` has added the account and not blocked it (pushes reach them)."""
        user = self._users.get(user_id)
        return user is not None and user.friend and not user.blocked

    # ------------------------------------------------------------------ user activity (webhooks)

    def sign(self, body: bytes) -> str:
        """``X-Line-Signature`` of ``body`` under this channel's secret."""
        return ev.sign(self.channel_secret, body)

    async def add_user(self, user_id: str | None = None, display_name: str = "花子", *, friend: bool = False) -> str:
        """Make a LINE user known to the channel and return its id (``U`` + 32 hex when generated).

        The user is not a friend until :meth:`follow` — or at once with ``friend=True``, which sends no webhook
        (for bulk delivery tests that need many friends quickly).
        """
        user_id = user_id or ev.new_user_id()
        user = self._users.get(user_id)
        if user is None:
            user = self._users[user_id] = _User(user_id, display_name)
        else:
            user.display_name = display_name
        if friend:
            user.friend, user.blocked = True, False
        return user_id

    def follow_event(self, user_id: str, is_unblocked: bool = False) -> dict[str, Any]:
        """Build (not send) a ``follow`` event; sending it makes the user a friend. For :meth:`send_events`."""
        return ev.follow_event(user_id, self.now(), is_unblocked=is_unblocked)

    def unfollow_event(self, user_id: str) -> dict[str, Any]:
        """Build (not send) an ``unfollow`` event; sending it marks the user as having blocked the account."""
        return ev.unfollow_event(user_id, self.now())

    def text_event(self, user_id: str, text: str, *, quoted_message_id: str | None = None) -> dict[str, Any]:
        """Build (not send) a one-to-one text ``message`` event; ``quoted_message_id``: the user quoted (replied to)
        that message, as LINE's "reply" in the app sends it."""
        event = ev.text_message_event(ev.user_source(user_id), text, self._next_message_id(), self.now())
        if quoted_message_id is not None:
            event["message"]["quotedMessageId"] = quoted_message_id
        return event

    def postback_event(self, user_id: str, data: str) -> dict[str, Any]:
        """Build (not send) a ``postback`` event."""
        return ev.postback_event(user_id, data, self.now())

    def group_text_event(self, group_id: str, user_id: str, text: str) -> dict[str, Any]:
        """Build (not send) a text ``message`` event from ``user_id`` in group chat ``group_id``."""
        return ev.text_message_event(ev.group_source(group_id, user_id), text, self._next_message_id(), self.now())

    async def follow(self, user_id: str, is_unblocked: bool = False) -> tuple[int, dict[str, Any]]:
        """The user adds the account as a friend (``is_unblocked``: comes back from a block). Returns
        ``(webhook HTTP status, event)``."""
        status, events = await self.send_events([self.follow_event(user_id, is_unblocked)])
        return status, events[0]

    async def unfollow(self, user_id: str) -> tuple[int, dict[str, Any]]:
        """The user blocks the account (no reply token). Returns ``(status, event)``."""
        status, events = await self.send_events([self.unfollow_event(user_id)])
        return status, events[0]

    async def send_text(self, user_id: str, text: str, *, quoted_message_id: str | None = None) -> tuple[int, dict[str, Any]]:
        """The user sends ``text`` in the one-to-one chat (quoting message ``quoted_message_id``, e.g. an id from
        :attr:`Delivered.message_ids`). Returns ``(status, event)``."""
        status, events = await self.send_events([self.text_event(user_id, text, quoted_message_id=quoted_message_id)])
        return status, events[0]

    async def send_image(self, user_id: str, data: bytes, content_type: str = "image/jpeg") -> tuple[int, dict[str, Any]]:
        """The user sends a picture in the one-to-one chat: an image ``message`` event whose bytes the bot fetches
        from ``GET /v2/bot/message/{id}/content`` (the data API). Returns ``(status, event)``."""
        message_id = self._next_message_id()
        self._contents[message_id] = (data, content_type)
        status, events = await self.send_events([ev.image_message_event(ev.user_source(user_id), message_id,
                                                                        self.now())])
        return status, events[0]

    async def postback(self, user_id: str, data: str) -> tuple[int, dict[str, Any]]:
        """The user taps a postback action carrying ``data``. Returns ``(status, event)``."""
        status, events = await self.send_events([self.postback_event(user_id, data)])
        return status, events[0]

    async def send_group_text(self, group_id: str, user_id: str, text: str) -> tuple[int, dict[str, Any]]:
        """``user_id`` sends ``text`` in group chat ``group_id`` (source type ``group``).
        Returns ``(status, event)``."""
        status, events = await self.send_events([self.group_text_event(group_id, user_id, text)])
        return status, events[0]

    async def send_events(self, events: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
        """POST several events in one webhook request (as LINE batches them). Applies their effects first
        (follow -> friend, unfollow -> blocked, reply tokens issued now, unknown users registered). Returns
        ``(status, events)``. Raises RuntimeError without ``webhook_url``; httpx errors propagate."""
        for event in events:
            self._apply(event)
        body = ev.encode_payload(self.bot_user_id, events)
        status = await self.post_raw(body, self.sign(body))
        return status, events

    async def redeliver(self, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Send ``event`` again with ``deliveryContext.isRedelivery`` true and the same ``webhookEventId``.

        Its reply token (if unused) works again for 1 minute, but never beyond 20 minutes after the original event.
        Returns ``(status, redelivered event)``.
        """
        again = copy.deepcopy(event)
        again.setdefault("deliveryContext", {})["isRedelivery"] = True
        token = again.get("replyToken")
        if token is not None:
            known = self._reply_tokens.get(token)
            now = self.now()
            if known is None:
                self._apply(again)
            elif not known.used:
                known.expires_at = min(now + REPLY_TOKEN_TTL, known.event_at + REDELIVERED_REPLY_TOKEN_MAX_AGE)
        body = ev.encode_payload(self.bot_user_id, [again])
        status = await self.post_raw(body, self.sign(body))
        return status, again

    async def post_raw(self, body: bytes, signature: str | None) -> int:
        """POST ``body`` as is to ``webhook_url`` with ``X-Line-Signature: signature`` (omitted when None): for
        forged signatures and malformed bodies. Returns the receiver's HTTP status."""
        if not self.webhook_url:
            raise RuntimeError("the LINE emulator has no webhook_url to send events to")
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "LineBotWebhook/2.0"}
        if signature is not None:
            headers["X-Line-Signature"] = signature
        if self._ssl_context is None:
            # Built once: loading the CA bundle costs ~50 ms, which a fresh client per webhook would pay every time.
            self._ssl_context = ssl.create_default_context()
        # trust_env=False: a proxy from the environment must never see loopback test traffic.
        async with httpx.AsyncClient(timeout=self.webhook_timeout, trust_env=False, verify=self._ssl_context) as client:
            response = await client.post(self.webhook_url, content=body, headers=headers)
        self.webhook_posts.append(WebhookPost(response.status_code, body, signature, self.now()))
        return response.status_code

    def _apply(self, event: dict[str, Any]) -> None:
        """Apply an event's effect on the channel state, as LINE would when the user acts."""
        source = event.get("source") or {}
        user_id = source.get("userId")
        if isinstance(user_id, str) and user_id not in self._users:
            self._users[user_id] = _User(user_id, "LINEユーザー")
        group_id = source.get("groupId")
        if isinstance(group_id, str):
            members = self._groups.setdefault(group_id, set())
            if isinstance(user_id, str):
                members.add(user_id)
        user = self._users.get(user_id) if isinstance(user_id, str) else None
        if user is not None and source.get("type") == "user":
            if event.get("type") == "follow":
                user.friend, user.blocked = True, False
            elif event.get("type") == "unfollow":
                user.friend, user.blocked = False, True
        quote = (event.get("message") or {}).get("quoteToken")
        if isinstance(quote, str):
            self._quote_tokens.add(quote)
        token = event.get("replyToken")
        if isinstance(token, str) and token not in self._reply_tokens:
            target = group_id if isinstance(group_id, str) else user_id
            if isinstance(target, str):
                now = self.now()
                self._reply_tokens[token] = _ReplyToken(target, now, now + REPLY_TOKEN_TTL)

    def _next_message_id(self) -> str:
        return str(next(self._message_ids))

    def _month(self) -> tuple[int, int]:
        local = self.now().astimezone(JST)
        return local.year, local.month

    # ------------------------------------------------------------------ Messaging API surface

    def _api_routes(self) -> list[Route]:
        send = ["POST"]
        return [
            Route("/v2/bot/message/reply", self._endpoint(self._reply), methods=send),
            Route("/v2/bot/message/push", self._endpoint(self._push), methods=send),
            Route("/v2/bot/message/multicast", self._endpoint(self._multicast), methods=send),
            Route("/v2/bot/message/quota", self._endpoint(self._quota), methods=["GET"]),
            Route("/v2/bot/message/quota/consumption", self._endpoint(self._consumption), methods=["GET"]),
            Route("/v2/bot/info", self._endpoint(self._bot_info), methods=["GET"]),
            Route("/v2/bot/profile/{user_id}", self._endpoint(self._profile), methods=["GET"]),
            # The data API (api-data.line.me on LINE; the same host here): content of messages users sent.
            Route("/v2/bot/message/{message_id}/content", self._endpoint(self._content), methods=["GET"]),
            Route("/v2/bot/richmenu", self._endpoint(self._create_rich_menu), methods=["POST"]),
            Route("/v2/bot/richmenu/list", self._endpoint(self._list_rich_menus), methods=["GET"]),
            Route("/v2/bot/richmenu/{rich_menu_id}", self._endpoint(self._rich_menu), methods=["GET", "DELETE"]),
            Route("/v2/bot/richmenu/{rich_menu_id}/content", self._endpoint(self._rich_menu_image),
                  methods=["GET", "POST"]),
            Route("/v2/bot/user/all/richmenu", self._endpoint(self._default_rich_menu), methods=["GET", "DELETE"]),
            Route("/v2/bot/user/all/richmenu/{rich_menu_id}", self._endpoint(self._set_default_rich_menu),
                  methods=["POST"]),
            Route("/v2/{rest:path}", self._endpoint(self._not_found),
                  methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        ]

    def _endpoint(self, handler: _Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            call = _Call(request_id=str(uuid.uuid4()), retry_key=request.headers.get("x-line-retry-key"))
            response = await self._process(request, handler, call)
            response.headers["x-line-request-id"] = call.request_id
            self.requests.append(ApiRequest(request.method, request.url.path, response.status_code, call.retry_key,
                                            call.request_id, self.now(), call.body))
            return response

        return endpoint

    async def _process(self, request: Request, handler: _Handler, call: _Call) -> Response:
        auth = request.headers.get("authorization", "")
        expected = f"Bearer {self.channel_access_token}"
        if not hmac.compare_digest(auth.encode("utf-8"), expected.encode("utf-8")):
            return _error(401, AUTH_FAILED)
        if request.method in ("POST", "PUT", "PATCH"):
            declared = request.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
                return _error(413, TOO_LARGE)
            call.raw = await request.body()
            if len(call.raw) > MAX_BODY_BYTES:
                return _error(413, TOO_LARGE)
        failure = self._take_failure(request.url.path)
        if failure is not None and not failure.accept_before_failing:
            return await _failure_response(failure)
        response = await handler(request, call)
        if failure is not None:
            return await _failure_response(failure)
        return response

    def _take_failure(self, path: str) -> _Failure | None:
        queue = self._failures.get(path)
        if not queue:
            return None
        failure = queue[0]
        failure.remaining -= 1
        if failure.remaining <= 0:
            queue.pop(0)
        return failure

    async def _reply(self, request: Request, call: _Call) -> Response:
        return self._send("reply", call)

    async def _push(self, request: Request, call: _Call) -> Response:
        return self._send("push", call)

    async def _multicast(self, request: Request, call: _Call) -> Response:
        return self._send("multicast", call)

    def _send(self, via: Via, call: _Call) -> Response:
        """The common path of reply/push/multicast. Synchronous on purpose: with no await between the checks and
        the delivery, concurrent requests cannot interleave (no double use of a token or a retry key)."""
        bucket = self._buckets.get(via)
        if bucket is not None and not bucket.try_take():
            self.rate_limited[via] += 1
            return _error(429, RATE_LIMITED)
        try:
            body = json.loads(call.raw.decode("utf-8"))
        except UnicodeDecodeError:
            return _error(400, "The request body could not be parsed as JSON")
        except json.JSONDecodeError as exc:
            where = f"(line: {exc.lineno}, column: {exc.colno})"
            return _error(400, f"The request body could not be parsed as JSON {where}")
        call.body = body
        if not isinstance(body, dict):
            return _error(400, "The request body could not be parsed as JSON")

        key = call.retry_key
        if key is not None:
            if via == "reply":
                return _error(400, RETRY_KEY_UNSUPPORTED)
            if not _UUID_RE.match(key):
                return _error(400, RETRY_KEY_INVALID)
            key = key.lower()
            accepted = self._retry_keys.get(key)
            if accepted is not None and self.now() - accepted.accepted_at < RETRY_KEY_TTL:
                conflict = {"message": RETRY_KEY_ACCEPTED, **accepted.response_body}
                return JSONResponse(conflict, status_code=409,
                                    headers={"x-line-accepted-request-id": accepted.request_id})

        details: list[Detail] = []
        if via == "reply":
            if not isinstance(body.get("replyToken"), str):
                details.append({"message": "must be specified", "property": "replyToken"})
        elif via == "push":
            if not isinstance(body.get("to"), str):
                details.append({"message": "must be specified", "property": "to"})
        else:
            to = body.get("to")
            if to is None:
                details.append({"message": "must be specified", "property": "to"})
            elif not isinstance(to, list) or not 1 <= len(to) <= MAX_MULTICAST_RECIPIENTS:
                details.append({"message": f"Size must be between 1 and {MAX_MULTICAST_RECIPIENTS}",
                                "property": "to"})
        validate_messages(body.get("messages"), details)
        for index, message in enumerate(body.get("messages") or []):
            quote = message.get("quoteToken") if isinstance(message, dict) else None
            if quote is not None and quote not in self._quote_tokens:
                details.append({"message": "The quote token is invalid", "property": f"messages[{index}].quoteToken"})
        if details:
            return JSONResponse(body_errors(details), status_code=400)
        messages: list[dict[str, Any]] = body["messages"]

        now = self.now()
        token: _ReplyToken | None = None
        if via == "reply":
            token = self._reply_tokens.get(body["replyToken"])
            if token is None or token.used or now >= token.expires_at:
                return _error(400, INVALID_REPLY_TOKEN)
            recipients = [token.target]
        elif via == "push":
            target = body["to"]
            if target not in self._users and target not in self._groups:
                return _error(400, FAILED_TO_SEND)
            recipients = [target] if (target in self._groups or self.is_friend(target)) else []
        else:
            recipients = [u for u in dict.fromkeys(body["to"]) if isinstance(u, str) and self.is_friend(u)]

        counted = 0 if via == "reply" else len(recipients)
        if self._quota_limit is not None and counted and self.quota_used + counted > self._quota_limit:
            return _error(429, MONTHLY_LIMIT)

        # Accepted: deliver, count, remember the token use and the retry key.
        if token is not None:
            token.used = True
        response_body: dict[str, Any] = {}
        if via != "multicast":
            response_body = {"sentMessages": [self._sent_message(m) for m in messages]}
        ids = tuple(sent["id"] for sent in response_body.get("sentMessages", []))
        for recipient in recipients:
            self.delivered.append(Delivered(recipient, copy.deepcopy(messages), via, call.request_id, key, now, ids))
        if counted:
            month = self._month()
            self._usage[month] = self._usage.get(month, 0) + counted
        if key is not None:
            self._retry_keys[key] = _AcceptedKey(now, call.request_id, response_body)
        return JSONResponse(response_body)

    def _sent_message(self, message: dict[str, Any]) -> dict[str, str]:
        sent = {"id": self._next_message_id()}
        # Only messages that can be quoted get a quote token (reference: "sentMessages").
        if message.get("type") in ("text", "sticker"):
            sent["quoteToken"] = ev.new_quote_token()
            self._quote_tokens.add(sent["quoteToken"])
        return sent

    async def _quota(self, request: Request, call: _Call) -> Response:
        if self._quota_limit is None:
            return JSONResponse({"type": "none"})
        return JSONResponse({"type": "limited", "value": self._quota_limit})

    async def _consumption(self, request: Request, call: _Call) -> Response:
        return JSONResponse({"totalUsage": self.quota_used})

    async def _bot_info(self, request: Request, call: _Call) -> Response:
        return JSONResponse({
            "userId": self.bot_user_id,
            "basicId": self.basic_id,
            "displayName": self.bot_display_name,
            "chatMode": "bot",
            "markAsReadMode": "auto",
        })

    async def _profile(self, request: Request, call: _Call) -> Response:
        user = self._users.get(request.path_params["user_id"])
        if user is None:
            return _error(404, NOT_FOUND)
        return JSONResponse({"userId": user.user_id, "displayName": user.display_name, "language": "ja"})

    async def _content(self, request: Request, call: _Call) -> Response:
        found = self._contents.get(request.path_params["message_id"])
        if found is None:
            return _error(404, NOT_FOUND)
        return Response(found[0], media_type=found[1])

    # ------------------------------------------------------------------ rich menus

    async def _create_rich_menu(self, request: Request, call: _Call) -> Response:
        try:
            body = json.loads(call.raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return _error(400, "The request body could not be parsed as JSON")
        call.body = body
        details: list[Detail] = []
        validate_rich_menu(body, details)
        if details:
            return JSONResponse(body_errors(details), status_code=400)
        if len(self.rich_menus) >= MAX_RICH_MENUS:
            return _error(400, f"The maximum number of rich menus ({MAX_RICH_MENUS}) has been reached")
        rich_menu_id = f"richmenu-{uuid.uuid4().hex}"
        self.rich_menus[rich_menu_id] = RichMenu(rich_menu_id, copy.deepcopy(body))
        return JSONResponse({"richMenuId": rich_menu_id})

    def _rich_menu_json(self, menu: RichMenu) -> dict[str, Any]:
        return {"richMenuId": menu.rich_menu_id, **menu.body}

    async def _list_rich_menus(self, request: Request, call: _Call) -> Response:
        return JSONResponse({"richmenus": [self._rich_menu_json(m) for m in self.rich_menus.values()]})

    async def _rich_menu(self, request: Request, call: _Call) -> Response:
        rich_menu_id = request.path_params["rich_menu_id"]
        menu = self.rich_menus.get(rich_menu_id)
        if menu is None:
            return _error(404, RICH_MENU_NOT_FOUND)
        if request.method == "GET":
            return JSONResponse(self._rich_menu_json(menu))
        del self.rich_menus[rich_menu_id]
        if self.default_rich_menu_id == rich_menu_id:
            self.default_rich_menu_id = None
        return JSONResponse({})

    async def _rich_menu_image(self, request: Request, call: _Call) -> Response:
        menu = self.rich_menus.get(request.path_params["rich_menu_id"])
        if menu is None:
            return _error(404, RICH_MENU_NOT_FOUND)
        if request.method == "GET":
            if menu.image is None:
                return _error(404, NOT_FOUND)
            return Response(menu.image, media_type=menu.image_type)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in RICH_MENU_IMAGE_TYPES:
            return _error(415, f"Content-Type must be one of {', '.join(RICH_MENU_IMAGE_TYPES)}")
        if len(call.raw) > MAX_RICH_MENU_IMAGE_BYTES:
            return _error(413, TOO_LARGE)
        if menu.image is not None:
            return _error(400, IMAGE_ALREADY_UPLOADED)
        size = _image_size(call.raw, content_type)
        if size is None:
            return _error(400, f"The image is not a readable {content_type}")
        wanted = (menu.body["size"]["width"], menu.body["size"]["height"])
        if size != wanted:
            return _error(400, f"The image size {size[0]}x{size[1]} must match the rich menu size "
                               f"{wanted[0]}x{wanted[1]}")
        menu.image, menu.image_type = call.raw, content_type
        return JSONResponse({})

    async def _set_default_rich_menu(self, request: Request, call: _Call) -> Response:
        menu = self.rich_menus.get(request.path_params["rich_menu_id"])
        if menu is None:
            return _error(404, RICH_MENU_NOT_FOUND)
        if menu.image is None:
            return _error(400, IMAGE_NOT_UPLOADED)
        self.default_rich_menu_id = menu.rich_menu_id
        return JSONResponse({})

    async def _default_rich_menu(self, request: Request, call: _Call) -> Response:
        if request.method == "DELETE":
            self.default_rich_menu_id = None
            return JSONResponse({})
        if self.default_rich_menu_id is None:
            return _error(404, NO_DEFAULT_RICH_MENU)
        return JSONResponse({"richMenuId": self.default_rich_menu_id})

    async def _not_found(self, request: Request, call: _Call) -> Response:
        return _error(404, NOT_FOUND)

    # ------------------------------------------------------------------ control surface

    def control_routes(self) -> list[Route]:
        """JSON routes under ``/_emulator/`` (no auth; loopback only) mirroring the Python API:

        - ``GET  /_emulator/state`` -> bot, webhook_url, quota ``{limit, used}``, users, rich_menus ``{ids,
          default}``, groups, rate_limited
        - ``POST /_emulator/users`` ``{user_id?, display_name?, friend?}`` -> ``{user_id}``
        - ``POST /_emulator/follow`` ``{user_id, is_unblocked?}``, ``/unfollow`` ``{user_id}``,
          ``/text`` ``{user_id, text, quoted_message_id?}``, ``/postback`` ``{user_id, data}``, ``/group_text`` ``{group_id, user_id,
          text}``, ``/redeliver`` ``{event}`` -> ``{status, event}``; ``/events`` ``{events}`` -> ``{status, events}``
        - ``GET  /_emulator/delivered[?user_id=U...]`` -> ``{delivered: [...]}``; ``GET /_emulator/requests``
        - ``POST /_emulator/quota`` ``{limit, used?}``, ``/webhook_url`` ``{url}``, ``/rate_limit``
          ``{multicast_per_second?, push_per_second?}``, ``/fail_next`` ``{path, status, body?, count?,
          accept_before_failing?, delay?}``, ``/clear``
        Bad input -> 400 ``{"error": ...}``; injection without a webhook URL -> 409.
        """
        c = "/_emulator"
        return [
            Route(f"{c}/state", self._c_state, methods=["GET"]),
            Route(f"{c}/users", self._control(self._c_users), methods=["POST"]),
            Route(f"{c}/follow", self._control(lambda b: self._one(self.follow(b["user_id"],
                                                                                bool(b.get("is_unblocked"))))),
                  methods=["POST"]),
            Route(f"{c}/unfollow", self._control(lambda b: self._one(self.unfollow(b["user_id"]))), methods=["POST"]),
            Route(f"{c}/text", self._control(lambda b: self._one(self.send_text(
                b["user_id"], b["text"], quoted_message_id=b.get("quoted_message_id")))), methods=["POST"]),
            Route(f"{c}/postback", self._control(lambda b: self._one(self.postback(b["user_id"], b["data"]))),
                  methods=["POST"]),
            Route(f"{c}/group_text", self._control(
                lambda b: self._one(self.send_group_text(b["group_id"], b["user_id"], b["text"]))), methods=["POST"]),
            Route(f"{c}/redeliver", self._control(lambda b: self._one(self.redeliver(b["event"]))), methods=["POST"]),
            Route(f"{c}/events", self._control(self._c_events), methods=["POST"]),
            Route(f"{c}/delivered", self._c_delivered, methods=["GET"]),
            Route(f"{c}/requests", self._c_requests, methods=["GET"]),
            Route(f"{c}/quota", self._control(self._c_quota), methods=["POST"]),
            Route(f"{c}/webhook_url", self._control(self._c_webhook_url), methods=["POST"]),
            Route(f"{c}/rate_limit", self._control(self._c_rate_limit), methods=["POST"]),
            Route(f"{c}/fail_next", self._control(self._c_fail_next), methods=["POST"]),
            Route(f"{c}/clear", self._control(self._c_clear), methods=["POST"]),
        ]

    def _control(self, action: Callable[[dict[str, Any]], Awaitable[dict[str, Any]] | dict[str, Any]]):
        async def endpoint(request: Request) -> Response:
            raw = await request.body()
            try:
                body = json.loads(raw) if raw else {}
                if not isinstance(body, dict):
                    raise ValueError("the body must be a JSON object")
                result = action(body)
                if asyncio.iscoroutine(result):
                    result = await result
            except RuntimeError as exc:
                return JSONResponse({"error": str(exc)}, status_code=409)
            except (KeyError, TypeError, ValueError) as exc:
                return JSONResponse({"error": f"bad request: {exc!r}"}, status_code=400)
            return JSONResponse(result)

        return endpoint

    @staticmethod
    async def _one(injection: Awaitable[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
        status, event = await injection
        return {"status": status, "event": event}

    async def _c_users(self, body: dict[str, Any]) -> dict[str, Any]:
        user_id = await self.add_user(body.get("user_id"), body.get("display_name", "花子"),
                                      friend=bool(body.get("friend", False)))
        return {"user_id": user_id}

    async def _c_events(self, body: dict[str, Any]) -> dict[str, Any]:
        events = body["events"]
        if not isinstance(events, list):
            raise ValueError("events must be a list")
        status, sent = await self.send_events(events)
        return {"status": status, "events": sent}

    def _c_quota(self, body: dict[str, Any]) -> dict[str, Any]:
        self.set_quota(body["limit"], used=body.get("used"))
        return {"limit": self._quota_limit, "used": self.quota_used}

    def _c_webhook_url(self, body: dict[str, Any]) -> dict[str, Any]:
        self.webhook_url = body["url"]
        return {"webhook_url": self.webhook_url}

    def _c_rate_limit(self, body: dict[str, Any]) -> dict[str, Any]:
        self.rate_limit(body.get("multicast_per_second"), body.get("push_per_second"))
        return {"ok": True}

    def _c_fail_next(self, body: dict[str, Any]) -> dict[str, Any]:
        self.fail_next(body["path"], int(body["status"]), body.get("body"), int(body.get("count", 1)),
                       bool(body.get("accept_before_failing", False)), delay=float(body.get("delay", 0.0)))
        return {"ok": True}

    def _c_clear(self, body: dict[str, Any]) -> dict[str, Any]:
        self.clear_records()
        return {"ok": True}

    async def _c_state(self, request: Request) -> Response:
        return JSONResponse({
            "bot": {"userId": self.bot_user_id, "basicId": self.basic_id, "displayName": self.bot_display_name},
            "webhook_url": self.webhook_url,
            "quota": {"limit": self._quota_limit, "used": self.quota_used},
            "users": [asdict(u) for u in self._users.values()],
            "rich_menus": {"ids": list(self.rich_menus), "default": self.default_rich_menu_id},
            "groups": {g: sorted(m) for g, m in self._groups.items()},
            "rate_limited": dict(self.rate_limited),
        })

    async def _c_delivered(self, request: Request) -> Response:
        user_id = request.query_params.get("user_id")
        rows = self.delivered if user_id is None else self.deliveries_to(user_id)
        return JSONResponse({"delivered": [_jsonable(asdict(d)) for d in rows]})

    async def _c_requests(self, request: Request) -> Response:
        return JSONResponse({"requests": [_jsonable(asdict(r)) for r in self.requests]})


@dataclass
class _Call:
    """What one API request carries through the pipeline."""

    request_id: str
    retry_key: str | None
    raw: bytes = b""
    body: Any = None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status)


async def _failure_response(failure: _Failure) -> Response:
    if failure.delay > 0:
        await asyncio.sleep(failure.delay)
    if isinstance(failure.body, (dict, list)):
        return JSONResponse(failure.body, status_code=failure.status)
    return Response(failure.body or b"", status_code=failure.status, media_type="application/json")


def _image_size(data: bytes, content_type: str) -> tuple[int, int] | None:
    """(width, height) of a PNG/JPEG whose bytes are of ``content_type``, or None when they are not such a picture."""
    from PIL import Image, UnidentifiedImageError  # only rich menu uploads need it

    wanted = {"image/png": "PNG", "image/jpeg": "JPEG"}[content_type]
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.size if image.format == wanted else None
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


# ---------------------------------------------------------------------- standalone


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bots.sandbox.line_api",
        description="Run the LINE Messaging API emulator on 127.0.0.1 (control surface under /_emulator/).",
    )
    parser.add_argument("--token", required=True, help="channel access token the emulator accepts")
    parser.add_argument("--secret", required=True, help="channel secret used to sign webhooks")
    parser.add_argument("--webhook-url", default=None, help="where user activity is POSTed, e.g. "
                                                            "http://127.0.0.1:8000/webhooks/line")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = any free port)")
    parser.add_argument("--basic-id", default="@otayori-sandbox", help="basic id reported by /v2/bot/info")
    parser.add_argument("--quota", type=int, default=None, help="monthly message quota (default: unlimited)")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    emulator = LineEmulator(args.token, args.secret, webhook_url=args.webhook_url, basic_id=args.basic_id)
    emulator.set_quota(args.quota)
    url = await emulator.start(port=args.port)
    print(f"LINE emulator on {url} (control: {url}/_emulator/state); Ctrl-C stops it", flush=True)
    try:
        await asyncio.Event().wait()  # serve until cancelled (Ctrl-C)
    finally:
        await emulator.stop()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m bots.sandbox.line_api``."""
    args = _parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
