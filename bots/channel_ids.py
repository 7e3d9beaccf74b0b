"""Who the bots are, for links and QR codes: the Telegram bot's username (``getMe``) and the LINE account's basic id
(``OTAYORI_LINE_BASIC_ID``, else ``GET /v2/bot/info``'s ``basicId``; reference/line.md "Links for QR codes").

Looked up through the SDK clients of a :class:`bots.app.Runtime` (python-telegram-bot ``Bot.get_me``, line-bot-sdk
``AsyncMessagingApi.get_bot_info``), so the emulators answer in tests. A lookup that fails leaves that channel out
(None) and logs why: a page or a poster without one button is better than none at all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from bots.app import Runtime

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class ChannelIds:
    """``telegram_username`` (without ``@``) and ``line_basic_id`` (with ``@``); None when unknown."""

    telegram_username: str | None
    line_basic_id: str | None


async def _ask(what: str, call: Callable[[], Awaitable[T]]) -> T | None:
    """``await call()``, or None (logged) when it fails: the network or the token; never fatal for a page."""
    try:
        return await call()
    except Exception as exc:
        log.warning("%s failed: %s: %s", what, type(exc).__name__, exc)
        return None


async def telegram_username(runtime: Runtime) -> str | None:
    """The bot's username from ``getMe``, or None (Telegram off, or the call failed)."""
    if runtime.telegram_bot is None:
        return None
    me = await _ask("Telegram getMe", runtime.telegram_bot.get_me)
    return (me.username or None) if me is not None else None


async def line_basic_id(runtime: Runtime) -> str | None:
    """``@<basic id>``: ``OTAYORI_LINE_BASIC_ID`` when set, else from the bot info API; None when neither works."""
    configured = (runtime.settings.line_basic_id or "").strip()
    if configured:
        return "@" + configured.lstrip("@")
    if runtime.line_api is None:
        return None
    info = await _ask("LINE bot info", runtime.line_api.get_bot_info)
    basic = ((info.basic_id if info is not None else None) or "").strip()
    return "@" + basic.lstrip("@") if basic else None


async def lookup(runtime: Runtime) -> ChannelIds:
    """Both identities, looked up now."""
    return ChannelIds(await telegram_username(runtime), await line_basic_id(runtime))


class CachedChannelIds:
    """The identities for the web app: looked up on first use and kept once every channel that is on answered. After
    a failed lookup the partial answer is served for :data:`RETRY_SECONDS`, then looked up again, so a page served
    while an API was down heals by itself without every request waiting for a timeout."""

    #: Seconds between two lookups while one channel's identity is still missing.
    RETRY_SECONDS = 60.0

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._ids: ChannelIds | None = None
        self._complete = False
        self._looked_at = 0.0

    async def get(self) -> ChannelIds:
        """The identities (see the class docstring)."""
        now = time.monotonic()
        if self._ids is not None and (self._complete or now - self._looked_at < self.RETRY_SECONDS):
            return self._ids
        ids = await lookup(self.runtime)
        self._ids, self._looked_at = ids, now
        self._complete = ((ids.telegram_username is not None or self.runtime.telegram_bot is None)
                          and (ids.line_basic_id is not None or self.runtime.line_api is None))
        return ids
