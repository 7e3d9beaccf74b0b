"""Who a chat message is for: the author's desk, the reader-reply flow, or the subscription grammar.

Rules (DESIGN.md chat grammar and "Admin verbs"; issue 5 items 1, 2 and 6), checked on every message and button press
by the *sender's* user id (``ChatContext.user_id``), in a private chat or a group:

* **Admins** (core.admins.is_admin): a draft being composed takes the message as its body or title, whatever it says;
  a reply to (LINE: a quote of) a forwarded reader message answers that reader; an admin verb (core.commands
  .parse_admin) acts; a message forwarded into the chat starts a draft with it as the body; free text gets the admin
  help (an admin's own words are not forwarded to the admins); everything else is the ordinary grammar.
* **Everyone else**: admin verbs are ordinary text, and the attempt is logged without the message
  (core.admins.record_refusal); a reply to a forwarded reader message is ordinary text too (logged); a subscriber's
  free text in a one-to-one chat is stored, acknowledged and forwarded to the admins (core.reader_replies); the rest
  is the subscription grammar (core.subscriptions). A desk button pressed by a non-admin does nothing but answer with
  a short refusal (and is logged).

Admin actions are taken at most once per inbound event: the event is marked processed before the action runs (a
redelivered 配信 does not start a second draft; a crash in between loses the action, which the admin sees and
repeats).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core import texts
from core.admins import Actor, is_admin, record_refusal
from core.commands import AdminVerb, IntentKind, is_confirmation_code, parse, parse_admin
from core.desk import AuthorDesk, refusal
from core.desk_views import BUTTON_PREFIX
from core.effects import ChatOutcome, DeliverAnswer, ForwardReaderMessage
from core.inbound import begin_processing, finish_processing, is_processed
from core.reader_replies import ReaderReplies
from core.settings import Settings
from core.subscriptions import ChatContext, Reply, SubscriptionService
from core.texts import ReasonError


@dataclass(frozen=True)
class Incoming:
    """One chat message as the edge received it.

    ``text``: the text as typed (Telegram: ``Message.text``; LINE: the text message). ``markdown``: the same text as
    our Markdown when the platform carried formatting (Telegram entities -> bots/telegram_markdown.py); None = the
    text itself. ``reply_to``: the platform id of the message this one replies to (Telegram ``reply_to_message``) or
    quotes (LINE ``quotedMessageId``). ``forwarded``: a message forwarded from elsewhere (Telegram
    ``forward_origin``). ``platform_message_id``/``quote_token``: this message's own id and LINE quote token (kept
    with a reader message so the answer can reply to / quote it).
    """

    text: str
    markdown: str | None = None
    reply_to: str | None = None
    forwarded: bool = False
    platform_message_id: str | None = None
    quote_token: str | None = None


def actor_of(ctx: ChatContext) -> Actor:
    """The sender as an :class:`Actor` (their user id; the chat address when the platform gave none)."""
    return Actor(ctx.channel, ctx.user_id or ctx.address)


class ChatRouter:
    """Routes chat messages and button presses (see the module docstring); returns a :class:`ChatOutcome`."""

    def __init__(self, settings: Settings, subscriptions: SubscriptionService, desk: AuthorDesk,
                 readers: ReaderReplies) -> None:
        self.settings = settings
        self.subscriptions = subscriptions
        self.desk = desk
        self.readers = readers
        self.db = subscriptions.db

    def is_admin(self, ctx: ChatContext) -> bool:
        """True when the sender (``ctx.user_id``, never the chat) is an admin on this channel."""
        return is_admin(self.settings, ctx.channel, ctx.user_id)

    # ---- messages ------------------------------------------------------------------------------------------------

    async def text(self, ctx: ChatContext, incoming: Incoming) -> ChatOutcome:
        """A text message (see the module docstring for the order of the rules)."""
        if self.is_admin(ctx):
            return await self._admin_text(ctx, incoming)
        return await self._reader_text(ctx, incoming)

    async def _admin_text(self, ctx: ChatContext, incoming: Incoming) -> ChatOutcome:
        actor = actor_of(ctx)
        body = incoming.markdown if incoming.markdown is not None else incoming.text
        composing = await self.desk.composing(actor)
        if composing is not None:
            if not await self._claim(ctx):
                return ChatOutcome()
            return await self.desk.take_message(actor, composing[0], composing[1], body)
        if incoming.reply_to is not None:
            message_id = await self.readers.replied_message(ctx.channel, ctx.address, incoming.reply_to)
            if message_id is not None:
                return await self._answer(ctx, actor, message_id, incoming.text)
        command = parse_admin(incoming.text)
        if command is not None and command.verb is AdminVerb.REPLY:
            assert command.argument is not None
            return await self._answer(ctx, actor, int(command.argument), command.text or "")
        if command is not None:
            if not await self._claim(ctx):
                return ChatOutcome()
            return await self.desk.command(actor, ctx, command)
        if incoming.forwarded:
            if not await self._claim(ctx):
                return ChatOutcome()
            return await self.desk.start_with_body(actor, body)
        intent = parse(incoming.text)
        if intent.kind is IntentKind.TEXT and ctx.chat_type == "private" and not is_confirmation_code(incoming.text):
            return ChatOutcome([Reply("admin_help", texts.text("admin_help", "ja"))])
        replies = await self.subscriptions.handle_text(ctx, incoming.text)
        if intent.kind is IntentKind.HELP and replies:
            replies.append(Reply("admin_help", texts.text("admin_help", "ja")))
        return ChatOutcome(replies)

    async def _answer(self, ctx: ChatContext, actor: Actor, message_id: int, text: str) -> ChatOutcome:
        try:
            pending = await self.readers.answer(actor, message_id, text, event_key=ctx.event_key)
        except ReasonError as error:
            return refusal(error)
        if pending is None:
            return ChatOutcome()
        return ChatOutcome(effects=[DeliverAnswer(pending, actor, ctx.address)])

    async def _reader_text(self, ctx: ChatContext, incoming: Incoming) -> ChatOutcome:
        command = parse_admin(incoming.text)
        if command is not None:
            await self._refuse(ctx, f"chat.{command.verb.value}")
        elif incoming.reply_to is not None and await self.readers.is_forwarded_copy(
                ctx.channel, ctx.address, incoming.reply_to):
            await self._refuse(ctx, "reader.answer")  # a former admin, or a crafted quote: it reaches no reader
        if not is_confirmation_code(incoming.text) and parse(incoming.text).kind is IntentKind.TEXT:
            stored = await self.readers.receive(ctx, incoming.text, platform_message_id=incoming.platform_message_id,
                                                quote_token=incoming.quote_token)
            if stored is not None:
                assert stored.id is not None
                ack = Reply("reader_ack", texts.text("reader_ack", "ja", sender=self.settings.sender_name or ""))
                return ChatOutcome([ack], [ForwardReaderMessage(stored.id)])
        return ChatOutcome(await self.subscriptions.handle_text(ctx, incoming.text))

    async def photo(self, ctx: ChatContext, fetch: Callable[[], Awaitable[tuple[bytes, str | None]]],
                    caption: Incoming | None = None) -> ChatOutcome:
        """A photo. From an admin it is an issue's picture (core.desk.AuthorDesk.take_photo): ``fetch()`` downloads
        it from the platform (``(bytes, declared MIME type)``) — only then, and only for admins; ``caption`` is the
        body. From anyone else a photo is not a command and gets no answer (it is not forwarded either)."""
        if not await self._claim(ctx):
            return ChatOutcome()
        if not self.is_admin(ctx):
            return ChatOutcome()
        try:
            data, content_type = await fetch()
        except OSError as exc:  # the platform's file could not be read: say so, keep the draft as it was
            return ChatOutcome([Reply("desk_photo_unreadable", texts.text("desk_photo_unreadable", "ja",
                                                                          reason=str(exc)[:200]))])
        body = None
        if caption is not None and caption.text:
            body = caption.markdown if caption.markdown is not None else caption.text
        return await self.desk.take_photo(actor_of(ctx), data, content_type, body)

    # ---- buttons ---------------------------------------------------------------------------------------------------

    async def button(self, ctx: ChatContext, data: str) -> ChatOutcome:
        """A button press: desk buttons only for admins (anyone else gets a short refusal and nothing changes), the
        rest is the subscription grammar's."""
        if data.startswith(BUTTON_PREFIX):
            if not self.is_admin(ctx):
                action = data.removeprefix(BUTTON_PREFIX).split(":")[1:2] or ["?"]
                await self._refuse(ctx, f"button.{action[0]}"[:64])
                return ChatOutcome(notice=texts.text("desk_admin_only", "ja"))
            if not await self._claim(ctx):
                return ChatOutcome()
            return await self.desk.press(actor_of(ctx), data)
        return ChatOutcome(await self.subscriptions.handle_button(ctx, data))

    # ---- helpers ---------------------------------------------------------------------------------------------------

    async def _claim(self, ctx: ChatContext) -> bool:
        """Mark the inbound event processed before an admin action; False when it was processed before."""
        if ctx.event_key is None:
            return True
        async with self.db.write() as session:
            if not await begin_processing(session, ctx.channel, ctx.event_key):
                return False
            await finish_processing(session, ctx.channel, ctx.event_key)
            return True

    async def _refuse(self, ctx: ChatContext, action: str) -> None:
        """Log a refused admin attempt (never the message), once per inbound event."""
        if ctx.event_key is not None and await is_processed(self.db, ctx.channel, ctx.event_key):
            return
        await record_refusal(self.db, ctx.channel, ctx.user_id or ctx.address, action)
