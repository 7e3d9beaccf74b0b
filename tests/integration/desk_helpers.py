"""Helpers for the author's-desk tests: a stack with one Telegram and one LINE admin, and each admin's chat as the
test sees it (say something, press a button, wait for the bot's answers) — always bounded waits."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from bots.sandbox.line_api import LineEmulator
from bots.sandbox.stack import Stack, running_stack, sandbox_settings
from bots.sandbox.telegram_api import SentMessage, TelegramEmulator
from core.settings import Settings
from tests.integration.test_cli import line_subscribe as line_subscribe_plain
from tests.integration.test_cli import telegram_subscribe

ADMIN_TG = 5550001
ADMIN_LINE = "U" + "a" * 32
#: Seconds between status-message edits in the tests (the service's default is 3 s).
TEST_PROGRESS_INTERVAL = 0.3
WAIT = 15.0


def desk_settings(directory: Path, **overrides: Any) -> Settings:
    """Sandbox settings with the two admins."""
    return sandbox_settings(directory, telegram_admin_ids=[ADMIN_TG], line_admin_user_ids=[ADMIN_LINE], **overrides)


@contextlib.asynccontextmanager
async def desk_stack(directory: Path, *, progress_interval: float = TEST_PROGRESS_INTERVAL,
                     **overrides: Any) -> AsyncIterator[Stack]:
    """A running stack with both admins known to the emulators (they opened the bot / added it as a friend)."""
    async with running_stack(desk_settings(directory, **overrides)) as stack:
        assert stack.runtime.desk_edge is not None
        stack.runtime.desk_edge.progress_interval = progress_interval
        stack.telegram.add_user(ADMIN_TG, first_name="著者")
        await stack.line.add_user(ADMIN_LINE, display_name="著者")
        try:
            yield stack
        finally:
            await stack.runtime.desk_edge.wait_idle()


async def tg_subscribe(stack: Stack, user: int, *, topic_label: str | None = None) -> None:
    """Subscribe on Telegram (terms, consent button) and, with ``topic_label``, choose that topic with the
    トピック buttons in the chat."""
    await telegram_subscribe(stack, user)
    if topic_label is not None:
        chat = TgChat(stack.telegram, user)
        [menu] = await chat.say("トピック")
        [changed] = await chat.press(menu, topic_label)
        assert topic_label in changed.text


async def line_subscribe(stack: Stack, user: str) -> None:
    """Follow and subscribe on LINE."""
    await line_subscribe_plain(stack, user)


class TgChat:
    """One user's private chat with the bot on the Telegram emulator."""

    def __init__(self, tg: TelegramEmulator, user: int) -> None:
        self.tg = tg
        self.user = user

    async def say(self, text: str, count: int = 1, **options: Any) -> list[SentMessage]:
        """Send ``text`` (``options``: reply_to_message_id, parse_mode, forward_origin); return the next ``count``
        messages the bot sends to this chat."""
        before = len(self.tg.messages_to(self.user))
        self.tg.send_text(self.user, text, **options)
        return await self._next(before, count)

    async def press(self, message: SentMessage, label: str, count: int = 1) -> list[SentMessage]:
        """Press the button ``label`` under ``message``; wait for the callback answer and ``count`` new messages."""
        before = len(self.tg.messages_to(self.user))
        update_id = self.tg.press_button(self.user, message.message_id, message.callback_data_for(label),
                                         chat_id=message.chat_id)
        await self.tg.wait_for_callback_answer(update_id, timeout=WAIT)
        return await self._next(before, count)

    async def _next(self, before: int, count: int) -> list[SentMessage]:
        if count == 0:
            return []
        messages = await self.tg.wait_for_messages(self.user, before + count, timeout=WAIT)
        return messages[before:before + count]


class LineChat:
    """One user's one-to-one chat with the account on the LINE emulator."""

    def __init__(self, line: LineEmulator, user: str) -> None:
        self.line = line
        self.user = user

    async def say(self, text: str, count: int = 1, **options: Any) -> list[dict[str, Any]]:
        """Send ``text`` (``options``: quoted_message_id); return the next ``count`` messages to this user."""
        before = len(self.line.messages_to(self.user))
        status, _ = await self.line.send_text(self.user, text, **options)
        assert status == 200
        return await self._next(before, count)

    async def press(self, message: dict[str, Any], label: str, count: int = 1) -> list[dict[str, Any]]:
        """Tap the quick-reply button ``label`` of ``message`` (a postback); return the next ``count`` messages."""
        before = len(self.line.messages_to(self.user))
        status, _ = await self.line.postback(self.user, self.data(message, label))
        assert status == 200
        return await self._next(before, count)

    @staticmethod
    def labels(message: dict[str, Any]) -> list[str]:
        """The quick-reply button labels of ``message``."""
        return [item["action"]["label"] for item in (message.get("quickReply") or {}).get("items", [])]

    @staticmethod
    def data(message: dict[str, Any], label: str) -> str:
        """The postback data of the quick-reply button ``label``."""
        for item in (message.get("quickReply") or {}).get("items", []):
            if item["action"]["label"] == label:
                return item["action"]["data"]
        raise KeyError(f"no button {label!r}: {LineChat.labels(message)}")

    async def wait_for(self, accept: Callable[[dict[str, Any]], bool], *, what: str) -> list[dict[str, Any]]:
        """Wait until a message to this user satisfies ``accept``; return ``[it]``."""
        for _ in range(int(WAIT / 0.05)):
            found = [m for m in self.line.messages_to(self.user) if accept(m)]
            if found:
                return found[-1:]
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}: {self.line.messages_to(self.user)[-3:]}")

    async def _next(self, before: int, count: int) -> list[dict[str, Any]]:
        messages = await self.line.wait_for_messages(self.user, before + count, timeout=WAIT)
        return messages[before:before + count]
