"""Telegram webhook intake (``OTAYORI_TELEGRAM_MODE=webhook``): check the secret, store the update, then process it.

Telegram POSTs each update to ``{OTAYORI_PUBLIC_URL}/webhooks/telegram`` with the ``secret_token`` given to
``setWebhook`` in the ``X-Telegram-Bot-Api-Secret-Token`` header, and sends it again when the answer is not a 2xx
or comes late (reference/telegram.md "update_ids", Bot API "setWebhook"). So, as for LINE (bots/line.py):

* the header is compared in constant time; a wrong or missing one is answered 403 and nothing is stored;
* the raw update is stored under ``update:<update_id>`` (core.inbound, unique per channel and key) *before* the 200,
  so an acknowledged update is never lost to a crash, and a repeated ``update_id`` is not new: it is answered 200
  and never processed twice;
* processing feeds the stored update to the PTB Application (``Update.de_json`` + ``process_update``: the
  handlers are the polling ones, bots/telegram.py), one update at a time in arrival order (登録 before 同意). The use
  cases mark ``update:<update_id>`` processed in the same transaction as their state change (the key polling uses);
  an update no use case marks (help, an edited message) is marked afterwards, so a restart never replays it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from typing import Any

from telegram import Update
from telegram.ext import Application

from core.inbound import RawEventStore, finish_processing, is_processed, unprocessed
from storage.database import Database

log = logging.getLogger(__name__)

CHANNEL = "telegram"
#: Where Telegram posts updates, below ``OTAYORI_PUBLIC_URL`` (DESIGN.md "Outside contract" -> HTTP).
WEBHOOK_PATH = "/webhooks/telegram"
#: The header Telegram sends the ``secret_token`` in (Bot API "setWebhook").
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
#: The update types our handlers use (bots/telegram.py ``TelegramBot.register``). Listed explicitly: without it
#: setWebhook keeps whatever an earlier call chose.
ALLOWED_UPDATES = ("message", "edited_message", "callback_query", "my_chat_member")
#: Updates re-read at start-up (stored and acknowledged, never processed: a crash or a stop in between).
RECOVERY_LIMIT = 10_000


class WebhookRefused(Exception):
    """A Telegram webhook request that is refused with HTTP ``status`` and a short ``reason``; nothing was stored."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def webhook_url(public_url: str) -> str:
    """``{public_url}/webhooks/telegram``: the URL handed to ``setWebhook``."""
    return f"{public_url.rstrip('/')}{WEBHOOK_PATH}"


class TelegramWebhook:
    """Receives Telegram webhook requests for ``application`` (built without an updater) and processes each update
    exactly once.

    ``secret``: ``OTAYORI_TELEGRAM_WEBHOOK_SECRET`` (1-256 characters of ``A-Z a-z 0-9 _ -``, checked by Settings).
    """

    def __init__(self, application: Application, db: Database, secret: str) -> None:
        self.application = application
        self.db = db
        self._secret = secret.encode()
        self.raw_events = RawEventStore(db, CHANNEL)
        # One update at a time, in the order their requests were stored (asyncio.Lock wakes waiters first-in first-out).
        self._in_order = asyncio.Lock()

    async def register(self, url: str) -> None:
        """Call ``setWebhook`` with ``url``, the secret and :data:`ALLOWED_UPDATES`. Pending updates are kept.

        Raises ``telegram.error.TelegramError`` when Telegram refuses (e.g. an http:// URL: the Bot API answers 400).
        """
        await self.application.bot.set_webhook(url=url, secret_token=self._secret.decode(),
                                               allowed_updates=list(ALLOWED_UPDATES), drop_pending_updates=False)
        log.info("Telegram webhook set to %s", url)

    async def receive(self, body: bytes, secret: str | None) -> list[str]:
        """Check and store one webhook request; return ``["update:<update_id>"]`` when it is new, ``[]`` when that
        update was stored before (a retry: answer 200 and do nothing).

        Raises :class:`WebhookRefused`: 403 for a wrong or missing secret header (checked first, in constant time),
        503 while the application is not started yet (Telegram retries), 400 for a body that is not an update.
        """
        if secret is None or not hmac.compare_digest(secret.encode(), self._secret):
            raise WebhookRefused(403, "wrong or missing secret token")
        if not self.application.running:
            raise WebhookRefused(503, "starting")
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise WebhookRefused(400, f"body is not JSON: {type(exc).__name__}") from exc
        update_id = payload.get("update_id") if isinstance(payload, dict) else None
        if not isinstance(update_id, int) or isinstance(update_id, bool):
            raise WebhookRefused(400, "no update_id")
        return await self.raw_events.store([(f"update:{update_id}", json.dumps(payload, ensure_ascii=False))])

    async def process_stored(self, keys: list[str]) -> None:
        """Process the stored, unprocessed updates ``keys`` in order; a failure is logged and marked, never raised."""
        async with self._in_order:
            rows = {row.event_key: row for row in await unprocessed(self.db, CHANNEL, limit=len(keys), keys=keys)}
            for key in keys:
                row = rows.get(key)
                if row is not None:
                    await self._process(key, row.payload)

    async def recover(self) -> int:
        """Process updates stored but not processed before a stop or crash; returns how many were found."""
        rows = await unprocessed(self.db, CHANNEL, limit=RECOVERY_LIMIT)
        await self.process_stored([row.event_key for row in rows])
        return len(rows)

    async def _process(self, key: str, payload: str) -> None:
        error: str | None = None
        try:
            raw: Any = json.loads(payload)
            update = Update.de_json(raw, self.application.bot)
            # PTB hands handler exceptions to the error handler (bots.telegram logs them) and returns normally.
            await self.application.process_update(update)
        except Exception as exc:  # a bad stored payload must not stop the updates behind it
            log.exception("Telegram update %s failed", key)
            error = f"{type(exc).__name__}: {exc}"
        if error is not None or not await is_processed(self.db, CHANNEL, key):
            async with self.db.write() as session:
                await finish_processing(session, CHANNEL, key, error=error)
