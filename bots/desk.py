"""The author's desk at the edge: carries out the effects of a chat outcome (core.effects) with the platform clients.

* **Follow a broadcast** (``送信``, a test send, a scheduled issue that fell due): dispatch the issue in a background
  task of the running app and report from the outbox rows — not from the dispatcher's return — so the report is right
  whoever sends (``otayori run``'s background dispatcher and this task share each channel through the channel lease,
  and each delivery is claimed once). Telegram: one status message in the admin's private chat, edited at most every
  :data:`PROGRESS_INTERVAL` seconds with sent / not yet sent / failed per channel (editMessageText), ending with the
  final report. LINE (no edits, pushes cost quota): a start notice by reply, one final report by push. The final
  report also goes to every other admin's private chat.
* **Forward a reader's message** to each admin's private chat (who sent it, on which channel) and record each copy's
  message id, so a reply to it (Telegram) or a quote of it (LINE ``quotedMessageId``) answers the reader.
* **Deliver an answer** to the reader on their channel (replying to / quoting their message) before the admin's
  chat is answered, so the admin is told whether it arrived.
* **Send the stats chart** (bots.charts): Telegram ``sendPhoto``; LINE an image message whose URL is our signed
  ``/charts/signups/<token>.png`` (core.desk decides whether LINE can have it).

Background tasks are tracked and cancelled when the runtime closes; every loop is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from core import texts
from core.admins import Actor, configured_admins
from core.desk import AuthorDesk, failed_reasons
from core.desk_views import channel_name, progress_buttons, progress_text, reader_answer_parts, reader_notice_parts
from core.effects import ChatOutcome, DeliverAnswer, FollowBroadcast, ForwardReaderMessage, SendChart
from core.reader_replies import ReaderReplies
from core.reports import DeliveryReport, delivery_report
from core.settings import Settings
from core.stats import signups_per_day
from core.subscriptions import Reply
from storage.database import Database
from storage.types import utcnow

log = logging.getLogger(__name__)

#: Seconds between two edits of a Telegram status message (Telegram allows about one message per second per chat;
#: "at most every few seconds" leaves room for everything else the admin's chat receives).
PROGRESS_INTERVAL = 3.0
#: Seconds between two reads of the outbox while following a broadcast.
POLL_INTERVAL = 0.5
#: A broadcast is followed at most this long (the dispatcher gives up on a delivery after 6 h: DispatchPolicy).
MAX_FOLLOW_SECONDS = 7 * 3600.0


class ChatOutError(Exception):
    """A message to a chat could not be sent (blocked, unknown chat, network); ``reason`` says why in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ChatOut(Protocol):
    """Sending to any chat on one platform (bots/telegram.py ``TelegramOut``, bots/line.py ``LineOut``)."""

    channel: str
    can_edit: bool

    async def send(self, chat: str, reply: Reply, *, reply_to: str | None = None,
                   quote_token: str | None = None) -> list[str]:
        """Send ``reply`` to ``chat``; return the platform ids of the messages sent. Raises :class:`ChatOutError`."""
        ...

    async def edit(self, chat: str, message_id: str, reply: Reply) -> None:
        """Replace message ``message_id`` with ``reply`` (only where ``can_edit``). Raises :class:`ChatOutError`."""
        ...

    async def send_picture(self, chat: str, png: bytes, url: str | None, caption: str) -> None:
        """Send a PNG picture (Telegram uploads ``png``; LINE needs the https ``url``). Raises ChatOutError."""
        ...

    async def display_name(self, user_id: str) -> str | None:
        """The user's display name on the platform, or None when it cannot be read."""
        ...


Dispatch = Callable[[int, dict[str, int]], Awaitable[object]]


