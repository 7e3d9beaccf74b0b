"""Telegram edge: python-telegram-bot handlers (intake) and the Telegram sender (see core.channels for the contract).

Handlers are thin (PTB examples' style): they turn an update into a :class:`core.subscriptions.ChatContext` (with the
sender's user id) and a :class:`core.chat.Incoming`, call the chat router, send the replies, and hand the effects to
the desk edge (bots.desk). Deep-link ``/start CODE`` is registered first; every text goes through the one
grammar (core.commands). Facts: reference/telegram.md (limits, errors, PTB v22 entry points).
"""

from __future__ import annotations

import asyncio
import functools
import html
import logging
import re
import time
from typing import TYPE_CHECKING, Any

from telegram import (
    BotCommand,
    ChatMemberUpdated,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Message,
    ReplyParameters,
    Update,
)
from telegram.constants import ChatMemberStatus, ChatType, ParseMode
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bots.desk import ChatOutError
from bots.pacing import paced_limiter
from bots.telegram_markdown import to_markdown
from core import render
from core.channels import OutboundMessage, Outcome, OutcomeKind, SendResult
from core.chat import Incoming
from core.effects import ChatOutcome
from core.subscriptions import ChatContext, Reply, SubscriptionService

if TYPE_CHECKING:
    from bots.desk import DeskEdge
    from core.chat import ChatRouter
    from core.media import ImageRef

log = logging.getLogger(__name__)

CHANNEL = "telegram"
#: Commands shown in Telegram's menu (setMyCommands). Command names must be [a-z0-9_]{1,32} (reference/telegram.md).
MENU_COMMANDS = (
    BotCommand("start", "ニュースレターに登録 / Subscribe"),
    BotCommand("stop", "配信を停止 / Unsubscribe"),
    BotCommand("status", "登録状況 / Status"),
    BotCommand("help", "使い方 / Help"),
)
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


def chat_context(update: Update) -> ChatContext:
    """The use-case context of ``update``: chat id as the address, the sender's user id (admin rights are checked on
    it, never on the chat), ``update:<update_id>`` as the dedupe key, and the message id / update id as evidence
    (never the text)."""
    chat = update.effective_chat
    assert chat is not None
    evidence: dict[str, Any] = {"update_id": update.update_id}
    if update.effective_message is not None:
        evidence["message_id"] = update.effective_message.message_id
    if update.callback_query is not None:
        evidence["callback_query_id"] = update.callback_query.id
    user = update.effective_user
    return ChatContext(
        channel=CHANNEL,
        address=str(chat.id),
        chat_type="private" if chat.type == ChatType.PRIVATE else "group",
        event_key=f"update:{update.update_id}",
        evidence=evidence,
        display_name=user.full_name if user is not None else None,
        user_id=str(user.id) if user is not None else None,
    )


def incoming_of(message: Message) -> Incoming:
    """What the chat router needs of a text message: the text, its formatting as our Markdown (entities ->
    bots.telegram_markdown), the message it replies to, whether it was forwarded, and its own id."""
    text = message.text or ""
    return Incoming(
        text=text,
        markdown=to_markdown(text, message.entities) if message.entities else None,
        reply_to=str(message.reply_to_message.message_id) if message.reply_to_message is not None else None,
        forwarded=message.forward_origin is not None,
        platform_message_id=str(message.message_id),
    )


def reply_markup(reply: Reply) -> InlineKeyboardMarkup | None:
    """Inline keyboard for a reply's buttons (callback data <= 64 bytes: reference/telegram.md)."""
    if not reply.buttons:
        return None
    return InlineKeyboardMarkup([[InlineKeyboardButton(b.label, callback_data=b.data)] for b in reply.buttons])


def reply_html(reply: Reply) -> str:
    """The HTML Telegram gets for ``reply``: its own ``telegram_html`` (a preview), else the text escaped."""
    return reply.telegram_html if reply.telegram_html is not None else html.escape(reply.text, quote=False)


