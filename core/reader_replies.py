"""Reader replies (issue 5 item 6): a subscriber's free text reaches the author, and the author's answer reaches them.

* A text from a subscriber (an endpoint that is ``active`` or ``pending``) in a one-to-one chat that is not a command
  (DESIGN.md chat grammar: "anything else") is stored as a ``reader_message`` (direction ``in``) in the same
  transaction that marks the inbound event processed, and the reader is acknowledged. The bot then forwards it to each
  admin's private chat (``OTAYORI_FORWARD_REPLIES``, default on) and records where each copy went
  (``reader_message_notice``: admin channel, chat, the platform's message id).
* An admin answers by replying to a forwarded copy (Telegram ``reply_to_message``; LINE: quoting it, which gives the
  webhook's ``quotedMessageId``) or, on any channel, with ``返信 <number> <text>``. The answer is stored (direction
  ``out``) and sent to the reader on the channel they wrote from, then marked ``sent`` or ``failed``.
* Only admins answer: the look-up of a replied-to message is by admin channel, chat and message id, and the caller
  checks the sender is an admin first. Someone else's reply is ordinary text.

People who are not subscribers get the help text, as before (their text is not stored). Stored texts are personal
data: whoever erases an endpoint's address must erase its ``reader_message`` texts too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from core import admins
from core.admins import Actor
from core.inbound import begin_processing, finish_processing
from core.settings import Settings
from core.subscriptions import ChatContext
from core.texts import ReasonError
from storage.database import Database
from storage.models import Endpoint, EndpointState, ReaderMessage, ReaderMessageNotice, Subscriber
from storage.types import utcnow

IN = "in"
OUT = "out"
#: Endpoint states whose owner counts as a subscriber here (their text is forwarded, not answered with help).
SUBSCRIBED_STATES = (EndpointState.ACTIVE.value, EndpointState.PENDING.value)
#: A reader message is stored up to this many characters (LINE allows 5,000 per text message; Telegram 4,096).
MAX_TEXT = 5000


@dataclass(frozen=True)
class ReaderView:
    """A stored reader message with what the author needs to see and answer it: the reader's ``channel`` and
    ``address`` (chat id / LINE user id), their ``display_name`` (may be None) and subscriber id."""

    message: ReaderMessage
    channel: str
    address: str
    display_name: str | None
    subscriber_id: int


@dataclass(frozen=True)
class PendingAnswer:
    """An answer stored as ``pending``: send ``text`` to the reader at ``channel``/``address`` (quoting their message
    with ``quote_token`` on LINE, replying to ``reply_to`` on Telegram), then :meth:`ReaderReplies.finish_answer`."""

    answer_id: int
    message_id: int
    channel: str
    address: str
    text: str
    reply_to: str | None
    quote_token: str | None
    display_name: str | None


class ReaderReplies:
    """The reader-reply use cases over ``db`` (one transaction per call). ``clock`` returns aware UTC datetimes."""

    def __init__(self, db: Database, settings: Settings, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock

    @property
    def forwarding(self) -> bool:
        """True when readers' messages are forwarded: ``OTAYORI_FORWARD_REPLIES`` is on and some admin exists."""
        return self.settings.forward_replies and bool(admins.configured_admins(self.settings))

    async def receive(self, ctx: ChatContext, text: str, *, platform_message_id: str | None = None,
                      quote_token: str | None = None) -> ReaderMessage | None:
        """Store ``text`` from ``ctx`` (a private chat) as a reader message and mark the inbound event processed.

        Returns the stored row (to forward), or None — nothing stored, the event left for the ordinary grammar —
        when forwarding is off, the chat is a group, or the sender is not a subscriber. A repeated event (same
        ``event_key``) returns None as well and stores nothing. Texts longer than :data:`MAX_TEXT` are kept whole up to
        that length and marked as cut (a platform never sends more).
        """
        if not self.forwarding or ctx.chat_type != "private":
            return None
        async with self.db.write() as session:
            endpoint = (await session.exec(select(Endpoint).where(
                Endpoint.channel == ctx.channel, Endpoint.address == ctx.address))).first()
            if endpoint is None or endpoint.state not in SUBSCRIBED_STATES:
                return None
            if ctx.event_key is not None and not await begin_processing(session, ctx.channel, ctx.event_key):
                return None
            if ctx.display_name:
                subscriber = await session.get(Subscriber, endpoint.subscriber_id)
                if subscriber is not None and subscriber.display_name != ctx.display_name:
                    subscriber.display_name = ctx.display_name[:200]  # keep the name the author sees current
                    session.add(subscriber)
            now = self.clock()
            row = ReaderMessage(direction=IN, endpoint_id=endpoint.id, channel=ctx.channel,  # type: ignore[arg-type]
                                text=text[:MAX_TEXT], platform_message_id=platform_message_id,
                                quote_token=quote_token, status="received", created_at=now, updated_at=now)
            session.add(row)
            await session.flush()
            if ctx.event_key is not None:
                await finish_processing(session, ctx.channel, ctx.event_key)
            return row

    async def view(self, message_id: int) -> ReaderView:
        """The message and its reader. Raises :class:`core.texts.ReasonError` ``reader_message_not_found``."""
        async with self.db.read() as session:
            return await self._view(session, message_id)

    async def _view(self, session: AsyncSession, message_id: int) -> ReaderView:
        row = await session.get(ReaderMessage, message_id)
        if row is None or row.direction != IN:
            raise ReasonError("reader_message_not_found", number=message_id)
        endpoint = await session.get(Endpoint, row.endpoint_id)
        subscriber = await session.get(Subscriber, endpoint.subscriber_id) if endpoint is not None else None
        if endpoint is None or endpoint.address is None:
            raise ReasonError("reader_message_not_found", number=message_id)  # erased meanwhile
        return ReaderView(row, endpoint.channel, endpoint.address,
                          subscriber.display_name if subscriber is not None else None, endpoint.subscriber_id)

    async def remember_name(self, subscriber_id: int, name: str) -> None:
        """Keep a display name the platform told us (LINE's profile) for a reader who had none stored."""
        async with self.db.write() as session:
            subscriber = await session.get(Subscriber, subscriber_id)
            if subscriber is not None and not subscriber.display_name:
                subscriber.display_name = name[:200]
                session.add(subscriber)

    async def record_notice(self, message_id: int, channel: str, chat: str, platform_message_ids: list[str]) -> None:
        """Remember that reader message ``message_id`` was forwarded to ``chat`` on ``channel`` as the platform
        messages ``platform_message_ids`` (a long text may take several), and mark the message ``forwarded``."""
        if not platform_message_ids:
            return
        async with self.db.write() as session:
            now = self.clock()
            for platform_id in platform_message_ids:
                session.add(ReaderMessageNotice(message_id=message_id, channel=channel, chat=chat,
                                                platform_message_id=platform_id, created_at=now))
            row = await session.get(ReaderMessage, message_id)
            if row is not None and row.status != "forwarded":
                row.status = "forwarded"
                row.updated_at = now
                session.add(row)

    async def replied_message(self, channel: str, chat: str, platform_message_id: str) -> int | None:
        """The reader message whose forwarded copy is ``platform_message_id`` in ``chat`` on ``channel``, or None.
        The caller must have checked that the sender is an admin."""
        async with self.db.read() as session:
            notice = (await session.exec(select(ReaderMessageNotice).where(
                ReaderMessageNotice.channel == channel, ReaderMessageNotice.chat == chat,
                ReaderMessageNotice.platform_message_id == platform_message_id))).first()
            return notice.message_id if notice is not None else None

    async def is_forwarded_copy(self, channel: str, chat: str, platform_message_id: str) -> bool:
        """True when ``platform_message_id`` is a forwarded copy of a reader message: in ``chat`` on Telegram (its
        message ids count per chat), anywhere on LINE (its message ids are unique). Used to log someone who is not
        an admin replying to (quoting) one: their message reaches no reader."""
        query = select(ReaderMessageNotice.id).where(ReaderMessageNotice.channel == channel,
                                                     ReaderMessageNotice.platform_message_id == platform_message_id)
        if channel != "line":
            query = query.where(ReaderMessageNotice.chat == chat)
        async with self.db.read() as session:
            return (await session.exec(query.limit(1))).first() is not None

    async def answer(self, actor: Actor, message_id: int, text: str, *, event_key: str | None = None) -> PendingAnswer | None:
        """Store the admin's answer to reader message ``message_id`` as ``pending`` and log the action (without its
        text). Returns what to send, or None when ``event_key`` was processed before (a repeated event).

        Raises :class:`core.texts.ReasonError`: ``reader_message_not_found`` (no such message, or its reader was
        erased), ``reader_answer_empty``, ``reader_unreachable`` (the reader blocked the bot: nothing can reach them).
        """
        if not text.strip():
            raise ReasonError("reader_answer_empty")
        async with self.db.write() as session:
            if event_key is not None and not await begin_processing(session, actor.channel, event_key):
                return None
            view = await self._view(session, message_id)
            endpoint = await session.get(Endpoint, view.message.endpoint_id)
            if endpoint is None or endpoint.state == EndpointState.UNREACHABLE.value:
                raise ReasonError("reader_unreachable", number=message_id)
            now = self.clock()
            row = ReaderMessage(direction=OUT, endpoint_id=view.message.endpoint_id, channel=view.channel,
                                text=text.strip()[:MAX_TEXT], in_reply_to=message_id, actor=actor.key,
                                status="pending", created_at=now, updated_at=now)
            session.add(row)
            await session.flush()
            await admins.record(session, actor, "reader.answer", details={"message": message_id, "answer": row.id},
                                now=now)
            if event_key is not None:
                await finish_processing(session, actor.channel, event_key)
            assert row.id is not None
            return PendingAnswer(row.id, message_id, view.channel, view.address, row.text,
                                 view.message.platform_message_id, view.message.quote_token, view.display_name)

    async def finish_answer(self, answer_id: int, *, sent: bool, reason: str | None = None) -> None:
        """Record whether the answer reached the reader (``reason``: why not, at most 500 characters)."""
        async with self.db.write() as session:
            row = await session.get(ReaderMessage, answer_id)
            if row is None:
                return
            row.status = "sent" if sent else "failed"
            row.reason = reason[:500] if reason else None
            row.updated_at = self.clock()
            session.add(row)
