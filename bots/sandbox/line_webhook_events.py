"""Webhook event objects and signatures shaped like the ones the LINE Platform sends (used by the LINE emulator).

Shapes follow https://developers.line.biz/en/reference/messaging-api/#webhook-event-objects and the SDK's parser
models (``linebot.v3.webhooks.models``): every event has ``type``, ``mode``, ``timestamp`` (ms since the epoch),
``source``, ``webhookEventId`` (a ULID) and ``deliveryContext.isRedelivery``; ``follow``/``message``/``postback``
carry a ``replyToken``; ``unfollow`` does not.

Signature: ``X-Line-Signature`` = base64(HMAC-SHA256(channel secret, raw request body))
(https://developers.line.biz/en/reference/messaging-api/#signature-validation).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from datetime import datetime
from typing import Any

_CROCKFORD32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid(at: datetime) -> str:
    """A 26-character ULID (48-bit millisecond timestamp of ``at`` + 80 random bits, Crockford base32)."""
    value = (int(at.timestamp() * 1000) & ((1 << 48) - 1)) << 80 | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD32[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_user_id() -> str:
    """A LINE-style user id: ``U`` + 32 lowercase hex digits (matches ``^U[0-9a-f]{32}$``)."""
    return "U" + secrets.token_hex(16)


def new_group_id() -> str:
    """A LINE-style group id: ``C`` + 32 lowercase hex digits."""
    return "C" + secrets.token_hex(16)


def new_reply_token() -> str:
    """A reply token: 32 lowercase hex digits, like the ones LINE issues."""
    return secrets.token_hex(16)


def new_quote_token() -> str:
    """An opaque quote token (LINE's are long URL-safe strings)."""
    return secrets.token_urlsafe(48)


def sign(channel_secret: str, body: bytes) -> str:
    """``X-Line-Signature`` for ``body``: base64 of HMAC-SHA256 keyed with the UTF-8 channel secret."""
    digest = hmac.new(channel_secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def encode_payload(destination: str, events: list[dict[str, Any]]) -> bytes:
    """The webhook request body: compact UTF-8 JSON with Japanese and emoji left unescaped, as LINE sends it.

    Receivers must verify the signature over these exact bytes (never over a re-serialisation).
    """
    payload = {"destination": destination, "events": events}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def user_source(user_id: str) -> dict[str, Any]:
    """``source`` of a one-to-one chat."""
    return {"type": "user", "userId": user_id}


def group_source(group_id: str, user_id: str | None) -> dict[str, Any]:
    """``source`` of a group chat (``userId`` only on message events, and only from phone apps)."""
    source: dict[str, Any] = {"type": "group", "groupId": group_id}
    if user_id is not None:
        source["userId"] = user_id
    return source


def _common(kind: str, source: dict[str, Any], at: datetime) -> dict[str, Any]:
    return {
        "type": kind,
        "mode": "active",
        "timestamp": int(at.timestamp() * 1000),
        "source": source,
        "webhookEventId": new_ulid(at),
        "deliveryContext": {"isRedelivery": False},
    }


def follow_event(user_id: str, at: datetime, *, is_unblocked: bool) -> dict[str, Any]:
    """A ``follow`` event (friend added, or unblocked when ``is_unblocked``), with a reply token."""
    event = _common("follow", user_source(user_id), at)
    event["replyToken"] = new_reply_token()
    event["follow"] = {"isUnblocked": is_unblocked}
    return event


def unfollow_event(user_id: str, at: datetime) -> dict[str, Any]:
    """An ``unfollow`` event (the user blocked the account); it has no reply token."""
    return _common("unfollow", user_source(user_id), at)


def text_message_event(source: dict[str, Any], text: str, message_id: str, at: datetime) -> dict[str, Any]:
    """A ``message`` event carrying a text message from ``source``."""
    event = _common("message", source, at)
    event["replyToken"] = new_reply_token()
    event["message"] = {"type": "text", "id": message_id, "quoteToken": new_quote_token(), "text": text}
    return event


def postback_event(user_id: str, data: str, at: datetime) -> dict[str, Any]:
    """A ``postback`` event (a postback action was tapped), with a reply token."""
    event = _common("postback", user_source(user_id), at)
    event["replyToken"] = new_reply_token()
    event["postback"] = {"data": data}
    return event


def image_message_event(source: dict[str, Any], message_id: str, at: datetime) -> dict[str, Any]:
    """A ``message`` event carrying an image the user sent (its bytes are fetched from the data API's
    ``/v2/bot/message/{id}/content``; ``contentProvider.type`` ``line``)."""
    event = _common("message", source, at)
    event["replyToken"] = new_reply_token()
    event["message"] = {"type": "image", "id": message_id, "quoteToken": new_quote_token(),
                        "contentProvider": {"type": "line"}}
    return event
