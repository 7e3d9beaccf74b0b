"""The author's desk in the chat (issue 5 items 2-4 and 8): compose a draft, choose topic and channels, preview it,
send a test to oneself, send now or schedule, cancel, and read the stats — each step returning replies (and effects
for the edge: core.effects).

The conversation, as DESIGN.md's chat grammar has it: ``配信`` (``/broadcast``) starts a draft and "the next message
is the body, whatever it says"; its first line is the title (a one-line message is the body alone, and the next
message gives the title); then the draft's options message with buttons (topics, channels, プレビュー, テスト送信,
送信, 取り消し) — from here on messages are commands again (``予約 2026-12-01 09:00``, ``予約 +30m``, ``キャンセル``).
The step is kept in the database (core.drafts), so a restart in the middle changes nothing.

Every action goes through the same use cases as the CLI (core.drafts, core.issues, core.schedule), so the same rules
and refusals apply; each refusal is answered with its reason (:class:`core.texts.ReasonError`). Only admins reach
this module: the chat router (core.chat) checks the sender's id on every message and button press.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy import func, select

from core import admins, render, texts
from core.admins import Actor
from core.broadcast import IssueFileError, parse_issue_markdown, recipient_counts
from core.commands import AdminCommand, AdminVerb, normalise_keyword
from core.desk_views import (
    BUTTON_PREFIX,
    ChannelRendering,
    issue_channels,
    options_reply,
    preview_replies,
    recipients_text,
    stats_text,
    topic_menu_reply,
)
from core.drafts import ComposeStep, compose_state, set_compose_step, start_draft, update_draft
from core.effects import ChatOutcome, FollowBroadcast, SendChart
from core.issues import ALL_CHANNELS, cancel_issue, create_test_send, load_issue, schedule_issue, send_now
from core.schedule import format_local, parse_schedule
from core.settings import Settings
from core.stats import collect_stats
from core.subscriptions import Button, ChatContext, Reply
from core.texts import ReasonError
from core.tokens import Tokens
from storage.database import Database
from storage.models import Delivery, DeliveryStatus, Issue, IssueStatus
from storage.types import utcnow

#: How long the email preview link works (a signed, timed token: core.tokens).
PREVIEW_LINK_DAYS = 7
#: Where the email preview is served (bots/web.py); the token names the issue.
PREVIEW_PATH = "/preview/"
#: Where the stats chart is served for LINE image messages (bots/web.py); LINE fetches it over https.
CHART_PATH = "/charts/signups/"
_TITLE_MAX = 300


def _reply(kind: str, key: str, **values: object) -> Reply:
    return Reply(kind, texts.text(key, "ja", **values))


def refusal(error: ReasonError) -> ChatOutcome:
    """A refusal with its reason, in Japanese (the author's language)."""
    return ChatOutcome([Reply("desk_refused", error.message("ja"))])


class AuthorDesk:
    """The desk's use cases for one service: ``enabled_channels()`` lists the channels with a sender,
    ``line_quota()`` reads LINE's messages left this month (None: no limit, or LINE off / unreadable)."""

    def __init__(self, db: Database, settings: Settings, *, enabled_channels: Callable[[], list[str]],
                 line_quota: Callable[[], Awaitable[int | None]], clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.settings = settings
        self._enabled_channels = enabled_channels
        self.line_quota = line_quota
        self.clock = clock
        self.tokens = Tokens(settings.secret_key)

    def enabled_channels(self) -> list[str]:
        """The channels with a sender, in the order the author reads them everywhere (LINE, Telegram, email)."""
        enabled = set(self._enabled_channels())
        return [channel for channel in ALL_CHANNELS if channel in enabled]

    # ---- entry points ----------------------------------------------------------------------------------------

    async def composing(self, actor: Actor) -> tuple[ComposeStep, Issue] | None:
        """The admin's compose step and draft while the next message must be read as the body or the title;
        None otherwise (no conversation, timed out, or at the options, where messages are commands again)."""
        state = await compose_state(self.db, actor, now=self.clock())
        if state is None or state[0] is ComposeStep.OPTIONS:
            return None
        return state

    async def command(self, actor: Actor, chat: ChatContext, command: AdminCommand) -> ChatOutcome:
        """Act on an admin verb (all but ``返信``, which core.chat gives to core.reader_replies)."""
        try:
            if command.verb is AdminVerb.BROADCAST:
                return await self.start(actor)
            if command.verb is AdminVerb.STATS:
                return await self.stats(actor, chat)
            if command.verb is AdminVerb.CANCEL:
                if command.argument is not None:
                    return await self.cancel(actor, int(command.argument))
                return await self._cancel_current(actor)
            issue = await self._current_draft(actor)
            if issue is None:
                return ChatOutcome([_reply("desk_no_draft", "desk_no_draft")])
            assert issue.id is not None
            if command.verb is AdminVerb.PREVIEW:
                return await self.preview(actor, issue.id)
            if command.verb is AdminVerb.TEST:
                return await self.test_send(actor, issue.id)
            if command.verb is AdminVerb.SEND:
                return await self.send(actor, issue.id)
            if command.verb is AdminVerb.SCHEDULE:
                return await self.schedule(actor, issue.id, command.argument or "")
        except ReasonError as error:
            return refusal(error)
        return ChatOutcome()

    async def press(self, actor: Actor, data: str) -> ChatOutcome:
        """A desk button (``desk:<issue>:<action>[:<argument>]``); stale buttons are answered with the reason."""
        parts = data.removeprefix(BUTTON_PREFIX).split(":", 2)
        if len(parts) < 2 or not parts[0].isdigit():
            return ChatOutcome(notice=texts.text("desk_button_unknown", "ja"))
        issue_id, action = int(parts[0]), parts[1]
        argument = parts[2] if len(parts) > 2 else None
        try:
            if action == "topic":
                return await self._choose_topic(actor, issue_id, argument)
            if action == "ch" and argument is not None:
                return await self._toggle_channel(actor, issue_id, argument)
            if action == "topics":
                async with self.db.read() as session:
                    issue = await load_issue(session, issue_id)
                return ChatOutcome([topic_menu_reply(self.settings, issue)])
            if action == "preview":
                return await self.preview(actor, issue_id)
            if action == "test":
                return await self.test_send(actor, issue_id)
            if action == "send":
                return await self.send(actor, issue_id)
            if action == "cancel":
                return await self.cancel(actor, issue_id)
        except ReasonError as error:
            return refusal(error)
        return ChatOutcome(notice=texts.text("desk_button_unknown", "ja"))

    # ---- compose -----------------------------------------------------------------------------------------------

    async def start(self, actor: Actor) -> ChatOutcome:
        """``配信``: a new draft; the next message is its body."""
        issue = await start_draft(self.db, actor, now=self.clock())
        assert issue.id is not None
        cancel = Button(texts.DESK_BUTTONS["cancel"], f"{BUTTON_PREFIX}{issue.id}:cancel")
        return ChatOutcome([Reply("desk_body_prompt", texts.text("desk_body_prompt", "ja", issue_id=issue.id),
                                  (cancel,))])

    async def take_message(self, actor: Actor, step: ComposeStep, issue: Issue, markdown: str) -> ChatOutcome:
        """The message an admin sent while composing: the body (``step`` BODY) or the title (TITLE)."""
        try:
            if step is ComposeStep.TITLE:
                return await self._take_title(actor, issue, markdown)
            return await self.take_body(actor, issue, markdown)
        except ReasonError as error:
            return refusal(error)

    async def take_body(self, actor: Actor, issue: Issue, markdown: str) -> ChatOutcome:
        """Store ``markdown`` as the draft's body; its first line becomes the title when more follows, otherwise the
        title is asked for. An empty body (only spaces or invisible characters) is refused and asked for again."""
        assert issue.id is not None
        if not normalise_keyword(markdown):
            return ChatOutcome([_reply("desk_body_empty", "desk_body_empty")])
        try:
            parsed = parse_issue_markdown(markdown)
        except IssueFileError:  # one line only (or a first line too long to be a title): the title comes next
            await update_draft(self.db, self.settings, issue.id, actor=actor, body_md=markdown.strip("\n"),
                               now=self.clock())
            await set_compose_step(self.db, actor, ComposeStep.TITLE, now=self.clock())
            return ChatOutcome([_reply("desk_title_prompt", "desk_title_prompt")])
        title = _plain_title(parsed.title)
        await update_draft(self.db, self.settings, issue.id, actor=actor, title=title, body_md=parsed.body_md,
                           now=self.clock())
        return await self._to_options(actor, issue.id)

    async def _take_title(self, actor: Actor, issue: Issue, text: str) -> ChatOutcome:
        assert issue.id is not None
        title = " ".join(_plain_title(text).split())
        if not title or len(title) > _TITLE_MAX:
            return ChatOutcome([_reply("desk_title_invalid", "desk_title_invalid", limit=_TITLE_MAX)])
        await update_draft(self.db, self.settings, issue.id, actor=actor, title=title, now=self.clock())
        return await self._to_options(actor, issue.id)

    async def start_with_body(self, actor: Actor, markdown: str) -> ChatOutcome:
        """A message forwarded into the admin's chat outside a conversation: a new draft with it as the body."""
        issue = await start_draft(self.db, actor, now=self.clock())
        try:
            taken = await self.take_body(actor, issue, markdown)
        except ReasonError as error:
            taken = refusal(error)
        started = Reply("desk_forward_started", texts.text("desk_forward_started", "ja", issue_id=issue.id))
        return ChatOutcome([started, *taken.replies], taken.effects)

    async def take_photo(self, actor: Actor, data: bytes, content_type: str | None,
                         caption: str | None) -> ChatOutcome:
        """A photo from an admin (an event flyer): it becomes the picture of the draft being composed — or of a new
        draft when none is (core.media.attach_image: JPEG or PNG, at most 10 MB, sizes Telegram and LINE accept).
        A caption is the body (its first line the title); without one, the body is asked for while the draft
        waits for it. Refusals (not a picture, too large …) are answered with the reason; the draft keeps any
        picture it had."""
        from core.media import MediaError, attach_image  # Pillow is imported only when a photo arrives

        state = await compose_state(self.db, actor, now=self.clock())
        started: list[Reply] = []
        if state is None:
            issue = await start_draft(self.db, actor, now=self.clock())
            step = ComposeStep.BODY
            started.append(_reply("desk_photo_started", "desk_photo_started", issue_id=issue.id))
        else:
            step, issue = state
        assert issue.id is not None
        try:
            image = await attach_image(self.db, self.settings, issue.id, data, content_type, actor=actor,
                                       now=self.clock())
        except (MediaError, ReasonError) as error:
            return ChatOutcome([*started, Reply("desk_refused", error.message("ja"))])
        got = _reply("desk_photo_attached", "desk_photo_attached", issue_id=issue.id, width=image.width,
                     height=image.height)
        if step is ComposeStep.BODY and caption and normalise_keyword(caption):
            taken = await self.take_message(actor, step, issue, caption)
            return ChatOutcome([*started, got, *taken.replies], taken.effects)
        if step is ComposeStep.BODY:
            return ChatOutcome([*started, got, _reply("desk_photo_body_prompt", "desk_photo_body_prompt")])
        if step is ComposeStep.TITLE:
            return ChatOutcome([got, _reply("desk_title_prompt", "desk_title_prompt")])
        return ChatOutcome([got, await self._options(issue.id)])

    async def _to_options(self, actor: Actor, issue_id: int) -> ChatOutcome:
        await set_compose_step(self.db, actor, ComposeStep.OPTIONS, now=self.clock())
        return ChatOutcome([await self._options(issue_id)])

    async def _options(self, issue_id: int) -> Reply:
        async with self.db.read() as session:
            issue = await load_issue(session, issue_id)
        enabled = self.enabled_channels()
        channels = issue_channels(issue, enabled)
        counts = await recipient_counts(self.db, channels, topic=issue.topic)
        return options_reply(self.settings, issue, enabled, counts)

    async def _choose_topic(self, actor: Actor, issue_id: int, argument: str | None) -> ChatOutcome:
        topic = None if argument in (None, "*") else argument
        await update_draft(self.db, self.settings, issue_id, actor=actor, topic=topic, now=self.clock())
        return ChatOutcome([await self._options(issue_id)], replace=True)

    async def _toggle_channel(self, actor: Actor, issue_id: int, channel: str) -> ChatOutcome:
        enabled = self.enabled_channels()
        if channel not in enabled:
            raise ReasonError("channel_off", channel=channel)
        async with self.db.read() as session:
            issue = await load_issue(session, issue_id)
        current = issue_channels(issue, enabled)
        chosen = [c for c in current if c != channel] if channel in current else \
            [c for c in enabled if c in current or c == channel]
        if not chosen:
            return ChatOutcome(notice=texts.text("desk_channels_empty", "ja"))
        await update_draft(self.db, self.settings, issue_id, actor=actor, channels=chosen, now=self.clock())
        return ChatOutcome([await self._options(issue_id)], replace=True)

    # ---- preview, test, send, schedule, cancel --------------------------------------------------------------------

    async def preview(self, actor: Actor, issue_id: int) -> ChatOutcome:
        """Each channel's rendering, recipients per channel after consent and topic, LINE's quota left and what the
        issue costs, and a link to the email's HTML (signed, :data:`PREVIEW_LINK_DAYS` days)."""
        async with self.db.read() as session:
            issue = await load_issue(session, issue_id)
        enabled = self.enabled_channels()
        channels = [c for c in issue_channels(issue, enabled) if c in enabled]
        counts = await recipient_counts(self.db, channels, topic=issue.topic)
        footer = texts.text("issue_footer", "ja")
        renderings: list[ChannelRendering] = []
        line_cost = 0
        for channel in channels:
            if channel in ("telegram", "line"):
                parts = render.issue_parts(channel, issue.title, issue.body_md, footer)  # type: ignore[arg-type]
                renderings.append(ChannelRendering(channel, parts))
                if channel == "line":  # a photo issue's image message takes one of a request's 5 slots
                    messages = len(parts) + (1 if issue.image_sha256 else 0)
                    line_cost = counts.get("line", 0) * -(-messages // render.LINE_MESSAGES_PER_REQUEST)
            elif channel == "email":
                renderings.append(ChannelRendering("email", [email_rendering(self.settings, issue)[0]]))
        quota = await self.line_quota() if "line" in channels else None
        email_url = self.preview_url(issue_id) if "email" in channels else None
        await self._log(actor, "issue.preview", issue_id=issue_id)
        return ChatOutcome(preview_replies(self.settings, issue, channels, counts, renderings, line_quota=quota,
                                           line_cost=line_cost, email_url=email_url, admin_channel=actor.channel))

    def preview_url(self, issue_id: int) -> str:
        """The signed link to the email preview page of ``issue_id``."""
        return f"{self.settings.public_url}{PREVIEW_PATH}{self.tokens.preview_token(issue_id)}"

    async def test_send(self, actor: Actor, issue_id: int) -> ChatOutcome:
        """``テスト送信``: a copy only to this admin's own subscribed endpoints (core.issues.create_test_send)."""
        await self._check_picture(issue_id)
        copy = await create_test_send(self.db, self.settings, issue_id, self.enabled_channels(), actor=actor,
                                      admins_only=[actor], now=self.clock())
        reached = {c: n for c, n in copy.enqueued.items() if n}
        return ChatOutcome(
            [_reply("desk_test_started", "desk_test_started", issue_id=issue_id,
                    recipients="・".join(f"{texts.CHANNEL_NAMES[c]['ja']} {n}" for c, n in reached.items()))],
            [FollowBroadcast(copy.issue_id, actor, dict(copy.enqueued), test=True)],
        )

    async def _check_picture(self, issue_id: int) -> None:
        """Refuse (core.media.MediaError, with the reason) a photo issue one of whose channels cannot carry its
        picture — LINE loads pictures over https only — before anything is sent or scheduled."""
        async with self.db.read() as session:
            issue = await load_issue(session, issue_id)
        if issue.image_sha256:
            from core.media import check_image_channels, issue_image

            check_image_channels(await issue_image(self.db, self.settings, issue),
                                 issue_channels(issue, self.enabled_channels()))

    async def send(self, actor: Actor, issue_id: int) -> ChatOutcome:
        """``送信``: enqueue now and follow the broadcast (a second press is refused: it is sending already)."""
        await self._check_picture(issue_id)
        enqueued = await send_now(self.db, issue_id, self.enabled_channels(), actor=actor, now=self.clock())
        return ChatOutcome(effects=[FollowBroadcast(issue_id, actor, enqueued)])

    async def schedule(self, actor: Actor, issue_id: int, when: str) -> ChatOutcome:
        """``予約 <when>``: past, malformed, non-existent and too distant times are refused with the reason."""
        now = self.clock()
        zone = self.settings.zone
        at = parse_schedule(when, zone, now)
        await self._check_picture(issue_id)
        issue = await schedule_issue(self.db, issue_id, at, actor=actor, now=now)
        enabled = self.enabled_channels()
        channels = issue_channels(issue, enabled)
        counts = await recipient_counts(self.db, channels, topic=issue.topic)
        return ChatOutcome([_reply("desk_scheduled", "desk_scheduled", issue_id=issue_id, title=issue.title,
                                   when=format_local(at, zone), zone=zone.key,
                                   recipients=recipients_text(counts, channels))])

    async def cancel(self, actor: Actor, issue_id: int) -> ChatOutcome:
        """``キャンセル``: a draft, a scheduled issue or a running broadcast; after completion, a clear refusal."""
        result = await cancel_issue(self.db, issue_id, actor=actor, now=self.clock())
        key = {IssueStatus.DRAFT.value: "desk_cancelled_draft", IssueStatus.SCHEDULED.value: "desk_cancelled_scheduled"}
        return ChatOutcome([_reply("desk_cancelled", key.get(result.previous_status, "desk_cancelled_sending"),
                                   issue_id=issue_id, cancelled=result.cancelled, in_flight=result.in_flight,
                                   sent=result.sent)])

    async def _cancel_current(self, actor: Actor) -> ChatOutcome:
        """``キャンセル`` without a number: the draft being composed, else the one scheduled or running issue, else
        the admin's latest draft; several running or scheduled issues are listed for ``キャンセル <番号>``."""
        state = await compose_state(self.db, actor, now=self.clock())
        if state is not None:
            assert state[1].id is not None
            return await self.cancel(actor, state[1].id)
        async with self.db.read() as session:
            live = list((await session.exec(  # type: ignore[call-overload]
                select(Issue).where(Issue.status.in_([IssueStatus.SCHEDULED.value, IssueStatus.SENDING.value]),  # type: ignore[attr-defined]
                                    Issue.test_of.is_(None)).order_by(Issue.id.desc()).limit(10)  # type: ignore[union-attr]
            )).scalars().all())
        if len(live) > 1:
            listed = "、".join(f"#{i.id}「{i.title}」" for i in live)
            return ChatOutcome([_reply("desk_cancel_which", "desk_cancel_which", issues=listed)])
        if live:
            assert live[0].id is not None
            return await self.cancel(actor, live[0].id)
        draft = await self._current_draft(actor)
        if draft is None or draft.id is None:
            return ChatOutcome([_reply("desk_nothing_to_cancel", "desk_nothing_to_cancel")])
        return await self.cancel(actor, draft.id)

    async def _current_draft(self, actor: Actor) -> Issue | None:
        """The draft being composed, else the admin's latest draft (not a test copy)."""
        state = await compose_state(self.db, actor, now=self.clock())
        if state is not None:
            return state[1]
        async with self.db.read() as session:
            return (await session.exec(  # type: ignore[call-overload]
                select(Issue).where(Issue.status == IssueStatus.DRAFT.value, Issue.created_by == actor.key,
                                    Issue.test_of.is_(None)).order_by(Issue.id.desc()).limit(1)  # type: ignore[union-attr]
            )).scalars().first()

    # ---- stats and reports ----------------------------------------------------------------------------------------

    async def stats(self, actor: Actor, chat: ChatContext) -> ChatOutcome:
        """``統計``: the numbers, and the sign-up chart as a picture (LINE only with an https public URL: LINE loads
        images over https only, reference/line.md)."""
        text = stats_text(self.settings, await collect_stats(self.db, self.settings, now=self.clock()))
        await self._log(actor, "stats.view")
        if actor.channel == "line" and not self.settings.public_url.startswith("https://"):
            text += "\n\n" + texts.text("desk_stats_no_chart_line", "ja")
            return ChatOutcome([Reply("desk_stats", text)])
        return ChatOutcome([Reply("desk_stats", text)], [SendChart(actor, chat.address)])

    async def _log(self, actor: Actor, action: str, *, issue_id: int | None = None) -> None:
        """Record a reading action in the admin log (the changing ones are logged by the use cases themselves)."""
        async with self.db.write() as session:
            await admins.record(session, actor, action, issue_id=issue_id, now=self.clock())

    def chart_url(self) -> str:
        """A signed link to the current sign-up chart PNG (for LINE image messages)."""
        return f"{self.settings.public_url}{CHART_PATH}{self.tokens.chart_token()}.png"


async def failed_reasons(db: Database, issue_id: int) -> dict[tuple[str, str], int]:
    """``{(channel, reason): count}`` of the issue's ``failed`` deliveries (for the final report)."""
    async with db.read() as session:
        rows = await session.exec(  # type: ignore[call-overload]
            select(Delivery.channel, Delivery.reason, func.count())
            .where(Delivery.issue_id == issue_id, Delivery.status == DeliveryStatus.FAILED.value)
            .group_by(Delivery.channel, Delivery.reason)
        )
        return {(channel, reason or "unknown"): int(count) for channel, reason, count in rows.all()}


def _plain_title(line: str) -> str:
    """A title is plain text: Markdown emphasis and links in the first line (Telegram bold, say) are dropped."""
    shown = render.render_plain_text(line).strip()
    return (shown.splitlines() or [""])[0].strip() or line.strip()


def email_rendering(settings: Settings, issue: Issue) -> tuple[str, str]:
    """``(text part, HTML part)`` of the issue's newsletter email exactly as core.mail builds it, for a stand-in
    reader (the unsubscribe link points nowhere real). Raises core.settings.ConfigError without the email settings."""
    from core.mail import SenderIdentity, build_newsletter

    raw = build_newsletter(sender=SenderIdentity.from_settings(settings), to="reader@example.jp", title=issue.title,
                           body_markdown=issue.body_md, unsubscribe_url=f"{settings.public_url}/unsubscribe/preview",
                           privacy_url=settings.privacy_url, date=utcnow())
    message = email.message_from_bytes(raw, policy=email.policy.default)
    plain = message.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
    rich = message.get_body(preferencelist=("html",))  # type: ignore[attr-defined]
    text = plain.get_content().replace("\r\n", "\n") if plain is not None else ""  # mail lines end in CRLF
    return text, rich.get_content() if rich is not None else ""
