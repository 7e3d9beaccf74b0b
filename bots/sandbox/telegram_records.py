"""Records of the Telegram emulator: simulated users and chats, and what the bot did (messages, answers, calls).

Plain dataclasses; ``bots.sandbox.telegram_api`` re-exports them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AnsweredCallback",
    "ApiCall",
    "MessageEdit",
    "SentMessage",
    "SimChat",
    "SimUser",
    "UploadedFile",
    "WebhookDelivery",
]


@dataclass
class SimUser:
    """A simulated Telegram user; their private chat with the bot has ``chat id == id`` (as on Telegram).

    ``started``: the user has opened the bot (only then may the bot write to them). ``blocked``: the user blocked the
    bot. ``deactivated``: the account was deleted.
    """

    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None
    started: bool = True
    blocked: bool = False
    deactivated: bool = False

    def to_api(self) -> dict:
        """The Bot API ``User`` object."""
        user: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            user["last_name"] = self.last_name
        if self.username:
            user["username"] = self.username
        if self.language_code:
            user["language_code"] = self.language_code
        return user

    def chat_api(self) -> dict:
        """The Bot API ``Chat`` object of the private chat with this user."""
        chat: dict[str, Any] = {"id": self.id, "type": "private", "first_name": self.first_name}
        if self.last_name:
            chat["last_name"] = self.last_name
        if self.username:
            chat["username"] = self.username
        return chat


@dataclass
class SimChat:
    """A group or supergroup the bot is a member of (negative id). ``migrated_to`` is set after ``migrate_chat``."""

    id: int
    title: str
    type: str = "group"
    migrated_to: int | None = None

    def to_api(self) -> dict:
        """The Bot API ``Chat`` object."""
        return {"id": self.id, "type": self.type, "title": self.title}


@dataclass(frozen=True)
class UploadedFile:
    """A file the bot uploaded with ``multipart/form-data``."""

    filename: str | None
    content_type: str | None
    data: bytes


@dataclass(frozen=True)
class MessageEdit:
    """A previous version of a bot message, kept when the bot edits it."""

    text: str | None
    raw_text: str | None
    caption: str | None
    parse_mode: str | None
    reply_markup: dict | None
    at: float


@dataclass
class SentMessage:
    """One message the bot sent, as the emulator recorded it.

    ``text``/``caption`` are what the reader sees (markup parsed, outer whitespace trimmed); ``raw_text``/
    ``raw_caption`` are what the bot sent; ``entities`` are Bot API MessageEntity dicts (UTF-16 offsets) of the
    text, or of the caption for photos.
    ``reply_markup`` is the parsed JSON the bot sent (any keyboard kind) or None. ``method`` is ``sendMessage`` or
    ``sendPhoto``. ``at`` is ``time.monotonic()`` seconds when the emulator accepted it. ``photo`` is the uploaded
    file or the string (file_id/URL) the bot gave. ``edits`` holds earlier versions, oldest first; ``edited`` is True
    once the bot edited it. ``params`` are the request parameters as received (uploads summarised).
    """

    chat_id: int
    message_id: int
    text: str | None
    parse_mode: str | None
    reply_markup: dict | None
    method: str
    at: float
    photo: UploadedFile | str | None = None
    caption: str | None = None
    edited: bool = False
    raw_text: str | None = None
    raw_caption: str | None = None
    entities: list[dict] = field(default_factory=list)
    reply_to_message_id: int | None = None
    link_preview_disabled: bool = False
    disable_notification: bool = False
    deleted: bool = False
    edits: list[MessageEdit] = field(default_factory=list)
    params: dict = field(default_factory=dict, repr=False)

    @property
    def buttons(self) -> list[dict]:
        """The inline keyboard buttons (InlineKeyboardButton dicts), row by row; empty without an inline keyboard."""
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [button for row in rows for button in row]

    def callback_data_for(self, label: str) -> str:
        """The ``callback_data`` of the inline button whose text is ``label``; KeyError lists the labels there are."""
        for button in self.buttons:
            if button.get("text") == label and "callback_data" in button:
                return button["callback_data"]
        raise KeyError(f"no callback button {label!r}; buttons: {[b.get('text') for b in self.buttons]}")

    def to_json(self) -> dict:
        """A JSON-ready dict (uploads become ``{"filename", "content_type", "size"}``)."""
        data = dataclasses.asdict(self)
        if isinstance(self.photo, UploadedFile):
            data["photo"] = {
                "filename": self.photo.filename,
                "content_type": self.photo.content_type,
                "size": len(self.photo.data),
            }
        return data


@dataclass(frozen=True)
class AnsweredCallback:
    """The bot's ``answerCallbackQuery`` for a button press (``update_id`` is what ``press_button`` returned)."""

    callback_query_id: str
    update_id: int
    user_id: int
    message_id: int
    data: str
    text: str | None
    show_alert: bool
    url: str | None
    at: float


@dataclass(frozen=True)
class WebhookDelivery:
    """One attempt to POST an update to the webhook: HTTP ``status`` (None when the connection failed) or ``error``."""

    update_id: int
    url: str
    status: int | None
    error: str | None
    at: float


@dataclass(frozen=True)
class ApiCall:
    """One Bot API request the emulator answered: canonical ``method``, ``params`` as received, HTTP ``status``."""

    method: str
    params: dict
    status: int
    description: str | None
    at: float

