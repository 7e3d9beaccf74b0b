"""Bounded waits for the rehearsal: a bot's reply on either platform, a state change, a mail in the sink.

Every wait ends after :data:`STEP_TIMEOUT` seconds with a :class:`RehearsalError` naming the attendee and what did
not come, so a broken step fails the demo with one clear line instead of hanging it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlmodel import select

from bots.demo.script import Attendee
from bots.sandbox.line_api import LineEmulator
from bots.sandbox.smtp_sink import ReceivedMessage, SmtpSink
from bots.sandbox.stack import Stack
from bots.sandbox.telegram_api import SentMessage, TelegramEmulator
from core import texts
from storage.models import Endpoint

#: Seconds one step may take (a reply to arrive, a block to be processed) before the demo reports it as failed.
STEP_TIMEOUT = 15.0
#: Seconds between two looks at something that has no reply to wait for (a block, a mail).
POLL_SECONDS = 0.05


class RehearsalError(Exception):
    """A step of the rehearsal did not get the answer it waited for (a reply, a processed block, a mail)."""


@dataclass(frozen=True)
class Replies:
    """The exact texts the bots answer with (from :mod:`core.texts`), to recognise each reply."""

    help: str
    subscribed: str
    withdrawn: str
    acknowledged: str = ""
    """A subscriber's question, forwarded to the author (reader replies)."""

    @classmethod
    def for_sender(cls, sender: str) -> Replies:
        """The replies of a bot whose settings name ``sender``."""
        return cls(texts.text("help"), texts.text("subscribed", sender=sender), texts.text("withdrawn"),
                   texts.text("reader_ack", sender=sender))


def is_terms(text: str) -> bool:
    """True for the terms message (it names the privacy policy and asks for 同意)."""
    return "プライバシーポリシー" in text and "同意" in text


async def telegram_reply(tg: TelegramEmulator, person: Attendee, count: int, what: str,
                         accept: Callable[[SentMessage], bool]) -> SentMessage:
    """Wait for the ``count``-th message to ``person`` and check it with ``accept(message) -> bool``."""
    chat_id = int(person.address)
    try:
        messages = await tg.wait_for_messages(chat_id, count, timeout=STEP_TIMEOUT)
    except TimeoutError as exc:
        raise RehearsalError(f"{person.label}: no {what} ({str(exc)[:300]})") from None
    message = messages[count - 1]
    if not accept(message):
        raise RehearsalError(f"{person.label}: expected {what}, got {(message.text or '')[:80]!r}")
    return message


async def line_reply(line: LineEmulator, person: Attendee, count: int, what: str,
                     accept: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Wait for the ``count``-th message to ``person`` on LINE and check it with ``accept(message) -> bool``."""
    try:
        messages = await line.wait_for_messages(person.address, count, timeout=STEP_TIMEOUT)
    except TimeoutError as exc:
        raise RehearsalError(f"{person.label}: no {what} ({str(exc)[:300]})") from None
    message = messages[count - 1]
    if not accept(message):
        raise RehearsalError(f"{person.label}: expected {what}, got {str(message.get('text'))[:80]!r}")
    return message


async def line_event(person: Attendee, sending: Awaitable[tuple[int, dict[str, Any]]]) -> None:
    """Await a LINE emulator injection; our webhook must have answered 200."""
    status, _event = await sending
    if status != 200:
        raise RehearsalError(f"{person.label}: our webhook answered {status}")


async def say(stack: Stack, person: Attendee, text: str, what: str, accept: Callable[[str], bool]) -> str:
    """``person`` types ``text`` on their platform; wait for the bot's next message, check its text with
    ``accept(text) -> bool`` and return it. Only for steps with exactly one reply."""
    if person.channel == "telegram":
        tg = stack.telegram
        before = len(tg.messages_to(int(person.address)))
        tg.send_text(int(person.address), text)
        reply = await telegram_reply(tg, person, before + 1, what, lambda m: accept(m.text or ""))
        return reply.text or ""
    line = stack.line
    before = len(line.messages_to(person.address))
    await line_event(person, line.send_text(person.address, text))
    message = await line_reply(line, person, before + 1, what, lambda m: accept(str(m.get("text", ""))))
    return str(message.get("text", ""))


async def endpoint_state(stack: Stack, channel: str, address: str) -> str | None:
    """The state of the endpoint ``(channel, address)``, or None when there is none."""
    async with stack.runtime.db.read() as session:
        row = (await session.exec(select(Endpoint).where(Endpoint.channel == channel,
                                                          Endpoint.address == address))).first()
        return row.state if row else None


async def until_state(stack: Stack, person: Attendee, state: str) -> None:
    """Wait until ``person``'s chat endpoint is in ``state`` (a block has no reply to wait for)."""
    for _ in range(int(STEP_TIMEOUT / POLL_SECONDS)):
        if await endpoint_state(stack, person.channel, person.address) == state:
            return
        await asyncio.sleep(POLL_SECONDS)
    raise RehearsalError(f"{person.label}: the block was not processed within {STEP_TIMEOUT:.0f} s")


async def mail_to(sink: SmtpSink, person: Attendee, address: str, count: int) -> ReceivedMessage:
    """Wait until the sink holds ``count`` messages to ``address``; return the ``count``-th."""
    for _ in range(int(STEP_TIMEOUT / POLL_SECONDS)):
        mails = [m for m in sink.messages if address in (r.lower() for r in m.rcpt_tos)]
        if len(mails) >= count:
            return mails[count - 1]
        await asyncio.sleep(POLL_SECONDS)
    raise RehearsalError(f"{person.label}: no mail to {address} reached the SMTP sink within {STEP_TIMEOUT:.0f} s")


async def in_groups(people: list[Attendee], act: Callable[[Attendee], Awaitable[None]],
                    group_size: int) -> list[BaseException]:
    """Run ``act(person)`` for everyone, at most ``group_size`` at a time (each after its ``arrival`` delay);
    return the failures."""
    gate = asyncio.Semaphore(group_size)

    async def one(person: Attendee) -> None:
        async with gate:
            await asyncio.sleep(person.arrival)
            await act(person)

    results = await asyncio.gather(*(one(p) for p in people), return_exceptions=True)
    return [r for r in results if isinstance(r, BaseException)]
