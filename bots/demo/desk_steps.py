"""The demo's author's-desk act, after the seminar broadcast: a few attendees choose a topic in the chat, the author
answers the question an attendee asked (forwarded to the author's Telegram chat), writes a topic-filtered issue and
sends it, then schedules another one that the scheduler starts when it falls due — all from the author's Telegram
chat, through the real python-telegram-bot client and the emulators. Then :func:`observe_desk` reads what arrived.

Every wait is bounded (:data:`bots.demo.waiting.STEP_TIMEOUT`) and fails the demo with one clear line.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import select

from bots.demo.desk_checks import (
    ANSWER,
    DEMO_ADMIN_ID,
    OTHER_TOPIC_LABEL,
    SCHEDULED_BODY,
    SCHEDULED_TITLE,
    TOPIC_BODY_HTML,
    TOPIC_LABEL,
    TOPIC_TITLE,
    DeskExpectation,
    DeskObservation,
    DeskPlan,
    desk_expectation,
    plan_desk,
    question_forwarded,
)
from bots.demo.observe import line_issue_copies, telegram_issue_copies
from bots.demo.script import Attendee
from bots.demo.waiting import POLL_SECONDS, STEP_TIMEOUT, RehearsalError, line_event, line_reply, telegram_reply
from bots.sandbox.stack import Stack
from bots.sandbox.telegram_api import SentMessage, TelegramEmulator
from bots.scheduling import enqueue_due_once
from storage.models import Issue

#: The schedule the author types: a couple of seconds ahead keeps the demo short (any time works the same way).
SCHEDULE_TEXT = "予約 +2s"


@dataclass
class DeskReadings:
    """The act's plan, what it must produce, what it did, and the author's chat as text (``(who, text)`` lines)."""

    plan: DeskPlan
    expectation: DeskExpectation
    observation: DeskObservation
    transcript: list[tuple[str, str]] = field(default_factory=list)


class AuthorChat:
    """The author's private chat with the bot on the Telegram emulator; every line is kept for the report."""

    def __init__(self, tg: TelegramEmulator) -> None:
        self.tg = tg
        self.transcript: list[tuple[str, str]] = []

    def _keep(self, who: str, text: str, buttons: list[dict[str, Any]] | None = None) -> None:
        shown = text if len(text) <= 160 else text[:157] + "…"
        if buttons:
            shown += "\n" + " ".join(f"[{b.get('text')}]" for b in buttons)
        self.transcript.append((who, shown))

    async def _next(self, before: int, count: int) -> list[SentMessage]:
        try:
            messages = await self.tg.wait_for_messages(DEMO_ADMIN_ID, before + count, timeout=STEP_TIMEOUT)
        except TimeoutError as exc:
            raise RehearsalError(f"the author's chat: no answer ({str(exc)[:300]})") from None
        for message in messages[before:before + count]:
            self._keep("bot", message.text or message.caption or "", message.buttons)
        return messages[before:before + count]

    async def say(self, text: str, count: int = 1, *, shown: str | None = None, **options: Any) -> list[SentMessage]:
        """The author types ``text`` (``shown`` in the transcript); return the bot's next ``count`` messages."""
        before = len(self.tg.messages_to(DEMO_ADMIN_ID))
        self._keep("著者", shown or text)
        self.tg.send_text(DEMO_ADMIN_ID, text, **options)
        return await self._next(before, count)

    async def press(self, message: SentMessage, label: str, count: int = 1) -> list[SentMessage]:
        """The author presses the button ``label``; return the bot's next ``count`` messages."""
        before = len(self.tg.messages_to(DEMO_ADMIN_ID))
        self._keep("著者", f"[{label}] を押す")
        update_id = self.tg.press_button(DEMO_ADMIN_ID, message.message_id, message.callback_data_for(label))
        if update_id is not None:
            await self.tg.wait_for_callback_answer(update_id, timeout=STEP_TIMEOUT)
        return await self._next(before, count) if count else []

    async def until(self, accept: Any, what: str) -> SentMessage:
        """Wait until one of the author's messages (as it reads now: status messages are edited) is accepted."""
        try:
            found = await self.tg.wait_until(
                lambda: next((m for m in self.tg.messages_to(DEMO_ADMIN_ID) if accept(m.text or "")), None),
                timeout=STEP_TIMEOUT, what=what)
        except TimeoutError:
            raise RehearsalError(f"the author's chat: no {what}") from None
        return found


async def choose_topic(stack: Stack, person: Attendee, label: str) -> None:
    """``person`` types トピック and presses ``label`` (each change is a ``topics`` ledger event)."""
    if person.channel == "telegram":
        tg, chat = stack.telegram, int(person.address)
        count = len(tg.messages_to(chat))
        tg.send_text(chat, "トピック")
        menu = await telegram_reply(tg, person, count + 1, "the topic menu", lambda m: bool(m.buttons))
        tg.press_button(chat, menu.message_id, menu.callback_data_for(label))
        await telegram_reply(tg, person, count + 2, "the topic change", lambda m: label in (m.text or ""))
        return
    line = stack.line
    count = len(line.messages_to(person.address))
    await line_event(person, line.send_text(person.address, "トピック"))
    menu = await line_reply(line, person, count + 1, "the topic menu", lambda m: bool(m.get("quickReply")))
    data = next(i["action"]["data"] for i in menu["quickReply"]["items"] if i["action"]["label"] == label)
    await line_event(person, line.postback(person.address, data))
    await line_reply(line, person, count + 2, "the topic change", lambda m: label in m.get("text", ""))