class TelegramBot:
    """Wires the chat into a PTB :class:`Application` (polling, or webhook: bots.telegram_webhook): every text and
    button press goes through the chat router (core.chat: the author's desk, reader replies, the subscription grammar) when one is
    given, else straight to the subscription use cases; ``edge`` carries out the outcomes' effects (bots.desk)."""

    def __init__(self, subscriptions: SubscriptionService, router: ChatRouter | None = None,
                 edge: DeskEdge | None = None) -> None:
        self.subscriptions = subscriptions
        self.router = router
        self.edge = edge

    def build_application(self, token: str, base_url: str, base_file_url: str, *, polling: bool = True) -> Application:
        """A PTB Application pointed at ``base_url`` (the Bot API or a local emulator) with every handler added.

        ``polling=False``: no updater (webhook mode: bots.telegram_webhook feeds the updates). Nothing connects
        until ``initialize()``.
        """
        builder = ApplicationBuilder().token(token).base_url(base_url).base_file_url(base_file_url)
        application = (builder if polling else builder.updater(None)).build()
        self.register(application)
        return application

    def register(self, application: Application) -> None:
        """Add the handlers: deep link first, then commands, text, photos, buttons, membership; one error handler."""
        application.add_handler(CommandHandler("start", self._on_text))  # deep link: /start CODE
        application.add_handler(CommandHandler(["stop", "status", "help"], self._on_text))
        application.add_handler(MessageHandler(filters.TEXT & ~filters.UpdateType.EDITED, self._on_text))
        application.add_handler(MessageHandler(filters.PHOTO & ~filters.UpdateType.EDITED, self._on_photo))
        application.add_handler(CallbackQueryHandler(self._on_button))
        application.add_handler(ChatMemberHandler(self._on_membership, ChatMemberHandler.MY_CHAT_MEMBER))
        application.add_error_handler(self._on_error)

    @staticmethod
    async def publish_commands(application: Application) -> None:
        """Register the menu commands with ``setMyCommands`` (PTB's post_init runs only inside run_polling)."""
        await application.bot.set_my_commands(list(MENU_COMMANDS))

    async def _on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or message.text is None:
            return
        if self.router is None:
            replies = await self.subscriptions.handle_text(chat_context(update), message.text)
            await self._send_replies(update, context, replies)
            return
        outcome = await self.router.text(chat_context(update), incoming_of(message))
        await self._deliver(update, context, outcome)

    async def _on_photo(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if self.router is None or message is None or not message.photo:
            return
        largest = message.photo[-1]  # Telegram lists the sizes smallest first

        async def fetch() -> tuple[bytes, str | None]:
            try:
                file = await largest.get_file()
                return bytes(await file.download_as_bytearray()), None
            except TelegramError as exc:
                raise OSError(exc.message) from exc

        caption = None
        if message.caption:
            caption = Incoming(text=message.caption, markdown=to_markdown(message.caption, message.caption_entities))
        outcome = await self.router.photo(chat_context(update), fetch, caption)
        await self._deliver(update, context, outcome)

    async def _on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        if self.router is None:
            await query.answer()  # always answer, or the client shows a spinner (reference/telegram.md)
            replies = await self.subscriptions.handle_button(chat_context(update), query.data or "")
            await self._send_replies(update, context, replies)
            return
        try:
            outcome = await self.router.button(chat_context(update), query.data or "")
        except Exception:
            await query.answer()  # always answered, even when handling failed (then logged by _on_error)
            raise
        await query.answer(text=outcome.notice)  # always answered; a refusal shows as the answer's text
        await self._deliver(update, context, outcome, pressed=query.message)

    async def _deliver(self, update: Update, context: ContextTypes.DEFAULT_TYPE, outcome: ChatOutcome,
                       pressed: Any = None) -> None:
        """Send an outcome's replies (the first one in place of the pressed message when it asks so), then start
        its effects."""
        replies = list(outcome.replies)
        if self.edge is not None:
            replies += await self.edge.before_replies(outcome, CHANNEL)
        if outcome.replace and replies and pressed is not None and getattr(pressed, "text", None) is not None:
            first = replies.pop(0)
            try:
                await context.bot.edit_message_text(
                    chat_id=pressed.chat.id, message_id=pressed.message_id, text=reply_html(first),
                    parse_mode=ParseMode.HTML, reply_markup=reply_markup(first), link_preview_options=_NO_PREVIEW)
            except BadRequest as exc:
                if "not modified" not in exc.message.lower():
                    replies.insert(0, first)  # the message is gone or too old to edit: send it anew
        await self._send_replies(update, context, replies)
        if self.edge is not None:
            self.edge.after_replies(outcome)

    async def _on_membership(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        change: ChatMemberUpdated | None = update.my_chat_member
        if change is None or change.chat.type != ChatType.PRIVATE:
            return
        old, new = change.old_chat_member.status, change.new_chat_member.status
        ctx = chat_context(update)
        if new in (ChatMemberStatus.BANNED, ChatMemberStatus.LEFT):
            await self.subscriptions.handle_blocked(ctx)
        elif old in (ChatMemberStatus.BANNED, ChatMemberStatus.LEFT) and new == ChatMemberStatus.MEMBER:
            replies = await self.subscriptions.handle_unblocked(ctx)
            await self._send_replies(update, context, replies)

    async def _send_replies(self, update: Update, context: ContextTypes.DEFAULT_TYPE, replies: list[Reply]) -> None:
        chat = update.effective_chat
        if chat is None:
            return
        for reply in replies:
            await context.bot.send_message(
                chat_id=chat.id,
                text=reply_html(reply),
                parse_mode=ParseMode.HTML,
                reply_markup=reply_markup(reply),
                link_preview_options=_NO_PREVIEW,
            )

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        # One global error handler (PTB examples): log without message contents and keep polling.
        update_id = getattr(update, "update_id", None)
        log.error("telegram handler failed for update %s: %r", update_id, context.error)


class TelegramOut:
    """Sends to any Telegram chat for the author's desk (bots.desk.ChatOut): admin notices, status messages that are
    edited as a broadcast goes, answers to readers, the stats chart. PTB errors become
    :class:`bots.desk.ChatOutError` with Telegram's description."""

    channel = CHANNEL
    can_edit = True

    def __init__(self, bot: Any) -> None:
        self.bot = bot

    async def send(self, chat: str, reply: Reply, *, reply_to: str | None = None,
                   quote_token: str | None = None) -> list[str]:
        """``sendMessage`` (HTML) with the reply's buttons; ``reply_to``: the message it answers (sent anyway if that
        message is gone). Returns ``[message_id]``."""
        parameters = ReplyParameters(message_id=int(reply_to), allow_sending_without_reply=True) if reply_to else None
        try:
            message = await self.bot.send_message(
                chat_id=int(chat), text=reply_html(reply), parse_mode=ParseMode.HTML, reply_markup=reply_markup(reply),
                link_preview_options=_NO_PREVIEW, reply_parameters=parameters)
        except TelegramError as exc:
            raise ChatOutError(exc.message) from exc
        return [str(message.message_id)]

    async def edit(self, chat: str, message_id: str, reply: Reply) -> None:
        """``editMessageText``; an unchanged text is not an error. A reply without buttons removes the keyboard."""
        try:
            await self.bot.edit_message_text(
                chat_id=int(chat), message_id=int(message_id), text=reply_html(reply), parse_mode=ParseMode.HTML,
                reply_markup=reply_markup(reply), link_preview_options=_NO_PREVIEW)
        except BadRequest as exc:
            if "not modified" in exc.message.lower():
                return
            raise ChatOutError(exc.message) from exc
        except TelegramError as exc:
            raise ChatOutError(exc.message) from exc

    async def send_picture(self, chat: str, png: bytes, url: str | None, caption: str) -> None:
        """``sendPhoto`` uploading ``png`` (``url`` is not needed on Telegram)."""
        try:
            await self.bot.send_photo(chat_id=int(chat), photo=png, filename="signups.png", caption=caption)
        except TelegramError as exc:
            raise ChatOutError(exc.message) from exc

    async def display_name(self, user_id: str) -> None:
        """Telegram names come with every update (stored when the reader writes): nothing to look up."""
        return None


class TelegramSender:
    """Sends issues to Telegram chats, one message per request, under an overall rate limit.

    See :mod:`core.channels` for the contract. ``rate_per_second``: messages/s over all chats (Telegram allows about
    30/s to different chats; the default 25 keeps a margin: reference/telegram.md "Limits"). ``per_chat_interval``:
    seconds between two parts of one issue in the same chat (Telegram allows about 1 message/s per chat), counted from
    the previous part's answer and waited without taking capacity from the overall limiter.

    A 429 ``retry_after`` pauses every send of this sender for that many seconds (Telegram's answer does not say
    which limit was hit; PTB's ``AIORateLimiter`` pauses everything the same way), so requests that were about to
    start do not run into the same penalty.

    A photo issue (``message.image``) starts with ``sendPhoto`` whose caption is the issue's first part, cut to 1,024
    characters after entity parsing (Bot API sendPhoto); the rest of the text follows as messages, in order. The
    picture is uploaded once (multipart) and later recipients get Telegram's ``file_id`` of that upload, so a
    broadcast does not send the file thousands of times; a ``file_id`` Telegram no longer knows is uploaded again.
    """

    channel = CHANNEL
    max_recipients = 1
    #: Inline resends of a part refused with 429 after earlier parts of the issue were sent (a delivery-level retry
    #: would resend those earlier parts: Telegram cannot deduplicate).
    MID_ISSUE_RETRIES = 3

    def __init__(self, bot: Any, rate_per_second: float, per_chat_interval: float = 1.0) -> None:
        self.bot = bot
        self.limiter = paced_limiter(rate_per_second)
        self.per_chat_interval = per_chat_interval
        self._paused_until = 0.0  # time.monotonic() before which no request starts (after a 429)
        self._file_ids: dict[str, str] = {}  # picture sha256 -> Telegram file_id of our upload of it
        self._upload = asyncio.Lock()  # one upload per picture: the other workers wait and reuse its file_id

    async def send(self, message: OutboundMessage) -> SendResult:
        """Send every part to the one recipient in order; map PTB errors to outcomes (never raises them).

        Once a part has been sent, a later failure never makes the dispatcher resend the whole issue: a 429 is
        retried inline for that part, a parse error sends the remaining parts as plain text, and other temporary
        failures are reported ``uncertain`` (the reader has part of the issue).
        """
        chat_id = int(message.recipients[0])
        image = message.image
        parts = list(_with_caption(message.parts, as_html=True) if image is not None else message.parts)
        parse_mode: str | None = ParseMode.HTML
        index = 0
        last_answer: float | None = None  # time.monotonic() of the previous part's answer in this chat
        mid_issue_retries = 0
        turn_taken = message.turn_taken  # the dispatcher already waited for this message's first turn
        while index < len(parts):  # bounded: index only grows, except MID_ISSUE_RETRIES inline resends
            if last_answer is not None:
                # Telegram allows about 1 message/s in one chat; sleep outside the overall limiter.
                await asyncio.sleep(max(0.0, last_answer + self.per_chat_interval - time.monotonic()))
                if message.still_wanted is not None and not await message.still_wanted():
                    # The reader said 解除 between two parts: the rest is not sent (what arrived, arrived).
                    return SendResult(Outcome(OutcomeKind.SENT, reason=(
                        f"{index} of {len(parts)} parts sent; the reader withdrew before the rest")))
            if turn_taken:
                turn_taken = False
            else:
                await self.take_turn()
            try:
                if index == 0 and image is not None:
                    await self._send_photo(chat_id, image, parts[0], parse_mode)
                else:
                    await self.bot.send_message(
                        chat_id=chat_id, text=parts[index], parse_mode=parse_mode, link_preview_options=_NO_PREVIEW
                    )
            except RetryAfter as exc:
                wait = exc.retry_after  # a timedelta in PTB 22 (an int with PTB_TIMEDELTA unset in older releases)
                seconds = wait.total_seconds() if hasattr(wait, "total_seconds") else float(wait)
                self._pause(seconds)
                if index == 0:
                    return SendResult(Outcome(OutcomeKind.TEMPORARY, reason=exc.message, retry_after=seconds))
                if mid_issue_retries >= self.MID_ISSUE_RETRIES:
                    return SendResult(_partial(index, len(parts), exc.message))
                mid_issue_retries += 1
                continue  # the same part again, once the pause is over (a 429 means it was not sent)
            except Forbidden as exc:
                text = exc.message.lower()
                blocked = "blocked" in text or "deactivated" in text
                return SendResult(Outcome(OutcomeKind.PERMANENT, reason=exc.message, blocked=blocked))
            except ChatMigrated as exc:
                return SendResult(Outcome(OutcomeKind.PERMANENT, reason="chat migrated",
                                          new_address=str(exc.new_chat_id)))
            except BadRequest as exc:
                if "can't parse entities" in exc.message.lower() and parse_mode is not None:
                    # Our HTML was rejected: resend as plain text (reference/telegram.md). Parts already sent stay
                    # sent; only the rest goes as plain text.
                    if index == 0:
                        parts = list(message.plain_parts or parts)
                        if image is not None:
                            parts = list(_with_caption(tuple(parts), as_html=False))
                    else:
                        parts = parts[:index] + [_html_to_plain(part) for part in parts[index:]]
                    parse_mode = None
                    continue
                if "chat not found" in exc.message.lower():
                    return SendResult(Outcome(OutcomeKind.PERMANENT, reason=exc.message))
                return SendResult(Outcome(OutcomeKind.REJECTED, reason=exc.message))
            except TimedOut as exc:
                # The request may have reached Telegram: it cannot deduplicate, so this is uncertain.
                return SendResult(Outcome(OutcomeKind.UNCERTAIN, reason=f"timed out: {exc.message}"))
            except NetworkError as exc:
                if index:
                    return SendResult(_partial(index, len(parts), f"network error: {exc.message}"))
                return SendResult(Outcome(OutcomeKind.TEMPORARY, reason=f"network error: {exc.message}"))
            except TelegramError as exc:
                if index:
                    return SendResult(_partial(index, len(parts), exc.message))
                return SendResult(Outcome(OutcomeKind.TEMPORARY, reason=exc.message))
            last_answer = time.monotonic()
            index += 1
        return SendResult(Outcome.sent())

    async def _send_photo(self, chat_id: int, image: ImageRef, caption: str, parse_mode: str | None) -> None:
        """``sendPhoto`` with ``caption``: by the ``file_id`` of an earlier upload when there is one, else uploading
        the file (one upload at a time; whoever waited reuses its ``file_id``). PTB errors propagate to
        :meth:`send`, which maps them like ``sendMessage``'s."""
        file_id = self._file_ids.get(image.sha256)
        if file_id is not None:
            try:
                await self.bot.send_photo(chat_id=chat_id, photo=file_id, caption=caption, parse_mode=parse_mode)
                return
            except BadRequest as exc:
                if "file identifier" not in exc.message.lower():
                    raise
                # Telegram no longer knows the file (the bot's files were reset): upload it again, as a new request.
                self._file_ids.pop(image.sha256, None)
                await self.take_turn()
        async with self._upload:
            file_id = self._file_ids.get(image.sha256)
            if file_id is not None:
                await self.bot.send_photo(chat_id=chat_id, photo=file_id, caption=caption, parse_mode=parse_mode)
                return
            sent = await self.bot.send_photo(chat_id=chat_id, photo=image.data, filename=image.filename,
                                             caption=caption, parse_mode=parse_mode)
            if sent.photo:
                self._file_ids[image.sha256] = sent.photo[-1].file_id  # the largest size: the picture as sent

    def _pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    async def take_turn(self) -> None:
        """Wait out a 429 pause, then take one unit of the overall rate (messages/s); again if a 429 arrived
        meanwhile. The dispatcher calls it before the attempt mark (see :class:`core.channels.ChannelSender`)."""
        for _ in range(_MAX_PAUSES_PER_REQUEST):
            delay = self._paused_until - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.limiter.acquire()
            if self._paused_until <= time.monotonic():
                return


#: How many successive 429 pauses one request waits out before it goes anyway (bounds ``take_turn``).
_MAX_PAUSES_PER_REQUEST = 20
_TAG_RE = re.compile(r"<[^<>]*>")


def _html_to_plain(part: str) -> str:
    """The text Telegram would show for one of our HTML parts: tags removed, entities decoded."""
    return html.unescape(_TAG_RE.sub("", part))


@functools.lru_cache(maxsize=16)
def _with_caption(parts: tuple[str, ...], *, as_html: bool) -> tuple[str, ...]:
    """An issue's parts with the first one cut to a photo caption (1,024 characters after entity parsing, Bot API
    sendPhoto); what it loses becomes the next part, before the other parts, so the text stays whole and in order.
    ``as_html``: the parts are our Telegram HTML (else the plain-text fallback). Cached: every recipient of an issue
    has the same parts."""
    if not parts:
        return parts
    if as_html:
        head = render.split_telegram_html(parts[0], first_limit=render.TELEGRAM_CAPTION_LIMIT)
    else:
        # Plain parts are cut in UTF-16 units (core.render.split_line_text): never more than Telegram's characters.
        head = render.split_line_text(parts[0], render.TELEGRAM_TEXT_LIMIT, first_limit=render.TELEGRAM_CAPTION_LIMIT)
    return (*head, *parts[1:])


def _partial(sent_parts: int, total: int, reason: str) -> Outcome:
    """Part of the issue reached the chat: resending it whole would duplicate what arrived, so report it."""
    return Outcome(OutcomeKind.UNCERTAIN, reason=f"{sent_parts} of {total} parts sent, then: {reason}")