class DeskEdge:
    """Carries out chat outcomes' effects. ``outs``: a :class:`ChatOut` per platform that is on; ``dispatch(issue_id,
    enqueued)``: sends the issue's deliveries (bots.broadcasting.dispatch_and_report on the runtime: LINE quota
    deferral, then the dispatcher); ``chart_png()``: the sign-up chart as PNG bytes."""

    def __init__(self, db: Database, settings: Settings, desk: AuthorDesk, readers: ReaderReplies,
                 outs: dict[str, ChatOut], dispatch: Dispatch, *, progress_interval: float = PROGRESS_INTERVAL,
                 poll_interval: float = POLL_INTERVAL) -> None:
        self.db = db
        self.settings = settings
        self.desk = desk
        self.readers = readers
        self.outs = outs
        self.dispatch = dispatch
        self.progress_interval = progress_interval
        self.poll_interval = poll_interval
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- entry points ----------------------------------------------------------------------------------------------

    async def before_replies(self, outcome: ChatOutcome, channel: str) -> list[Reply]:
        """Effects whose result is part of the answer in this chat, done now: an answer to a reader is delivered
        (and the admin told how it went); a broadcast followed from LINE gets its start notice (sent by reply, which
        is free). Returns the replies to send after ``outcome.replies``."""
        extra: list[Reply] = []
        for effect in outcome.effects:
            if isinstance(effect, DeliverAnswer):
                extra.append(await self.deliver_answer(effect))
            elif isinstance(effect, FollowBroadcast) and not effect.test and not self._can_edit(channel):
                extra.append(await self._status_reply(effect.issue_id, final=False))
        return extra

    def after_replies(self, outcome: ChatOutcome) -> None:
        """Start the background effects once the chat has its replies: follow broadcasts, forward reader messages,
        send the chart."""
        for effect in outcome.effects:
            if isinstance(effect, FollowBroadcast):
                self.spawn(self.follow(effect))
            elif isinstance(effect, ForwardReaderMessage):
                self.spawn(self.forward(effect.message_id))
            elif isinstance(effect, SendChart):
                self.spawn(self.send_chart(effect))

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` in the background; it is kept until done and cancelled by :meth:`close`."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("desk background task failed: %r", task.exception())

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait (bounded) until no background task is left (tests, the demo)."""
        deadline = time.monotonic() + timeout
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline - time.monotonic()))

    async def close(self) -> None:
        """Cancel the background tasks (the runtime is closing; the outbox keeps what was not sent)."""
        for _ in range(3):  # bounded: a task being cancelled may have spawned one more (a follower's dispatch)
            tasks = list(self._tasks)
            if not tasks:
                return
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    # ---- following a broadcast -------------------------------------------------------------------------------------

    def _can_edit(self, channel: str) -> bool:
        out = self.outs.get(channel)
        return out is not None and out.can_edit

    async def _status_reply(self, issue_id: int, *, final: bool) -> Reply:
        report = await delivery_report(self.db, issue_id)
        assert report is not None
        reasons = await failed_reasons(self.db, issue_id) if final else {}
        text = progress_text(self.settings, report, reasons, final=final, at=utcnow())
        return Reply("desk_progress_final" if final else "desk_progress", text, progress_buttons(issue_id, final=final))

    async def follow(self, effect: FollowBroadcast) -> None:
        """Dispatch ``effect.issue_id`` and report its progress (see the module docstring)."""
        actor = effect.actor
        out = self.outs.get(actor.channel)
        status_id: str | None = None
        last_edit = time.monotonic()
        shown: object = None
        if out is not None and out.can_edit and not effect.test:
            reply = await self._status_reply(effect.issue_id, final=False)
            status_id = await self._send_quietly(out, actor.user_id, reply)
            last_edit = time.monotonic()
        # Tracked like any background task: it may outlive this report by a moment, and close() cancels it.
        dispatching = self.spawn(self._dispatch(effect))
        deadline = time.monotonic() + MAX_FOLLOW_SECONDS
        while time.monotonic() < deadline:  # bounded: ends when no delivery is open, or at the deadline
            report = await delivery_report(self.db, effect.issue_id)
            if report is None or not _open(report):
                break
            due = time.monotonic() - last_edit >= self.progress_interval
            if status_id is not None and out is not None and due and report.counts != shown:
                reply = await self._status_reply(effect.issue_id, final=False)
                with contextlib.suppress(ChatOutError):
                    await out.edit(actor.user_id, status_id, reply)
                shown, last_edit = report.counts, time.monotonic()
            await asyncio.sleep(self.poll_interval)
        await asyncio.wait({dispatching}, timeout=self.poll_interval * 4)  # its last bookkeeping (issue -> sent)
        final = await self._status_reply(effect.issue_id, final=True)
        if effect.test:
            final = Reply(final.kind, texts.text("desk_test_report_head", "ja") + "\n" + final.text)
        if status_id is not None and out is not None:
            await asyncio.sleep(max(0.0, last_edit + self.progress_interval - time.monotonic()))
            try:
                await out.edit(actor.user_id, status_id, final)
            except ChatOutError:
                status_id = None  # the status message is gone: send the report instead
        if status_id is None and out is not None:
            await self._send_quietly(out, actor.user_id, final)
        if effect.test:
            return
        for admin in configured_admins(self.settings):
            if admin == actor or admin.channel not in self.outs:
                continue
            await self._send_quietly(self.outs[admin.channel], admin.user_id, final)

    async def _dispatch(self, effect: FollowBroadcast) -> None:
        await self.dispatch(effect.issue_id, dict(effect.enqueued))

    async def _send_quietly(self, out: ChatOut, chat: str, reply: Reply) -> str | None:
        """Send to an admin's chat; a failure (they never opened the bot, blocked it) is logged, not raised."""
        try:
            ids = await out.send(chat, reply)
        except ChatOutError as exc:
            log.warning("could not notify admin %s:%s: %s", out.channel, chat, exc.reason)
            return None
        return ids[0] if ids else None

    # ---- reader replies --------------------------------------------------------------------------------------------

    async def forward(self, message_id: int) -> None:
        """Forward reader message ``message_id`` to each admin's private chat; record where each copy went."""
        view = await self.readers.view(message_id)
        name = view.display_name
        reader_out = self.outs.get(view.channel)
        if name is None and reader_out is not None:
            name = await reader_out.display_name(view.address)
            if name:
                await self.readers.remember_name(view.subscriber_id, name)
        for admin in configured_admins(self.settings):
            out = self.outs.get(admin.channel)
            if out is None:
                continue
            ids: list[str] = []
            try:
                for part in reader_notice_parts(message_id, view.channel, name, view.message.text, admin.channel):
                    ids.extend(await out.send(admin.user_id, Reply("reader_notice", part)))
            except ChatOutError as exc:
                log.warning("reader message %s not forwarded to %s: %s", message_id, admin.key, exc.reason)
            await self.readers.record_notice(message_id, admin.channel, admin.user_id, ids)

    async def deliver_answer(self, effect: DeliverAnswer) -> Reply:
        """Send the answer to the reader; record the outcome; return the admin's confirmation (or the failure)."""
        answer = effect.answer
        out = self.outs.get(answer.channel)
        name = answer.display_name or texts.text("reader_unnamed", "ja")
        values = {"number": answer.message_id, "channel": channel_name(answer.channel), "name": name}
        try:
            if out is None:
                raise ChatOutError(texts.text("channel_off", "ja", channel=answer.channel))
            parts = reader_answer_parts(self.settings.sender_name or "", answer.text, answer.channel)
            for index, part in enumerate(parts):
                first = index == 0
                await out.send(answer.address, Reply("reader_answer", part),
                               reply_to=answer.reply_to if first else None,
                               quote_token=answer.quote_token if first else None)
        except ChatOutError as exc:
            await self.readers.finish_answer(answer.answer_id, sent=False, reason=exc.reason)
            return Reply("reader_answer_failed", texts.text("reader_answer_failed", "ja", reason=exc.reason, **values))
        await self.readers.finish_answer(answer.answer_id, sent=True)
        return Reply("reader_answer_sent", texts.text("reader_answer_sent", "ja", **values))

    # ---- stats chart -------------------------------------------------------------------------------------------------

    async def send_chart(self, effect: SendChart) -> None:
        """Draw the sign-up chart and send it to the chat the stats command came from."""
        out = self.outs.get(effect.actor.channel)
        if out is None:
            return
        png = await chart_png(self.db, self.settings)
        url = self.desk.chart_url() if effect.actor.channel == "line" else None
        try:
            await out.send_picture(effect.chat, png, url, texts.text("desk_chart_caption", "ja"))
        except ChatOutError as exc:
            log.warning("the stats chart could not be sent: %s", exc.reason)


def _open(report: DeliveryReport) -> bool:
    """True while some delivery of the issue is pending or in flight."""
    return any(count for (_channel, status), count in report.counts.items() if status in ("pending", "sending"))


async def chart_png(db: Database, settings: Settings, days: int = 30) -> bytes:
    """The sign-up chart (bots.charts) for the last ``days`` days, drawn in a worker thread (matplotlib is CPU work:
    the event loop keeps serving)."""
    from bots.charts import signup_chart_png

    series = await signups_per_day(db, settings.zone, days=days)
    return await asyncio.to_thread(signup_chart_png, series)


def scheduled_actor(settings: Settings, created_by: str) -> Actor | None:
    """The admin who created an issue (``created_by`` ``telegram:<id>`` / ``line:<id>``), or None (the CLI, or
    someone no longer an admin): a scheduled issue that falls due is reported to them."""
    channel, _, user_id = created_by.partition(":")
    actor = Actor(channel, user_id)
    return actor if actor in configured_admins(settings) else None