async def author_desk(stack: Stack, plan: list[Attendee]) -> DeskReadings:
    """Act the desk (see the module docstring) and observe it. Raises :class:`RehearsalError`."""
    desk = plan_desk(plan)
    for person in desk.events_fans:
        await choose_topic(stack, person, TOPIC_LABEL)
    for person in desk.it_fans:
        await choose_topic(stack, person, OTHER_TOPIC_LABEL)
    author = AuthorChat(stack.telegram)

    if desk.answered is not None:  # the question arrived during the second act; the author replies to it
        notice = await author.until(question_forwarded, "forwarded question")
        author._keep("bot", notice.text or "")
        await author.say(ANSWER, reply_to_message_id=notice.message_id, shown=f"(↩ 返信) {ANSWER}")

    await author.say("配信")
    [options] = await author.say(TOPIC_BODY_HTML, parse_mode="HTML", shown=TOPIC_BODY_HTML.replace("<b>", "**")
                                 .replace("</b>", "**"))
    await author.press(options, TOPIC_LABEL, count=0)  # edits the options message in place
    await author.until(lambda text: f"トピック: {TOPIC_LABEL}" in text, "topic chosen")
    await author.press(options, "送信")
    final = await author.until(lambda text: f"「{TOPIC_TITLE}」配信完了" in text, "final report of the topic issue")
    author._keep("bot", f"(同じメッセージが更新されて) {final.text}")

    await author.say("配信")
    await author.say(SCHEDULED_BODY)
    await author.say(SCHEDULE_TEXT)
    for _ in range(int(STEP_TIMEOUT / POLL_SECONDS)):  # what `otayori run` does every 5 s, here every 0.05 s
        if await enqueue_due_once(stack.runtime):
            break
        await asyncio.sleep(POLL_SECONDS)
    else:
        raise RehearsalError("the scheduled issue never fell due")
    final = await author.until(lambda text: f"「{SCHEDULED_TITLE}」配信完了" in text, "final report (scheduled)")
    author._keep("bot", f"(予約時刻に始まり、同じメッセージが更新されて) {final.text}")
    assert stack.runtime.desk_edge is not None
    await stack.runtime.desk_edge.wait_idle(STEP_TIMEOUT)
    return DeskReadings(desk, desk_expectation(plan, desk), await observe_desk(stack), author.transcript)


def _mail_copies(stack: Stack, title: str) -> dict[str, int]:
    """``{address: newsletters with Subject title}`` the SMTP sink received."""
    found: Counter[str] = Counter()
    for received in stack.smtp.messages:
        message = email.message_from_bytes(received.data, policy=email.policy.default)
        if str(message.get("subject", "")) == title:
            for address in received.rcpt_tos:
                found[address.lower()] += 1
    return dict(found)


def _copies(stack: Stack, title: str) -> dict[str, dict[str, int]]:
    telegram = telegram_issue_copies(stack.telegram, title)
    telegram.pop(str(DEMO_ADMIN_ID), None)  # the author's own chat shows the title in its status messages
    return {"telegram": telegram, "line": line_issue_copies(stack.line, title), "email": _mail_copies(stack, title)}


async def observe_desk(stack: Stack) -> DeskObservation:
    """Read what the desk act produced from the emulators, the SMTP sink and the database."""
    tg, line = stack.telegram, stack.line
    async with stack.runtime.db.read() as session:
        scheduled = (await session.exec(select(Issue).where(Issue.title == SCHEDULED_TITLE))).first()
    author = [m.text or "" for m in tg.messages_to(DEMO_ADMIN_ID)]
    answers: Counter[tuple[str, str]] = Counter()
    for message in tg.sent:
        if message.chat_id != DEMO_ADMIN_ID and ANSWER in (message.text or ""):
            answers[("telegram", str(message.chat_id))] += 1
    for delivered in line.delivered:
        answers.update(("line", delivered.user_id) for m in delivered.messages if ANSWER in str(m.get("text", "")))
    return DeskObservation(
        topic_copies=_copies(stack, TOPIC_TITLE),
        scheduled_copies=_copies(stack, SCHEDULED_TITLE),
        scheduled_at=scheduled.scheduled_at if scheduled else None,
        started_at=scheduled.started_at if scheduled else None,
        final_reports={title: sum(1 for text in author if f"「{title}」配信完了" in text)
                       for title in (TOPIC_TITLE, SCHEDULED_TITLE)},
        notices=sum(1 for text in author if question_forwarded(text)),
        answers=dict(answers),
    )
