"""A local emulator of the Telegram Bot API, for tests, the demo and benchmarks (loopback only).

Point python-telegram-bot at it with ``Bot(token, base_url=emulator.api_url, base_file_url=emulator.file_url)`` or
``ApplicationBuilder().token(token).base_url(emulator.api_url).base_file_url(emulator.file_url)``.

Wire format (as the real server, https://core.telegram.org/bots/api#making-requests): ``GET|POST
/bot<token>/<method>``; the method name is case-insensitive; parameters come from the query string and from an
``application/x-www-form-urlencoded``, ``multipart/form-data`` or ``application/json`` body. In form bodies every value
is a string and structured values (``reply_markup``, ``reply_parameters``, ``allowed_updates``...) are JSON text: this
is what PTB sends (``RequestData.json_parameters``: strings as-is, everything else ``json.dumps``-ed, files as
multipart). Answers are ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": N, "description": "...",
"parameters": {...}}`` with HTTP status N. A well-formed but wrong token gets 401 ``Unauthorized``; a malformed token
or an unknown method 404 ``Not Found``; a real Bot API method the emulator does not implement 400 ``Bad Request:
method not supported by emulator``.

Implemented methods: getMe, getUpdates, setWebhook, deleteWebhook, getWebhookInfo, setMyCommands, getMyCommands,
deleteMyCommands, sendMessage, sendPhoto, editMessageText, editMessageReplyMarkup, deleteMessage,
answerCallbackQuery, getFile (with downloads under ``/file/bot<token>/``), sendChatAction, close, logOut. Text rules and error wording follow the real server (tdlib).
Companion modules: ``telegram_markup`` (HTML/MarkdownV2 parsing), ``telegram_wire`` (method names, parameters, error
answers), ``telegram_records`` (the dataclasses below), ``telegram_flood`` (429s), ``telegram_control`` (/_emulator/),
``telegram_photos`` (sendPhoto's checks of an upload, PhotoSize answers, sending again by ``file_id``).

Simulated users are driven in-process (``add_user``, ``send_text``, ``press_button``, ``block``...; plain methods that
enqueue updates and return the ``update_id``) or from another process over the JSON control surface under
``/_emulator/`` (``bots.sandbox.telegram_control``). Knobs for delivery tests: ``rate_limit``, ``fail_next``,
``migrate_chat``.

Simplifications (documented so nobody relies on them): one webhook request at a time, in update order, up to
``webhook_max_attempts`` tries per update (``lose_webhook_answers`` makes a 2xx count as a failure, to test
deduplication of retries); no replies-in-webhook-response; only photos can be downloaded (every size
as sent); no auto-detected URL/mention entities (only ``bot_command`` in users' text); a photo URL is recorded, never
fetched; message ids count per chat from 1; callback queries never expire; ``logOut`` makes every later request 401
until ``start()`` runs again.

Run standalone: ``python -m bots.sandbox.telegram_api --token 123456:TEST --port 8081`` (127.0.0.1 only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import signal
import time
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from bots.sandbox.server import LocalServer, is_loopback_host
from bots.sandbox.telegram_control import control_routes
from bots.sandbox.telegram_flood import FloodControl
from bots.sandbox.telegram_markup import (
    EntityParseError,
    bot_command_entities,
    parse_text,
    strip_outer_whitespace,
)
from bots.sandbox.telegram_photos import PhotoStore
from bots.sandbox.telegram_records import (
    AnsweredCallback,
    ApiCall,
    MessageEdit,
    SentMessage,
    SimChat,
    SimUser,
    UploadedFile,
    WebhookDelivery,
)
from bots.sandbox.telegram_wire import (
    BOT_API_METHODS,
    ApiError,
    json_response,
    read_params,
    summarise,
    to_bool,
    to_float,
    to_int,
    to_json,
    to_str,
)

__all__ = [
    "AnsweredCallback",
    "ApiCall",
    "ApiError",
    "MessageEdit",
    "SentMessage",
    "SimChat",
    "SimUser",
    "TelegramEmulator",
    "UploadedFile",
    "WebhookDelivery",
]

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

# Sources: https://core.telegram.org/bots/api#sendmessage (text 1-4096 characters after entities parsing),
# #sendphoto (caption 0-1024), #inlinekeyboardbutton (callback_data 1-64 bytes), #botcommand ([a-z0-9_]{1,32},
# description 1-256), #getupdates (limit 1-100; allowed_updates default excludes these three), #setwebhook
# (secret_token 1-256 of A-Z a-z 0-9 _ -).
TEXT_MAX_CHARACTERS = 4096
CAPTION_MAX_CHARACTERS = 1024
CALLBACK_DATA_MAX_BYTES = 64
_COMMAND_NAME = re.compile(r"^[a-z0-9_]{1,32}$")
_SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_TOKEN_FORMAT = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
_NOT_DEFAULT_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_UPDATE_TYPES = frozenset(
    {"message", "edited_message", "channel_post", "edited_channel_post", "business_connection", "business_message",
     "edited_business_message", "deleted_business_messages", "message_reaction", "message_reaction_count",
     "inline_query", "chosen_inline_result", "callback_query", "shipping_query", "pre_checkout_query",
     "purchased_paid_media", "poll", "poll_answer", "my_chat_member", "chat_member", "chat_join_request",
     "chat_boost", "removed_chat_boost"}
)
#: Bot API MessageOrigin types (https://core.telegram.org/bots/api#messageorigin).
_ORIGIN_TYPES = frozenset({"user", "hidden_user", "chat", "channel"})
_RATE_LIMITED_METHODS = frozenset({"sendMessage", "sendPhoto", "editMessageText", "editMessageReplyMarkup"})
_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a "
    "current content and reply markup of the message"
)
_QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"


@dataclass
class _InjectedFailure:
    method: str
    status: int
    description: str
    parameters: dict | None
    remaining: int


# ---------------------------------------------------------------------------------------------------------------------


class TelegramEmulator:
    """An in-process Telegram Bot API server with simulated users (see the module docstring for the wire format).

    Args:
        token: the bot token requests must carry (``/bot<token>/<method>``).
        bot_username: the bot's username (without ``@``), returned by getMe and used by PTB's CommandHandler.
        bot_id: the bot's user id; default: the number before ``:`` in ``token`` (as on Telegram), else 7000000001.
        bot_first_name: the bot's display name.
        privacy_mode: Telegram's default group privacy: in groups the bot only receives commands and messages that
            mention it (``send_group_text`` returns None for the others).
        first_update_id: the first ``update_id`` handed out; later ones increase by one.
        webhook_retry_seconds: pause after a failed webhook delivery before the next attempt.
        webhook_max_attempts: attempts per update before the emulator drops it (recorded in ``webhook_deliveries``).

    Records (read them in tests): ``sent`` (every message the bot sent, ``SentMessage``), ``answered_callbacks``,
    ``calls`` (the last 10,000 API requests), ``webhook_deliveries``, ``too_many_requests`` (429 answers given),
    ``retry_after_violations`` (requests that came in before a 429's ``retry_after`` had passed).
    All injection methods must be called from the event loop the emulator runs in.
    """

    def __init__(
        self,
        token: str,
        *,
        bot_username: str = "otayori_sandbox_bot",
        bot_id: int | None = None,
        bot_first_name: str = "お便りサンドボックス",
        privacy_mode: bool = True,
        first_update_id: int = 100_000_001,
        webhook_retry_seconds: float = 0.2,
        webhook_max_attempts: int = 10,
    ) -> None:
        self.token = token
        self.bot_username = bot_username
        prefix = token.split(":", 1)[0]
        self.bot_id = bot_id if bot_id is not None else (int(prefix) if prefix.isdigit() else 7_000_000_001)
        self.bot_first_name = bot_first_name
        self.privacy_mode = privacy_mode
        self.webhook_retry_seconds = webhook_retry_seconds
        self.webhook_max_attempts = webhook_max_attempts

        self.sent: list[SentMessage] = []
        self.answered_callbacks: list[AnsweredCallback] = []
        self.calls: deque[ApiCall] = deque(maxlen=10_000)
        self.webhook_deliveries: list[WebhookDelivery] = []

        self._users: dict[int, SimUser] = {}
        self._groups: dict[int, SimChat] = {}
        self._migrated: dict[int, int] = {}
        self._messages: dict[tuple[int, int], dict] = {}  # (chat id, message id) -> Bot API Message (current version)
        self._records: dict[tuple[int, int], SentMessage] = {}
        self._next_message_id: dict[int, int] = {}
        self._pending: list[dict] = []
        self._next_update_id = first_update_id
        self._allowed_updates: frozenset[str] | None = None
        self._poll_generation = 0
        self._waiting_polls = 0
        self._callback_queries: dict[str, dict] = {}  # id -> {"update_id", "user_id", "message_id", "data"}
        self._next_callback_id = 1
        self._commands: dict[tuple[str, str], list[dict]] = {}
        self._webhook: dict[str, Any] | None = None
        self._webhook_task: asyncio.Task | None = None
        self._webhook_attempts: dict[int, int] = {}
        self._lost_webhook_answers = 0  # lose_webhook_answers(): 2xx answers to treat as never received
        self._flood = FloodControl()
        self._photos = PhotoStore()  # uploads by file_id, for sendPhoto with a file_id
        self._files: dict[str, bytes] = {}  # getFile's file_path -> the bytes to download
        self._failures: list[_InjectedFailure] = []
        self._held_answers: dict[str, float] = {}  # method -> seconds the answer waits after the call is processed
        self._logged_out = False
        self._closing = False
        self._changed = asyncio.Event()
        self._server: LocalServer | None = None
        self._url: str | None = None
        self._handlers: dict[str, Callable[[dict], Awaitable[Any]]] = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "sendMessage": self._send_message,
            "sendPhoto": self._send_photo,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "getFile": self._get_file,
            "sendChatAction": self._send_chat_action,
            "close": self._close,
            "logOut": self._log_out,
        }
        self.app = self._build_app()

    # -- lifecycle -----------------------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (loopback only; 0 = a free port). Returns the base URL ``http://127.0.0.1:PORT``."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        self._closing = False
        self._logged_out = False
        self._changed = asyncio.Event()  # never reuse an event a previous event loop may have waited on
        server = LocalServer(self.app, host=host, port=port)
        self._url = await server.start()
        self._server = server
        if self._webhook is not None:
            self._ensure_webhook_worker()
        return self._url

    async def stop(self) -> None:
        """Release waiting long polls, stop webhook delivery and the server. Safe to call twice."""
        self._closing = True
        self._notify()
        task, self._webhook_task = self._webhook_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        server, self._server = self._server, None
        if server is not None:
            await server.stop()

    async def __aenter__(self) -> TelegramEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """Base URL ``http://127.0.0.1:PORT`` (after ``start()``)."""
        if self._url is None:
            raise RuntimeError("the emulator is not started")
        return self._url

    @property
    def api_url(self) -> str:
        """PTB ``base_url``: ``<url>/bot`` (PTB appends the token)."""
        return f"{self.url}/bot"

    @property
    def file_url(self) -> str:
        """PTB ``base_file_url``: ``<url>/file/bot`` (photos found with ``getFile`` download from there)."""
        return f"{self.url}/file/bot"

    @property
    def bot_user(self) -> dict:
        """The bot's Bot API ``User`` object (as getMe returns it, minus capability flags)."""
        return {"id": self.bot_id, "is_bot": True, "first_name": self.bot_first_name, "username": self.bot_username}

    @property
    def pending_updates(self) -> list[dict]:
        """Updates not yet confirmed by getUpdates ``offset`` (or not yet delivered to the webhook), oldest first."""
        return list(self._pending)

    @property
    def polls_in_progress(self) -> int:
        """How many getUpdates requests are being answered right now (a polling bot has one waiting)."""
        return self._waiting_polls

    @property
    def too_many_requests(self) -> int:
        """How many 429 answers flood control gave."""
        return self._flood.too_many_requests

    @property
    def retry_after_violations(self) -> int:
        """How many sends arrived while an earlier 429's ``retry_after`` was still running."""
        return self._flood.retry_after_violations

    @property
    def webhook_url(self) -> str | None:
        """The webhook URL set by setWebhook, or None."""
        return self._webhook["url"] if self._webhook else None

    # -- simulated users (injection API) -------------------------------------------------------------------------

    def add_user(
        self,
        user_id: int | None = None,
        first_name: str = "太郎",
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "ja",
        *,
        started: bool = True,
    ) -> SimUser:
        """Register a user (and their private chat, id == user id). ``started=False``: they never opened the bot, so
        sends get 403 until they write to it. ``user_id`` default: the next free id from 5,000,000,001. Raises
        ValueError for a non-positive or already registered id."""
        if user_id is None:
            user_id = max([5_000_000_000, *self._users]) + 1
        if user_id <= 0:
            raise ValueError("user ids are positive (negative ids are groups)")
        if user_id in self._users:
            raise ValueError(f"user {user_id} already exists")
        user = SimUser(user_id, first_name, last_name, username, language_code, started=started)
        self._users[user_id] = user
        return user

    def user(self, user_id: int) -> SimUser:
        """The registered user (KeyError names the known ids)."""
        try:
            return self._users[user_id]
        except KeyError:
            raise KeyError(f"unknown user {user_id}; known: {sorted(self._users)}") from None

    @property
    def users(self) -> list[SimUser]:
        """All registered users."""
        return list(self._users.values())

    def add_group(self, chat_id: int, title: str = "テストグループ", *, chat_type: str = "group") -> SimChat:
        """Register a group (negative id) the bot is a member of. ``chat_type``: ``group`` or ``supergroup``."""
        if chat_id >= 0:
            raise ValueError("group chat ids are negative")
        if chat_type not in ("group", "supergroup"):
            raise ValueError("chat_type is 'group' or 'supergroup'")
        group = self._groups.get(chat_id)
        if group is None:
            group = self._groups[chat_id] = SimChat(chat_id, title, chat_type)
        return group

    def send_text(
        self, user_id: int, text: str, *, reply_to_message_id: int | None = None, parse_mode: str | None = None,
        forward_origin: dict | None = None,
    ) -> int | None:
        """The user writes ``text`` to the bot in their private chat; returns the ``update_id``.

        A leading (or any) ``/command`` gets a ``bot_command`` entity, so ``/start seminar1`` reaches PTB's
        CommandHandler with ``args == ["seminar1"]``. ``parse_mode`` (``HTML``, ``MarkdownV2``): the user formatted
        the text in their client (bold, italic, links): the update carries the plain text and its formatting
        entities, exactly as a client sends them (UTF-16 offsets). ``forward_origin``: the message was forwarded from
        elsewhere — a Bot API MessageOrigin (``{"type": "user", "sender_user": {...}}``, ``hidden_user`` with
        ``sender_user_name``, ``chat`` with ``sender_chat``, or ``channel`` with ``chat`` and ``message_id``;
        ``date`` is filled in). A user who blocked the bot unblocks it first (the client's "Restart" does that),
        which enqueues a ``my_chat_member`` update before the message. Returns None when ``allowed_updates``
        excludes messages. Raises ValueError for empty/too long text, bad markup, an unknown origin type or a
        deactivated user, KeyError for an unknown user.
        """
        user = self.user(user_id)
        formatting: list[dict] = []
        if parse_mode:
            try:
                text, formatting = parse_text(text, parse_mode)
            except EntityParseError as exc:
                raise ValueError(f"bad {parse_mode} markup: {exc}") from None
        self._check_user_text(user, text)
        if forward_origin is not None and forward_origin.get("type") not in _ORIGIN_TYPES:
            raise ValueError(f"forward_origin type must be one of {sorted(_ORIGIN_TYPES)}")
        if user.blocked:
            self.unblock(user_id)
        user.started = True
        message = self._user_message(user, user.chat_api(), text, reply_to_message_id, formatting)
        if forward_origin is not None:
            message["forward_origin"] = {"date": int(time.time()), **forward_origin}
        return self._enqueue("message", message)

    def send_photo(self, user_id: int, data: bytes, *, caption: str | None = None,
                   parse_mode: str | None = None) -> int | None:
        """The user sends a photo (JPEG or PNG ``data``) to the bot in their private chat, with an optional
        ``caption`` (formatted with ``parse_mode`` like :meth:`send_text`); returns the ``update_id``.

        The update's ``photo`` is Telegram's PhotoSize list (a thumbnail and the photo), each with a ``file_id`` the
        bot can pass to ``getFile`` and then download from ``<file_url><token>/<file_path>`` (both sizes download the
        photo as sent: the emulator does not scale pictures). Raises ValueError for a picture Telegram would refuse,
        a caption over 1,024 characters or bad markup, KeyError for an unknown user.
        """
        user = self.user(user_id)
        upload = UploadedFile("photo.jpg", "image/jpeg", data)
        try:
            self._photos.accept_upload(upload)
        except ApiError as exc:
            raise ValueError(f"Telegram would refuse this photo: {exc.description}") from None
        text, entities = "", []
        if caption:
            try:
                text, entities = parse_text(caption, parse_mode)
            except EntityParseError as exc:
                raise ValueError(f"bad {parse_mode} markup: {exc}") from None
            if len(text) > CAPTION_MAX_CHARACTERS:
                raise ValueError("Telegram clients refuse captions longer than 1024 characters")
        if user.deactivated:
            raise ValueError(f"user {user.id} is deactivated")
        if user.blocked:
            self.unblock(user_id)
        user.started = True
        chat = user.chat_api()
        message: dict[str, Any] = {"message_id": self._take_message_id(chat["id"]), "from": user.to_api(),
                                   "chat": chat, "date": int(time.time()), "photo": self._photos.sizes(upload)}
        if text:
            message["caption"] = text
            if entities:
                message["caption_entities"] = entities
        self._messages[(chat["id"], message["message_id"])] = message
        return self._enqueue("message", message)

    def send_group_text(
        self, group_chat_id: int, user_id: int, text: str, *, title: str | None = None
    ) -> int | None:
        """The user writes ``text`` in a group (registered on first use, type ``group``); returns the ``update_id``.

        With ``privacy_mode`` (Telegram's default) only commands (``/cmd`` or ``/cmd@<bot>``) and texts mentioning
        ``@<bot_username>`` reach the bot; others return None. An unknown ``user_id`` is registered with
        ``started=False``. Raises ValueError for a migrated group (write to the new id).
        """
        group = self._groups.get(group_chat_id) or self.add_group(group_chat_id, title or "テストグループ")
        if group.migrated_to is not None:
            raise ValueError(f"group {group_chat_id} migrated to {group.migrated_to}")
        user = self._users.get(user_id) or self.add_user(user_id, started=False)
        self._check_user_text(user, text)
        if self.privacy_mode and not self._meant_for_bot(text):
            return None
        return self._enqueue("message", self._user_message(user, group.to_api(), text, None))

    def press_button(
        self, user_id: int, message_id: int, callback_data: str, *, chat_id: int | None = None
    ) -> int | None:
        """The user presses the inline button carrying ``callback_data`` under the bot's message ``message_id`` in
        ``chat_id`` (default: their private chat). Enqueues a ``callback_query`` update whose ``message`` is that
        message as it is now; returns the ``update_id``. Whether the bot answered shows in ``answered_callbacks``.
        Raises ValueError when there is no such message or button (the error lists the buttons there are).
        """
        user = self.user(user_id)
        if user.deactivated:
            raise ValueError(f"user {user_id} is deactivated")
        chat_id = user_id if chat_id is None else chat_id
        message = self._messages.get((chat_id, message_id))
        record = self._records.get((chat_id, message_id))
        if message is None or record is None or record.deleted:
            raise ValueError(f"no bot message {message_id} in chat {chat_id}")
        available = [b.get("callback_data") for b in record.buttons if "callback_data" in b]
        if callback_data not in available:
            raise ValueError(f"message {message_id} has no button with callback_data {callback_data!r}: {available}")
        query_id = str(self.bot_id * 1_000_000 + self._next_callback_id)
        self._next_callback_id += 1
        chat_instance = str(abs(hash((self.bot_id, chat_id))) % 10**19)
        update_id = self._enqueue(
            "callback_query",
            {
                "id": query_id,
                "from": user.to_api(),
                "message": message,
                "chat_instance": chat_instance,
                "data": callback_data,
            },
        )
        if update_id is not None:
            self._callback_queries[query_id] = {
                "update_id": update_id, "user_id": user_id, "message_id": message_id, "data": callback_data,
            }
        return update_id

    def block(self, user_id: int) -> int | None:
        """The user blocks the bot: enqueues ``my_chat_member`` (member -> kicked); sends to them then get 403
        ``Forbidden: bot was blocked by the user``. Returns the update_id, or None if they had already blocked it."""
        user = self.user(user_id)
        if user.blocked:
            return None
        user.blocked = True
        return self._member_update(user, "member", "kicked")

    def unblock(self, user_id: int) -> int | None:
        """The user unblocks the bot: enqueues ``my_chat_member`` (kicked -> member). Returns the update_id, or None
        if they had not blocked it. (Telegram sends no message with it; call ``send_text(uid, "/start")`` for the
        client's Restart button.)"""
        user = self.user(user_id)
        if not user.blocked:
            return None
        user.blocked = False
        user.started = True
        return self._member_update(user, "kicked", "member")

    def deactivate(self, user_id: int) -> None:
        """The user deletes their account: sends get 403 ``Forbidden: user is deactivated``. No update (as Telegram)."""
        self.user(user_id).deactivated = True
        self._notify()

    def migrate_chat(self, old_id: int, new_id: int) -> None:
        """The group ``old_id`` becomes the supergroup ``new_id`` (ids below -1000000000000 on Telegram): sends to the
        old id get 400 ``group chat was upgraded to a supergroup chat`` with ``parameters.migrate_to_chat_id``, which
        PTB raises as ``ChatMigrated(new_chat_id)``. Enqueues the service message (``migrate_to_chat_id``) in the old
        group, as Telegram does."""
        if old_id >= 0 or new_id >= 0:
            raise ValueError("group chat ids are negative")
        old = self._groups.get(old_id) or self.add_group(old_id)
        old.migrated_to = new_id
        self._migrated[old_id] = new_id
        self._groups[new_id] = SimChat(new_id, old.title, "supergroup")
        self._enqueue(
            "message",
            {"message_id": self._take_message_id(old_id), "date": int(time.time()), "chat": old.to_api(),
             "migrate_to_chat_id": new_id},
        )

    # -- knobs ---------------------------------------------------------------------------------------------------

    def rate_limit(
        self,
        overall_per_second: float | None,
        per_chat_per_second: float | None,
        retry_after: int = 1,
        *,
        per_group_per_minute: int | None = None,
        enforce_retry_after: bool = True,
    ) -> None:
        """Turn flood control on (both rates None and no group rate: off).

        A send (sendMessage, sendPhoto, editMessageText, editMessageReplyMarkup) that would exceed
        ``overall_per_second`` across chats, ``per_chat_per_second`` in one chat or ``per_group_per_minute`` in one
        group (sliding windows; rates below 1 mean one send per 1/rate seconds) is answered 429
        ``Too Many Requests: retry after N`` with ``parameters.retry_after = N`` = ``retry_after`` (PTB:
        ``RetryAfter``), and counted in ``too_many_requests``. With ``enforce_retry_after`` (as Telegram) every send
        in that scope (all chats for the overall limit, else the chat) during the next N seconds is refused too, with
        the seconds left, and counted in ``retry_after_violations``. Source: https://core.telegram.org/bots/faq
        (about 30 msg/s overall, 1/s per chat, 20/min per group).
        """
        self._flood.configure(
            overall_per_second,
            per_chat_per_second,
            retry_after,
            per_group_per_minute=per_group_per_minute,
            enforce_retry_after=enforce_retry_after,
        )

    def fail_next(
        self,
        method: str,
        status: int,
        description: str,
        parameters: dict | None = None,
        count: int = 1,
    ) -> None:
        """Answer the next ``count`` calls of ``method`` (case-insensitive; ``"*"``: any method but getUpdates) with
        ``{"ok": false, "error_code": status, "description": description, "parameters": parameters}`` and HTTP
        ``status``, before any other check. Nothing is recorded as sent. PTB maps 400 -> BadRequest, 403 ->
        Forbidden, 401/404 -> InvalidToken, 409 -> Conflict, others -> NetworkError; ``parameters.retry_after`` ->
        RetryAfter, ``parameters.migrate_to_chat_id`` -> ChatMigrated."""
        if count < 1:
            raise ValueError("count must be at least 1")
        key = "*" if method == "*" else method.lower()
        if key != "*" and key not in BOT_API_METHODS:
            raise ValueError(f"unknown Bot API method {method!r}")
        self._failures.append(_InjectedFailure(key, status, description, parameters, count))

    def hold_answers(self, method: str, seconds: float) -> None:
        """Process every call of ``method`` at once (a message is delivered and recorded) but answer it only after
        ``seconds`` (a slow Bot API: the client cannot tell whether its request arrived until then). ``seconds`` 0
        turns it off. Raises ``ValueError`` for an unknown method or negative seconds."""
        key = method.lower()
        if key not in BOT_API_METHODS or seconds < 0:
            raise ValueError(f"unknown Bot API method {method!r} or negative seconds {seconds}")
        self._held_answers[BOT_API_METHODS[key]] = seconds

    def lose_webhook_answers(self, count: int = 1) -> None:
        """Treat the next ``count`` webhook answers as lost even when they are 2xx (as when Telegram's request times
        out after the bot stored the update): the update stays pending and is delivered again, as Telegram retries.
        Recorded in ``webhook_deliveries`` with the real status and ``error`` "answer lost". Raises ``ValueError``
        for a count below 1."""
        if count < 1:
            raise ValueError("count must be at least 1")
        self._lost_webhook_answers += count

    # -- reading records -----------------------------------------------------------------------------------------

    def messages_to(self, chat_id: int) -> list[SentMessage]:
        """Messages the bot sent to ``chat_id`` (deleted ones included, flagged), oldest first."""
        return [m for m in self.sent if m.chat_id == chat_id]

    def message(self, chat_id: int, message_id: int) -> SentMessage:
        """The bot's message ``message_id`` in ``chat_id`` (KeyError if the bot sent no such message)."""
        try:
            return self._records[(chat_id, message_id)]
        except KeyError:
            raise KeyError(f"the bot sent no message {message_id} to chat {chat_id}") from None

    def commands(self, scope: dict | None = None, language_code: str = "") -> list[dict]:
        """The command list set by setMyCommands for ``scope`` (default ``{"type": "default"}``) and language."""
        return list(self._commands.get((self._scope_key(scope), language_code), []))

    async def wait_until(self, predicate: Callable[[], T], timeout: float = 5.0, what: str = "condition") -> T:
        """Wait (at most ``timeout`` seconds) until ``predicate()`` is truthy and return its value; re-checked after
        every state change. Raises TimeoutError naming ``what``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            changed = self._changed
            value = predicate()
            if value:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    async def wait_for_messages(self, chat_id: int, count: int, timeout: float = 5.0) -> list[SentMessage]:
        """Wait (at most ``timeout`` seconds) until the bot has sent at least ``count`` messages to ``chat_id``; return
        all of them. TimeoutError lists what did arrive there, elsewhere, and the recent failed API calls."""
        def arrived_enough() -> list[SentMessage] | None:
            messages = self.messages_to(chat_id)
            return messages if len(messages) >= count else None

        try:
            return await self.wait_until(arrived_enough, timeout)
        except TimeoutError:
            arrived = [m.text if m.text is not None else f"[photo] {m.caption}" for m in self.messages_to(chat_id)]
            others = sorted({m.chat_id for m in self.sent if m.chat_id != chat_id})
            failed = [f"{c.method} -> {c.status} {c.description}" for c in list(self.calls) if c.status != 200][-5:]
            raise TimeoutError(
                f"chat {chat_id} got {len(arrived)} of {count} messages within {timeout}s: {arrived!r}; "
                f"messages went to other chats: {others}; recent failed API calls: {failed}; "
                f"pending updates: {len(self._pending)}"
            ) from None

    async def wait_for_callback_answer(self, update_id: int, timeout: float = 5.0) -> AnsweredCallback:
        """Wait until the bot answered the callback query of ``update_id`` (from ``press_button``)."""
        return await self.wait_until(
            lambda: next((a for a in self.answered_callbacks if a.update_id == update_id), None),
            timeout,
            f"answerCallbackQuery for update {update_id}",
        )

    async def wait_for_updates_consumed(self, timeout: float = 5.0) -> None:
        """Wait until every update was confirmed by getUpdates (or delivered to the webhook)."""
        await self.wait_until(lambda: not self._pending, timeout, f"{len(self._pending)} pending updates")

    # -- internals: updates --------------------------------------------------------------------------------------

    def _notify(self) -> None:
        # Waiters hold the event that was current when they checked their condition; replacing it before setting it
        # means no wake-up is ever lost and no event is reused.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _allowed(self, kind: str) -> bool:
        if self._allowed_updates is None:
            return kind not in _NOT_DEFAULT_UPDATES
        return kind in self._allowed_updates

    def _enqueue(self, kind: str, payload: dict) -> int | None:
        if not self._allowed(kind):
            return None
        update_id = self._next_update_id
        self._next_update_id += 1
        self._pending.append({"update_id": update_id, kind: payload})
        self._notify()
        return update_id

    def _take_message_id(self, chat_id: int) -> int:
        message_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = message_id + 1
        return message_id

    def _check_user_text(self, user: SimUser, text: str) -> None:
        if user.deactivated:
            raise ValueError(f"user {user.id} is deactivated")
        if not text.strip():
            raise ValueError("Telegram clients do not send empty messages")
        if len(text) > TEXT_MAX_CHARACTERS:
            raise ValueError("Telegram clients split texts longer than 4096 characters")

    def _meant_for_bot(self, text: str) -> bool:
        mention = "@" + self.bot_username.lower()
        if mention in text.lower():
            return True
        commands = bot_command_entities(text)
        if not commands or commands[0]["offset"] != 0:
            return False
        command = text[: commands[0]["length"]]
        return "@" not in command or command.lower().endswith(mention)

    def _user_message(self, user: SimUser, chat: dict, text: str, reply_to_message_id: int | None,
                      formatting: list[dict] | None = None) -> dict:
        message: dict[str, Any] = {
            "message_id": self._take_message_id(chat["id"]),
            "from": user.to_api(),
            "chat": chat,
            "date": int(time.time()),
            "text": text,
        }
        entities = sorted([*(formatting or []), *bot_command_entities(text)], key=lambda e: (e["offset"], -e["length"]))
        if entities:
            message["entities"] = entities
        if reply_to_message_id is not None:
            replied = self._messages.get((chat["id"], reply_to_message_id))
            if replied is None:
                raise ValueError(f"no message {reply_to_message_id} in chat {chat['id']} to reply to")
            message["reply_to_message"] = replied
        self._messages[(chat["id"], message["message_id"])] = message
        return message

    def _member_update(self, user: SimUser, old: str, new: str) -> int | None:
        new_member: dict[str, Any] = {"status": new, "user": self.bot_user}
        if new == "kicked":
            new_member["until_date"] = 0  # 0 = forever, as Telegram reports a block
        old_member: dict[str, Any] = {"status": old, "user": self.bot_user}
        if old == "kicked":
            old_member["until_date"] = 0
        return self._enqueue(
            "my_chat_member",
            {"chat": user.chat_api(), "from": user.to_api(), "date": int(time.time()),
             "old_chat_member": old_member, "new_chat_member": new_member},
        )

    # -- internals: checks ---------------------------------------------------------------------------------------

    def _chat_api(self, chat_id: int) -> dict:
        if chat_id > 0:
            return self._users[chat_id].chat_api()
        return self._groups[chat_id].to_api()

    def _target_chat(self, params: dict) -> int:
        """The chat a send/edit goes to, with Telegram's refusals (400 chat not found/migrated, 403 for users)."""
        raw = params.get("chat_id")
        if raw is None or raw == "":
            raise ApiError(400, "Bad Request: chat_id is empty")
        text = str(raw).strip()
        if not re.fullmatch(r"-?\d+", text):
            raise ApiError(400, "Bad Request: chat not found")
        chat_id = int(text)
        if chat_id in self._migrated:
            raise ApiError(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": self._migrated[chat_id]},
            )
        if chat_id > 0:
            user = self._users.get(chat_id)
            if user is None:
                raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
            if user.deactivated:
                raise ApiError(403, "Forbidden: user is deactivated")
            if not user.started:
                raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
            if user.blocked:
                raise ApiError(403, "Forbidden: bot was blocked by the user")
        elif chat_id not in self._groups:
            raise ApiError(400, "Bad Request: chat not found")
        return chat_id

    def _formatted(self, text: str | None, parse_mode: object, *, caption: bool = False) -> tuple[str, list[dict]]:
        """Parse and trim a text or caption; raise the Bot API's 400s (empty, can't parse, too long)."""
        mode = to_str(parse_mode) or None
        try:
            plain, entities = parse_text(text or "", mode)
        except EntityParseError as exc:
            raise ApiError(400, f"Bad Request: can't parse entities: {exc}") from None
        except ValueError:
            raise ApiError(400, "Bad Request: unsupported parse_mode") from None
        plain, entities = strip_outer_whitespace(plain, entities)
        if caption:
            if len(plain) > CAPTION_MAX_CHARACTERS:
                raise ApiError(400, "Bad Request: message caption is too long")
        else:
            if not plain:
                raise ApiError(400, "Bad Request: message text is empty")
            # tdlib counts Unicode code points here (utf8_length), not UTF-16 units.
            if len(plain) > TEXT_MAX_CHARACTERS:
                raise ApiError(400, "Bad Request: message is too long")
        return plain, entities

    def _reply_markup(self, params: dict) -> dict | None:
        markup = to_json(params.get("reply_markup"), "reply keyboard markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            rows = markup["inline_keyboard"]
            if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
                raise ApiError(400, "Bad Request: can't parse inline keyboard button: InlineKeyboardButton expected")
            for row in rows:
                for button in row:
                    self._check_inline_button(button)
        return markup

    @staticmethod
    def _check_inline_button(button: object) -> None:
        if not isinstance(button, dict) or not isinstance(button.get("text"), str):
            raise ApiError(400, "Bad Request: can't parse inline keyboard button: Field \"text\" must be of type String")
        kinds = {"url", "callback_data", "web_app", "login_url", "switch_inline_query",
                 "switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "copy_text", "callback_game",
                 "pay"} & button.keys()
        if not kinds:
            raise ApiError(400, "Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the "
                                "inline keyboard")
        if "callback_data" in button:
            data = button["callback_data"]
            if not isinstance(data, str) or not 1 <= len(data.encode("utf-8")) <= CALLBACK_DATA_MAX_BYTES:
                raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")

    def _reply_to(self, params: dict, chat_id: int) -> int | None:
        reply = to_json(params.get("reply_parameters"), "reply parameters")
        if reply is not None and not isinstance(reply, dict):
            raise ApiError(400, "Bad Request: can't parse reply parameters JSON object")
        if reply:
            message_id = to_int(reply.get("message_id"))
            lenient = to_bool(reply.get("allow_sending_without_reply"))
            if reply.get("chat_id") not in (None, chat_id, str(chat_id)):
                raise ApiError(400, "Bad Request: message to be replied not found")
        else:
            message_id = to_int(params.get("reply_to_message_id"))
            lenient = to_bool(params.get("allow_sending_without_reply"))
        if not message_id:
            return None
        if (chat_id, message_id) not in self._messages:
            if lenient:
                return None
            raise ApiError(400, "Bad Request: message to be replied not found")
        return message_id

    def _check_flood(self, method: str, chat_id: int) -> None:
        if method in _RATE_LIMITED_METHODS:
            self._flood.check(chat_id, time.monotonic())

    def _injected_failure(self, method: str) -> None:
        for failure in self._failures:
            if failure.remaining > 0 and (
                failure.method == method.lower() or (failure.method == "*" and method != "getUpdates")
            ):
                failure.remaining -= 1
                self._failures = [f for f in self._failures if f.remaining > 0]
                raise ApiError(failure.status, failure.description, failure.parameters)

    @staticmethod
    def _scope_key(scope: object) -> str:
        if not scope:
            return json.dumps({"type": "default"})
        return json.dumps(scope, sort_keys=True)

    # -- HTTP --------------------------------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/bot{token}/{method}", self._handle_api, methods=["GET", "POST"]),
                Route("/file/bot{token}/{path:path}", self._handle_file, methods=["GET"]),
                Mount("/_emulator", routes=control_routes(self)),
            ]
        )

    async def _handle_api(self, request: Request) -> Response:
        token = request.path_params["token"]
        name = request.path_params["method"]
        if token != self.token:
            # Telegram: 404 for a malformed token, 401 for a well-formed one it does not know.
            if not _TOKEN_FORMAT.match(token):
                return json_response(404, {"ok": False, "error_code": 404, "description": "Not Found"})
            return json_response(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        if self._logged_out:
            return json_response(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        method = BOT_API_METHODS.get(name.lower())
        if method is None:
            return json_response(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        params: dict = {}
        status, description = 200, None
        try:
            params = await read_params(request)
            self._injected_failure(method)
            handler = self._handlers.get(method)
            if handler is None:
                raise ApiError(400, "Bad Request: method not supported by emulator")
            outcome = await handler(params)
            hold = self._held_answers.get(method)
            if hold:
                await asyncio.sleep(hold)  # processed (e.g. the message is delivered); the answer comes later
            body: dict[str, Any] = {"ok": True}
            if isinstance(outcome, tuple):  # (result, description), e.g. setWebhook's "Webhook was set"
                body["result"], body["description"] = outcome
            else:
                body["result"] = outcome
            return json_response(200, body)
        except ApiError as exc:
            status, description = exc.status, exc.description
            error: dict[str, Any] = {"ok": False, "error_code": exc.status, "description": exc.description}
            if exc.parameters:
                error["parameters"] = exc.parameters
            return json_response(exc.status, error)
        except Exception as exc:  # an emulator bug must answer, not hang the client
            _LOGGER.exception("Telegram emulator failed on %s", method)
            status, description = 500, f"Internal Server Error: {exc!r}"
            return json_response(500, {"ok": False, "error_code": 500, "description": description})
        finally:
            self.calls.append(ApiCall(method, summarise(params), status, description, time.monotonic()))

    # -- methods: bot, updates, webhook --------------------------------------------------------------------------

    async def _get_me(self, params: dict) -> dict:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": not self.privacy_mode,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _set_allowed_updates(self, raw: object) -> None:
        allowed = to_json(raw, "allowed updates")
        if allowed is None:
            return
        if not isinstance(allowed, list):
            raise ApiError(400, "Bad Request: can't parse allowed updates JSON object")
        kinds = frozenset(str(kind) for kind in allowed) & _UPDATE_TYPES
        self._allowed_updates = kinds or None  # an empty list means the default set

    async def _get_updates(self, params: dict) -> list[dict]:
        if self._webhook is not None:
            raise ApiError(
                409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the "
                     "webhook first"
            )
        offset = to_int(params.get("offset"))
        limit = min(max(to_int(params.get("limit"), 100) or 100, 1), 100)
        timeout = min(max(to_float(params.get("timeout"), 0.0), 0.0), 3600.0)
        self._set_allowed_updates(params.get("allowed_updates"))
        if offset:
            if offset > 0:
                self._pending = [u for u in self._pending if u["update_id"] >= offset]
            else:
                self._pending = self._pending[offset:]  # -N: the last N updates; earlier ones are forgotten
        # A newer getUpdates ends an older one still waiting, with 409 (two bot instances polling).
        self._poll_generation += 1
        generation = self._poll_generation
        self._notify()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._waiting_polls += 1
        try:
            return await self._long_poll(generation, limit, deadline)
        finally:
            self._waiting_polls -= 1

    async def _long_poll(self, generation: int, limit: int, deadline: float) -> list[dict]:
        loop = asyncio.get_running_loop()
        while True:
            changed = self._changed
            if self._closing:
                return []
            if generation != self._poll_generation:
                raise ApiError(
                    409, "Conflict: terminated by other getUpdates request; make sure that only one bot instance is "
                         "running"
                )
            if self._webhook is not None:
                raise ApiError(409, "Conflict: terminated by setWebhook request")
            if self._pending:
                return self._pending[:limit]
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    async def _set_webhook(self, params: dict) -> tuple[bool, str]:
        url = (to_str(params.get("url")) or "").strip()
        if not url:
            return await self._delete_webhook(params)
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ApiError(400, "Bad Request: bad webhook: invalid webhook URL specified")
        if not is_loopback_host(parsed.hostname):
            # Safety, not fidelity: the emulator never POSTs user data off this machine.
            raise ApiError(400, "Bad Request: bad webhook: the emulator only delivers to loopback addresses")
        secret = to_str(params.get("secret_token"))
        if secret is not None and not _SECRET_TOKEN.match(secret):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        self._set_allowed_updates(params.get("allowed_updates"))
        if to_bool(params.get("drop_pending_updates")):
            self._pending.clear()
        self._webhook = {
            "url": url,
            "secret_token": secret,
            "max_connections": to_int(params.get("max_connections"), 40),
            "last_error_date": None,
            "last_error_message": None,
        }
        self._poll_generation += 1  # a waiting getUpdates ends with 409
        self._notify()
        self._ensure_webhook_worker()
        return True, "Webhook was set"

    async def _delete_webhook(self, params: dict) -> tuple[bool, str]:
        if to_bool(params.get("drop_pending_updates")):
            self._pending.clear()
        if self._webhook is None:
            return True, "Webhook is already deleted"
        self._webhook = None
        self._notify()
        return True, "Webhook was deleted"

    async def _get_webhook_info(self, params: dict) -> dict:
        info: dict[str, Any] = {
            "url": self._webhook["url"] if self._webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }
        if self._webhook:
            info["max_connections"] = self._webhook["max_connections"]
            if self._webhook["last_error_date"]:
                info["last_error_date"] = self._webhook["last_error_date"]
                info["last_error_message"] = self._webhook["last_error_message"]
        if self._allowed_updates is not None:
            info["allowed_updates"] = sorted(self._allowed_updates)
        return info

    def _ensure_webhook_worker(self) -> None:
        if self._webhook_task is None or self._webhook_task.done():
            self._webhook_task = asyncio.get_running_loop().create_task(
                self._deliver_webhooks(), name="telegram-emulator-webhook"
            )

    async def _deliver_webhooks(self) -> None:
        """POST pending updates to the webhook one at a time, in order, with the secret header; retry failures."""
        async with httpx.AsyncClient(timeout=10.0) as client:
            while self._webhook is not None and not self._closing:
                changed = self._changed
                if not self._pending:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), 1.0)
                    continue
                update = self._pending[0]
                webhook = self._webhook
                headers = {"Content-Type": "application/json"}
                if webhook["secret_token"]:
                    headers["X-Telegram-Bot-Api-Secret-Token"] = webhook["secret_token"]
                status: int | None = None
                error: str | None = None
                try:
                    response = await client.post(
                        webhook["url"], content=json.dumps(update, ensure_ascii=False).encode(), headers=headers
                    )
                    status = response.status_code
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                update_id = update["update_id"]
                if status is not None and 200 <= status <= 299 and self._lost_webhook_answers:
                    self._lost_webhook_answers -= 1
                    error = "answer lost"
                self.webhook_deliveries.append(
                    WebhookDelivery(update_id, webhook["url"], status, error, time.monotonic())
                )
                if status is not None and 200 <= status <= 299 and error is None:
                    self._webhook_attempts.pop(update_id, None)
                    self._drop_pending(update_id)
                    continue
                webhook["last_error_date"] = int(time.time())
                webhook["last_error_message"] = error or f"Wrong response from the webhook: {status}"
                attempts = self._webhook_attempts.get(update_id, 0) + 1
                self._webhook_attempts[update_id] = attempts
                if attempts >= self.webhook_max_attempts:
                    _LOGGER.warning("Telegram emulator dropped update %s after %s webhook attempts", update_id, attempts)
                    self._webhook_attempts.pop(update_id, None)
                    self._drop_pending(update_id)
                    continue
                self._notify()
                await asyncio.sleep(self.webhook_retry_seconds)

    def _drop_pending(self, update_id: int) -> None:
        self._pending = [u for u in self._pending if u["update_id"] != update_id]
        self._notify()

    # -- methods: commands ---------------------------------------------------------------------------------------

    async def _set_my_commands(self, params: dict) -> bool:
        commands = to_json(params.get("commands"), "commands")
        if not isinstance(commands, list):
            raise ApiError(400, "Bad Request: can't parse commands JSON object")
        if len(commands) > 100:
            raise ApiError(400, "Bad Request: BOT_COMMANDS_TOO_MUCH")
        cleaned = []
        for command in commands:
            if not isinstance(command, dict):
                raise ApiError(400, "Bad Request: can't parse BotCommand JSON object")
            name = str(command.get("command", "")).removeprefix("/")
            description = str(command.get("description", ""))
            if not _COMMAND_NAME.match(name):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(description.strip()) <= 256:
                raise ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
            cleaned.append({"command": name, "description": description})
        key = (self._scope_key(to_json(params.get("scope"), "scope")), to_str(params.get("language_code")) or "")
        self._commands[key] = cleaned
        return True

    async def _get_my_commands(self, params: dict) -> list[dict]:
        scope = to_json(params.get("scope"), "scope")
        return self.commands(scope, to_str(params.get("language_code")) or "")

    async def _delete_my_commands(self, params: dict) -> bool:
        key = (self._scope_key(to_json(params.get("scope"), "scope")), to_str(params.get("language_code")) or "")
        self._commands.pop(key, None)
        return True

    # -- methods: messages ---------------------------------------------------------------------------------------

    def _bot_message(self, chat_id: int, record: SentMessage) -> dict:
        message: dict[str, Any] = {
            "message_id": record.message_id,
            "from": self.bot_user,
            "chat": self._chat_api(chat_id),
            "date": int(time.time()),
        }
        if record.text is not None:
            message["text"] = record.text
            if record.entities:
                message["entities"] = record.entities
        if record.photo is not None:
            message["photo"] = self._photos.sizes(record.photo)
            if record.caption:
                message["caption"] = record.caption
                if record.entities:
                    message["caption_entities"] = record.entities
        if record.reply_markup and "inline_keyboard" in record.reply_markup:
            message["reply_markup"] = record.reply_markup  # other keyboards are not echoed in the Message
        if record.reply_to_message_id is not None:
            message["reply_to_message"] = self._messages[(chat_id, record.reply_to_message_id)]
        if record.link_preview_disabled:
            message["link_preview_options"] = {"is_disabled": True}
        return message

    def _record(self, chat_id: int, record: SentMessage) -> dict:
        message = self._bot_message(chat_id, record)
        self._messages[(chat_id, record.message_id)] = message
        self._records[(chat_id, record.message_id)] = record
        self.sent.append(record)
        self._notify()
        return message

    @staticmethod
    def _link_preview_disabled(params: dict) -> bool:
        options = to_json(params.get("link_preview_options"), "link preview options")
        if isinstance(options, dict) and to_bool(options.get("is_disabled")):
            return True
        return to_bool(params.get("disable_web_page_preview"))

    async def _send_message(self, params: dict) -> dict:
        raw_text = to_str(params.get("text"))
        parse_mode = to_str(params.get("parse_mode")) or None
        text, entities = self._formatted(raw_text, parse_mode)
        if not parse_mode and params.get("entities"):
            entities = to_json(params.get("entities"), "message entities") or []
        markup = self._reply_markup(params)
        link_preview_disabled = self._link_preview_disabled(params)
        chat_id = self._target_chat(params)
        reply_to = self._reply_to(params, chat_id)
        self._check_flood("sendMessage", chat_id)
        record = SentMessage(
            chat_id=chat_id,
            message_id=self._take_message_id(chat_id),
            text=text,
            parse_mode=parse_mode,
            reply_markup=markup,
            method="sendMessage",
            at=time.monotonic(),
            raw_text=raw_text,
            entities=entities,
            reply_to_message_id=reply_to,
            link_preview_disabled=link_preview_disabled,
            disable_notification=to_bool(params.get("disable_notification")),
            params=summarise(params),
        )
        return self._record(chat_id, record)

    async def _send_photo(self, params: dict) -> dict:
        photo = params.get("photo")
        if isinstance(photo, UploadedFile):
            self._photos.accept_upload(photo)  # an image within sendPhoto's size rules, or 400 like Telegram
        elif not to_str(photo):
            raise ApiError(400, "Bad Request: there is no photo in the request")
        else:
            photo = self._photos.resolve(to_str(photo))  # a file_id of an earlier upload, or a URL
        raw_caption = to_str(params.get("caption"))
        parse_mode = to_str(params.get("parse_mode")) or None
        caption, entities = self._formatted(raw_caption, parse_mode, caption=True)
        markup = self._reply_markup(params)
        chat_id = self._target_chat(params)
        reply_to = self._reply_to(params, chat_id)
        self._check_flood("sendPhoto", chat_id)
        record = SentMessage(
            chat_id=chat_id,
            message_id=self._take_message_id(chat_id),
            text=None,
            parse_mode=parse_mode,
            reply_markup=markup,
            method="sendPhoto",
            at=time.monotonic(),
            photo=photo,  # type: ignore[arg-type]
            caption=caption or None,
            raw_caption=raw_caption,
            entities=entities,
            reply_to_message_id=reply_to,
            disable_notification=to_bool(params.get("disable_notification")),
            params=summarise(params),
        )
        return self._record(chat_id, record)

    def _editable(self, params: dict) -> tuple[int, SentMessage]:
        if params.get("inline_message_id"):
            raise ApiError(400, "Bad Request: method not supported by emulator")
        chat_id = self._target_chat(params)
        message_id = to_int(params.get("message_id"))
        if not message_id:
            raise ApiError(400, "Bad Request: message identifier is not specified")
        record = self._records.get((chat_id, message_id))
        if record is None or record.deleted:
            if (chat_id, message_id) in self._messages and record is None:
                raise ApiError(400, "Bad Request: message can't be edited")
            raise ApiError(400, "Bad Request: message to edit not found")
        return chat_id, record

    def _apply_edit(self, chat_id: int, record: SentMessage, **changes: Any) -> dict:
        record.edits.append(
            MessageEdit(record.text, record.raw_text, record.caption, record.parse_mode, record.reply_markup,
                        time.monotonic())
        )
        for name, value in changes.items():
            setattr(record, name, value)
        record.edited = True
        message = self._bot_message(chat_id, record)
        message["edit_date"] = int(time.time())
        self._messages[(chat_id, record.message_id)] = message
        self._notify()
        return message

    async def _edit_message_text(self, params: dict) -> dict:
        raw_text = to_str(params.get("text"))
        parse_mode = to_str(params.get("parse_mode")) or None
        text, entities = self._formatted(raw_text, parse_mode)
        # Telegram: an edit without reply_markup removes the inline keyboard.
        markup = self._reply_markup(params)
        chat_id, record = self._editable(params)
        if record.text is None:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        if text == record.text and entities == record.entities and markup == record.reply_markup:
            raise ApiError(400, _NOT_MODIFIED)
        self._check_flood("editMessageText", chat_id)
        return self._apply_edit(
            chat_id, record, text=text, raw_text=raw_text, parse_mode=parse_mode, entities=entities,
            reply_markup=markup, link_preview_disabled=self._link_preview_disabled(params),
        )

    async def _edit_message_reply_markup(self, params: dict) -> dict:
        markup = self._reply_markup(params)
        chat_id, record = self._editable(params)
        if markup == record.reply_markup:
            raise ApiError(400, _NOT_MODIFIED)
        self._check_flood("editMessageReplyMarkup", chat_id)
        return self._apply_edit(chat_id, record, reply_markup=markup)

    async def _delete_message(self, params: dict) -> bool:
        chat_id = self._target_chat(params)
        key = (chat_id, to_int(params.get("message_id")) or 0)
        record = self._records.get(key)
        if key not in self._messages or (record is not None and record.deleted):
            raise ApiError(400, "Bad Request: message to delete not found")
        del self._messages[key]
        if record is not None:
            record.deleted = True
        self._notify()
        return True

    async def _answer_callback_query(self, params: dict) -> bool:
        query_id = to_str(params.get("callback_query_id")) or ""
        query = self._callback_queries.pop(query_id, None)
        if query is None:  # unknown, or answered already
            raise ApiError(400, _QUERY_INVALID)
        text = to_str(params.get("text"))
        if text is not None and len(text) > 200:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        self.answered_callbacks.append(
            AnsweredCallback(
                callback_query_id=query_id,
                update_id=query["update_id"],
                user_id=query["user_id"],
                message_id=query["message_id"],
                data=query["data"],
                text=text,
                show_alert=to_bool(params.get("show_alert")),
                url=to_str(params.get("url")),
                at=time.monotonic(),
            )
        )
        self._notify()
        return True

    async def _get_file(self, params: dict) -> dict:
        """``getFile``: a File for a photo's ``file_id`` (uploads by the bot, or users' photos), downloadable under
        ``/file/bot<token>/<file_path>`` (Telegram keeps the link at least an hour; the emulator, as long as it
        runs)."""
        file_id = to_str(params.get("file_id")) or ""
        try:
            found = self._photos.resolve(file_id)
        except ApiError:
            found = None
        if not isinstance(found, UploadedFile):
            raise ApiError(400, "Bad Request: invalid file_id")
        path = f"photos/file_{len(self._files)}.jpg"
        self._files[path] = found.data
        return {"file_id": file_id, "file_unique_id": file_id[-16:], "file_size": len(found.data), "file_path": path}

    async def _handle_file(self, request: Request) -> Response:
        """A file download (PTB ``File.download_*``): 401 for a wrong token, 404 for an unknown path."""
        if request.path_params["token"] != self.token:
            return json_response(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        data = self._files.get(request.path_params["path"])
        if data is None:
            return json_response(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        return Response(data, media_type="application/octet-stream")

    async def _send_chat_action(self, params: dict) -> bool:
        self._target_chat(params)
        if not to_str(params.get("action")):
            raise ApiError(400, "Bad Request: wrong parameter action in request")
        return True

    async def _close(self, params: dict) -> bool:
        return True

    async def _log_out(self, params: dict) -> bool:
        self._logged_out = True
        return True


# ---------------------------------------------------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> None:
    emulator = TelegramEmulator(args.token, bot_username=args.bot_username)
    url = await emulator.start(args.host, args.port)
    print(f"Telegram Bot API emulator: {url}", flush=True)
    print(f"  PTB base_url={emulator.api_url}  base_file_url={emulator.file_url}", flush=True)
    print(f"  control surface: {url}/_emulator/", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await emulator.stop()


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m bots.sandbox.telegram_api --token T [--port N] [--bot-username NAME]``."""
    parser = argparse.ArgumentParser(
        prog="python -m bots.sandbox.telegram_api", description="Local Telegram Bot API emulator (loopback only)."
    )
    parser.add_argument("--token", required=True, help="bot token the emulator accepts, e.g. 123456:TEST")
    parser.add_argument("--port", type=int, default=8081, help="port on 127.0.0.1 (0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--bot-username", default="otayori_sandbox_bot")
    args = parser.parse_args(argv)
    if not is_loopback_host(args.host):
        parser.error(f"--host must be a loopback address, got {args.host}")
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
