"""Subscription use cases: what happens when a person writes to the bot, presses a button, or blocks it.

The same on LINE and Telegram (DESIGN.md "Chat grammar"). Each handler runs in one write transaction that also marks
the inbound event processed, so a repeated event does nothing twice; it returns the replies to send, which the bot
sends after the commit. Flow: ask (登録: the terms are shown and an *offer* is stored) -> consent (button or 同意
within 24 h of the offer) -> ``grant`` event, endpoint ``active``; 解除 -> ``withdraw`` on this channel; 全解除 ->
``withdraw`` on every channel; blocking the bot -> endpoint ``unreachable`` plus ``withdraw`` (source ``blocked``);
トピック -> the topic buttons, each press a ``topics`` event when the choice changes (core/topics.py).

LINE friendship (issue 6 item 5; core.line_friends): LINE delivers only to friends. A consent from a LINE user known
*not* to be a friend (their latest follow/unfollow was an unfollow) is recorded at once as the ``grant`` it is (with
``awaiting_friendship`` in its evidence), but the endpoint stays ``pending`` and the reply is the add-friend link;
their next ``follow`` makes it ``active`` without a new ledger event — the grant already holds their explicit
consent, and the follow's ``webhookEventId`` is kept in ``line_friend``. Unknown friendship behaves as a friend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from core import consent, line_friends, texts, topics
from core.campaigns import raw_evidence as campaign_raw_evidence
from core.campaigns import resolve_code
from core.commands import Intent, IntentKind, is_confirmation_code, parse
from core.inbound import begin_processing, finish_processing
from core.links import line_add_friend_url
from core.settings import Settings
from core.terms import current_wording, rendering_sha256
from core.texts import Language
from storage.database import Database
from storage.models import (
    Basis,
    ConsentAction,
    ConsentEvent,
    ConsentSource,
    ConsentWording,
    Endpoint,
    EndpointState,
    Subscriber,
    TermsOffer,
)
from storage.types import row_id_or_none, utcnow

#: Consent is accepted only within this time after the terms were shown (DESIGN.md chat grammar: 24 h).
OFFER_VALIDITY = timedelta(hours=24)
CONSENT_BUTTON_PREFIX = "consent:"


@dataclass(frozen=True)
class ChatContext:
    """Who wrote, where, and the evidence of it.

    ``address``: the LINE userId or the Telegram chat id as text. ``chat_type``: ``private`` or ``group`` (groups,
    supergroups, rooms). ``event_key``: unique per inbound event on this channel (``update:<update_id>``, the LINE
    ``webhookEventId``); ``None`` skips deduplication. ``evidence``: JSON-able facts for the ledger (message id,
    update_id / webhookEventId). ``user_id``: the *sender's* user id (Telegram ``from.id``, LINE ``source.userId``) —
    in a private chat it equals the address, in a group it does not; admin rights are checked on it
    (core.admins.is_admin), never on the chat. None when the platform did not say who sent it.
    """

    channel: str
    address: str
    chat_type: Literal["private", "group"] = "private"
    event_key: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    display_name: str | None = None
    user_id: str | None = None


@dataclass(frozen=True)
class Button:
    """A reply button: ``label`` shown (<= 20 characters for LINE quick replies), ``data`` sent back (<= 64 bytes)."""

    label: str
    data: str


@dataclass(frozen=True)
class Reply:
    """A message for the bot to send: plain ``text`` (the bot escapes it for its markup) and optional buttons.

    ``kind`` names the situation (``terms``, ``subscribed``, ``withdrawn``…) for logs and tests. ``telegram_html``:
    when set, Telegram sends this HTML (its Bot API subset, already escaped, at most 4,096 visible characters)
    instead of the escaped ``text`` — the author's preview shows an issue exactly as Telegram will; other channels
    send ``text``.
    """

    kind: str
    text: str
    buttons: tuple[Button, ...] = ()
    telegram_html: str | None = None


class SubscriptionService:
    """Subscription use cases over the database (a unit of work per call). ``clock`` returns aware UTC datetimes."""

    def __init__(self, db: Database, settings: Settings, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        #: The email double opt-in use cases (core.double_opt_in.EmailSubscriptions); None: email requests answer
        #: that email is unavailable. Set by the bootstrap (bots/app.py).
        self.email: Any = None
        #: The LINE account's basic id (``@abc1234``) for the add-friend link: ``OTAYORI_LINE_BASIC_ID``, else filled
        #: in by the LINE edge from the bot info API (bots/line.py); None: the reply asks without a link.
        self.line_basic_id: str | None = settings.line_basic_id or None

    # ---- entry points ----------------------------------------------------------------------------------------

    async def handle_text(self, ctx: ChatContext, text: str) -> list[Reply]:
        """Handle a text message: parse it with :func:`core.commands.parse` and act. Returns the replies."""
        code = is_confirmation_code(text)
        if code is not None and self.email is not None and ctx.chat_type == "private":
            # Conversation state: a chat that asked to add an email address may type the 6-digit code back.
            replies = await self.email.confirm_code_from_chat(ctx, code, "ja")
            if replies is not None:
                return replies
        intent = parse(text)
        if intent.kind is IntentKind.EMAIL and ctx.chat_type == "private" and self.email is not None:
            return await self.email.request_from_chat(ctx, intent.argument, intent.language)
        return await self._once(ctx, lambda session: self._dispatch(session, ctx, intent))

    async def handle_button(self, ctx: ChatContext, data: str) -> list[Reply]:
        """Handle a button press (Telegram callback query data, LINE postback data)."""
        language = self._language(ctx)
        if data.startswith(CONSENT_BUTTON_PREFIX):
            # A button names its offer; one naming no possible row ("consent:abc", a number beyond 64 bits) finds
            # none (id 0), so the terms are shown again.
            offer_id = row_id_or_none(data[len(CONSENT_BUTTON_PREFIX):]) or 0
            return await self._once(ctx, lambda session: self._consent(session, ctx, language, offer_id))
        if data.startswith(topics.TOPIC_BUTTON_PREFIX):
            return await self._once(ctx, lambda session: self._toggle_topic(session, ctx, language, data))

        async def unknown_button(session: AsyncSession) -> list[Reply]:
            # Data we never put on a button (an old menu, a forged postback): the help, and the event is handled.
            return self._help(ctx, language)

        return await self._once(ctx, unknown_button)

    async def handle_follow(self, ctx: ChatContext, *, is_unblocked: bool = False,
                            at: datetime | None = None) -> list[Reply]:
        """LINE ``follow`` (added as a friend, or unblocked) at ``at`` (the event's timestamp, aware UTC; default now):
        remembered as friendship (core.line_friends); the greeting is the terms with a consent button.

        An endpoint waiting for this follow (a consent given while known not to be a friend: see the module
        docstring) becomes ``active`` instead, and the reply says so. Unblocking never resubscribes otherwise
        (DESIGN.md "Words" -> endpoint): the block withdrew, so only a consent given *after* it can be waiting.
        """

        async def work(session: AsyncSession) -> list[Reply]:
            language = self._language(ctx)
            await line_friends.record(session, ctx.address, True, at=at or self.clock(),
                                      webhook_event_id=ctx.event_key)
            endpoint = await self._endpoint(session, ctx)
            if (endpoint is not None and await self._awaiting_friendship(session, endpoint)
                    and await line_friends.is_friend(session, ctx.address)):
                endpoint.state = EndpointState.ACTIVE.value
                endpoint.updated_at = self.clock()
                session.add(endpoint)
                sender = self.settings.sender_name or ""
                return [Reply("subscribed", texts.text("line_friend_activated", language, sender=sender))]
            return await self._offer(session, ctx, language, campaign_text=None, greeting=True)

        return await self._once(ctx, work)

    async def handle_unblocked(self, ctx: ChatContext) -> list[Reply]:
        """Telegram ``my_chat_member`` back to member: show the terms again (no resubscription)."""
        return await self._once(
            ctx, lambda session: self._offer(session, ctx, self._language(ctx), campaign_text=None, greeting=True)
        )

    async def handle_blocked(self, ctx: ChatContext, *, at: datetime | None = None) -> list[Reply]:
        """The person blocked the bot (LINE ``unfollow``, Telegram ``my_chat_member`` -> kicked) at ``at`` (the event's
        timestamp, aware UTC; default now).

        The endpoint becomes ``unreachable``; an endpoint that was receiving (active or pending) also gets a
        ``withdraw`` event with source ``blocked``. On LINE the user is also remembered as not a friend
        (core.line_friends), subscriber or not. Returns no replies (nothing can be sent).
        """

        async def work(session: AsyncSession) -> list[Reply]:
            if ctx.channel == "line":
                await line_friends.record(session, ctx.address, False, at=at or self.clock(),
                                          webhook_event_id=ctx.event_key)
            endpoint = await self._endpoint(session, ctx)
            if endpoint is None:
                return []
            await self.mark_blocked(session, endpoint, evidence=ctx.evidence)
            return []

        return await self._once(ctx, work)

    async def mark_blocked(self, session: AsyncSession, endpoint: Endpoint, *, evidence: dict[str, Any]) -> None:
        """Inside a write transaction: ``endpoint`` blocked us -> ``unreachable`` (+ ``withdraw``/``blocked`` if it
        was receiving). Also used by the dispatcher when a send answers "blocked"."""
        was_receiving = endpoint.state in (EndpointState.ACTIVE.value, EndpointState.PENDING.value)
        endpoint.state = EndpointState.UNREACHABLE.value
        endpoint.updated_at = self.clock()
        session.add(endpoint)
        if was_receiving and endpoint.address is not None:
            await self._append(session, endpoint, ConsentAction.WITHDRAW, ConsentSource.BLOCKED, evidence=evidence)

    # ---- the transaction wrapper ---------------------------------------------------------------------------------

    async def _once(self, ctx: ChatContext, work: Callable[[AsyncSession], Any]) -> list[Reply]:
        async with self.db.write() as session:
            if ctx.event_key is not None and not await begin_processing(session, ctx.channel, ctx.event_key):
                return []  # already handled: a redelivery or a repeated update
            replies = await work(session)
            if ctx.event_key is not None:
                await finish_processing(session, ctx.channel, ctx.event_key)
            return replies

    # ---- intents ---------------------------------------------------------------------------------------------

    async def _dispatch(self, session: AsyncSession, ctx: ChatContext, intent: Intent) -> list[Reply]:
        language: Language = intent.language
        if ctx.chat_type != "private" and intent.kind in (
            IntentKind.SUBSCRIBE,
            IntentKind.CONSENT,
            IntentKind.WITHDRAW,
            IntentKind.WITHDRAW_ALL,
            IntentKind.EMAIL,
            IntentKind.STATUS,
            IntentKind.TOPICS,
        ):
            return [Reply("group_refused", texts.text("group_refused", language))]
        if intent.kind is IntentKind.SUBSCRIBE:
            return await self._subscribe(session, ctx, language, intent.argument)
        if intent.kind is IntentKind.CONSENT:
            return await self._consent(session, ctx, language, None)
        if intent.kind is IntentKind.WITHDRAW:
            return await self._withdraw(session, ctx, language)
        if intent.kind is IntentKind.WITHDRAW_ALL:
            return await self._withdraw_all(session, ctx, language)
        if intent.kind is IntentKind.STATUS:
            return await self._status(session, ctx, language)
        if intent.kind is IntentKind.TOPICS:
            return await self._topics(session, ctx, language)
        if intent.kind is IntentKind.EMAIL:
            return [Reply("email_unavailable", texts.text("email_unavailable", language))]
        if ctx.chat_type != "private":
            return []  # ordinary talk in a group is none of our business
        return self._help(ctx, language)

    def _help(self, ctx: ChatContext, language: Language) -> list[Reply]:
        return [Reply("help", texts.text("help", language))]

    async def _subscribe(
        self, session: AsyncSession, ctx: ChatContext, language: Language, campaign_text: str | None
    ) -> list[Reply]:
        endpoint = await self._endpoint(session, ctx)
        if endpoint is not None and endpoint.state == EndpointState.ACTIVE.value:
            return [Reply("already_subscribed", texts.text("already_subscribed", language))]
        if endpoint is not None and await self._awaiting_friendship(session, endpoint):
            return [self._add_friend_reply(language)]  # consent given: only the follow is missing
        return await self._offer(session, ctx, language, campaign_text=campaign_text)

    async def _offer(
        self,
        session: AsyncSession,
        ctx: ChatContext,
        language: Language,
        *,
        campaign_text: str | None,
        greeting: bool = False,
        prefix: str | None = None,
    ) -> list[Reply]:
        """Show the terms with a consent button and store the offer (what was shown, when, which campaign)."""
        if ctx.chat_type != "private":
            return [Reply("group_refused", texts.text("group_refused", language))]
        wording = await current_wording(session, self.settings, language)
        campaign_code = await self._campaign_code(session, campaign_text)
        offer = TermsOffer(
            channel=ctx.channel,
            address=ctx.address,
            wording_version=wording.version,
            campaign=campaign_code,
            campaign_raw=campaign_raw_evidence(campaign_text, campaign_code),
            rendering_sha256="",
            shown_at=self.clock(),
        )
        session.add(offer)
        await session.flush()
        body = wording.text if prefix is None else f"{prefix}\n\n{wording.text}"
        label = texts.CONSENT_BUTTON[language]
        offer.rendering_sha256 = rendering_sha256(body, [label])
        session.add(offer)
        button = Button(label=label, data=f"{CONSENT_BUTTON_PREFIX}{offer.id}")
        return [Reply("greeting" if greeting else "terms", body, (button,))]

    async def _consent(
        self, session: AsyncSession, ctx: ChatContext, language: Language, offer_id: int | None
    ) -> list[Reply]:
        if ctx.chat_type != "private":
            return [Reply("group_refused", texts.text("group_refused", language))]
        endpoint = await self._endpoint(session, ctx)
        if endpoint is not None and endpoint.state == EndpointState.ACTIVE.value:
            return [Reply("already_subscribed", texts.text("already_subscribed", language))]
        if endpoint is not None and await self._awaiting_friendship(session, endpoint):
            return [self._add_friend_reply(language)]  # one grant is enough: no second one for an old button
        query = select(TermsOffer).where(TermsOffer.channel == ctx.channel, TermsOffer.address == ctx.address)
        if offer_id is not None:
            # A button carries its offer; one forwarded to and pressed by someone else finds no offer of theirs.
            query = query.where(TermsOffer.id == offer_id)
        offer = (await session.exec(query.order_by(TermsOffer.id.desc()).limit(1))).first()  # type: ignore[union-attr]
        now = self.clock()
        if offer is None:
            return await self._offer(session, ctx, language, campaign_text=None)
        if now - offer.shown_at > OFFER_VALIDITY:
            return await self._offer(
                session, ctx, language, campaign_text=offer.campaign or offer.campaign_raw,
                prefix=texts.text("terms_expired", language),
            )
        wording = (
            await session.exec(select(ConsentWording).where(ConsentWording.version == offer.wording_version))
        ).one()
        if endpoint is None:
            subscriber = Subscriber(language=language, display_name=ctx.display_name, created_at=now)
            session.add(subscriber)
            await session.flush()
            endpoint = Endpoint(
                subscriber_id=subscriber.id,  # type: ignore[arg-type]
                channel=ctx.channel,
                address=ctx.address,
                basis=Basis.OPT_IN.value,
                created_at=now,
            )
        # LINE delivers only to friends: a consent from a known non-friend waits for their follow (issue 6); an
        # unknown friendship (None) is treated as a friend, as before friendship was tracked.
        waiting_for_friendship = (ctx.channel == "line"
                                  and await line_friends.is_friend(session, ctx.address) is False)
        endpoint.state = EndpointState.PENDING.value if waiting_for_friendship else EndpointState.ACTIVE.value
        endpoint.basis = Basis.OPT_IN.value
        endpoint.updated_at = now
        session.add(endpoint)
        await session.flush()
        evidence = dict(ctx.evidence)
        evidence.update({"offer_id": offer.id, "rendering_sha256": offer.rendering_sha256,
                         "terms_shown_at": consent.format_timestamp(offer.shown_at),
                         "consent_via": "button" if offer_id is not None else "text"})
        if offer.campaign_raw:
            evidence["campaign_raw"] = offer.campaign_raw
        if waiting_for_friendship:
            evidence["awaiting_friendship"] = True  # the follow that activates it refers back to this grant
        await self._append(
            session, endpoint, ConsentAction.GRANT, ConsentSource.CHAT,
            campaign=offer.campaign, wording=wording, evidence=evidence,
        )
        offer.consumed_at = now
        session.add(offer)
        if waiting_for_friendship:
            return [self._add_friend_reply(language)]
        sender = self.settings.sender_name or ""
        return [Reply("subscribed", texts.text("subscribed", language, sender=sender))]

    async def _awaiting_friendship(self, session: AsyncSession, endpoint: Endpoint) -> bool:
        """True when ``endpoint`` is a LINE endpoint in ``pending`` whose latest ledger event other than ``topics``
        is a ``grant`` given while the user was known not to be a friend: a follow may activate exactly these."""
        if endpoint.channel != "line" or endpoint.state != EndpointState.PENDING.value:
            return False
        latest = (
            await session.exec(
                select(ConsentEvent)
                .where(ConsentEvent.endpoint_id == endpoint.id, ConsentEvent.action != ConsentAction.TOPICS.value)
                .order_by(ConsentEvent.id.desc())  # type: ignore[union-attr]
                .limit(1)
            )
        ).first()
        return (latest is not None and latest.action == ConsentAction.GRANT.value
                and bool(latest.evidence.get("awaiting_friendship")))

    def _add_friend_reply(self, language: Language) -> Reply:
        """The consent is recorded but LINE will not deliver: ask for the follow, with the add-friend link when the
        basic id is known."""
        if self.line_basic_id:
            link = line_add_friend_url(self.line_basic_id)
            return Reply("line_not_friend", texts.text("line_not_friend", language, link=link))
        return Reply("line_not_friend", texts.text("line_not_friend_no_link", language))

    async def _withdraw(self, session: AsyncSession, ctx: ChatContext, language: Language) -> list[Reply]:
        endpoint = await self._endpoint(session, ctx)
        if endpoint is None or endpoint.state not in (EndpointState.ACTIVE.value, EndpointState.PENDING.value):
            return [Reply("not_subscribed", texts.text("not_subscribed", language))]
        await self.withdraw_endpoint(session, endpoint, ConsentSource.CHAT, evidence=ctx.evidence)
        return [Reply("withdrawn", texts.text("withdrawn", language))]

    async def _withdraw_all(self, session: AsyncSession, ctx: ChatContext, language: Language) -> list[Reply]:
        endpoint = await self._endpoint(session, ctx)
        if endpoint is None:
            return [Reply("not_subscribed", texts.text("not_subscribed", language))]
        siblings = (await session.exec(select(Endpoint).where(Endpoint.subscriber_id == endpoint.subscriber_id))).all()
        count = 0
        for other in siblings:
            if other.state in (EndpointState.ACTIVE.value, EndpointState.PENDING.value):
                evidence = dict(ctx.evidence)
                evidence["scope"] = "all"
                evidence["requested_on"] = ctx.channel
                await self.withdraw_endpoint(session, other, ConsentSource.CHAT, evidence=evidence)
                count += 1
        if count == 0:
            return [Reply("not_subscribed", texts.text("not_subscribed", language))]
        return [Reply("withdrawn_all", texts.text("withdrawn_all", language, count=count))]

    async def withdraw_endpoint(
        self, session: AsyncSession, endpoint: Endpoint, source: ConsentSource, *, evidence: dict[str, Any]
    ) -> ConsentEvent:
        """Inside a write transaction: ``endpoint`` -> ``unsubscribed`` and a ``withdraw`` event; effective at once.

        The dispatcher re-checks consent just before every attempt, so no send starts after this commits.
        """
        endpoint.state = EndpointState.UNSUBSCRIBED.value
        endpoint.updated_at = self.clock()
        session.add(endpoint)
        return await self._append(session, endpoint, ConsentAction.WITHDRAW, source, evidence=evidence)

    async def _status(self, session: AsyncSession, ctx: ChatContext, language: Language) -> list[Reply]:
        endpoint = await self._endpoint(session, ctx)
        if endpoint is None:
            return [Reply("status", texts.text("status_none", language))]
        subscriber = await session.get(Subscriber, endpoint.subscriber_id)
        endpoints = (
            await session.exec(
                select(Endpoint).where(Endpoint.subscriber_id == endpoint.subscriber_id).order_by(Endpoint.id)  # type: ignore[arg-type]
            )
        ).all()
        lines = [texts.text("status_header", language)]
        zone = self.settings.zone
        for other in endpoints:
            latest = (
                await session.exec(
                    select(ConsentEvent)
                    .where(ConsentEvent.endpoint_id == other.id,
                           ConsentEvent.action.in_([ConsentAction.GRANT.value, ConsentAction.CONFIRM.value]))  # type: ignore[attr-defined]
                    .order_by(ConsentEvent.id.desc())  # type: ignore[union-attr]
                    .limit(1)
                )
            ).first()
            consented = latest.occurred_at.astimezone(zone).strftime("%Y-%m-%d %H:%M") if latest else "—"
            lines.append(texts.text(
                "status_line", language,
                channel=texts.CHANNEL_NAMES[other.channel][language],
                state=texts.STATE_NAMES[other.state][language],
                consented=consented,
            ))
        chosen = topics.normalise_choice(self.settings, subscriber.topics if subscriber is not None else None)
        if chosen:
            lines.append(texts.text("status_topics", language, topics=topics.describe(self.settings, chosen, language)))
        else:
            lines.append(texts.text("status_topics_all", language))
        return [Reply("status", "\n".join(lines))]

    # ---- topics (issue 5 item 7) -----------------------------------------------------------------------------

    def _topics_reply(self, kind: str, chosen: list[str] | None, language: Language) -> Reply:
        key = "topics_menu" if kind == "topics" else "topics_changed"
        body = texts.text(key, language, current=topics.describe(self.settings, chosen, language))
        buttons = tuple(Button(label, data) for label, data in topics.button_labels(self.settings, chosen, language))
        return Reply(kind, body, buttons)

    async def _receiving_endpoint(self, session: AsyncSession, ctx: ChatContext) -> Endpoint | None:
        endpoint = await self._endpoint(session, ctx)
        if endpoint is None or endpoint.state not in (EndpointState.ACTIVE.value, EndpointState.PENDING.value):
            return None
        return endpoint

    async def _topics(self, session: AsyncSession, ctx: ChatContext, language: Language) -> list[Reply]:
        """``トピック``: the topics with one button each (the current choice marked) and an "every topic" button."""
        endpoint = await self._receiving_endpoint(session, ctx)
        if endpoint is None:
            return [Reply("not_subscribed", texts.text("not_subscribed", language))]
        subscriber = await session.get(Subscriber, endpoint.subscriber_id)
        return [self._topics_reply("topics", subscriber.topics if subscriber else None, language)]

    async def _toggle_topic(self, session: AsyncSession, ctx: ChatContext, language: Language,
                            data: str) -> list[Reply]:
        """A topic button: toggle that topic (or choose every topic) for the presser's own subscription and append a
        ``topics`` ledger event when the choice changed. A button forwarded to someone else changes only theirs."""
        if ctx.chat_type != "private":
            return [Reply("group_refused", texts.text("group_refused", language))]
        endpoint = await self._receiving_endpoint(session, ctx)
        if endpoint is None:
            return [Reply("not_subscribed", texts.text("not_subscribed", language))]
        subscriber = await session.get(Subscriber, endpoint.subscriber_id)
        assert subscriber is not None
        before = topics.normalise_choice(self.settings, subscriber.topics)
        known, slug = topics.slug_of_button(self.settings, data)
        if not known:  # a button of a topic that is no longer offered: show the current menu
            return [self._topics_reply("topics", before, language)]
        after = topics.toggled(self.settings, before, slug)
        if after != before:
            subscriber.topics = after
            session.add(subscriber)
            evidence = dict(ctx.evidence)
            evidence.update({"previous_topics": before, "via": "button"})
            await self._append(session, endpoint, ConsentAction.TOPICS, ConsentSource.CHAT, evidence=evidence)
        return [self._topics_reply("topics_changed", after, language)]

    # ---- helpers ---------------------------------------------------------------------------------------------

    async def _endpoint(self, session: AsyncSession, ctx: ChatContext) -> Endpoint | None:
        return (
            await session.exec(
                select(Endpoint).where(Endpoint.channel == ctx.channel, Endpoint.address == ctx.address)
            )
        ).first()

    async def _campaign_code(self, session: AsyncSession, campaign_text: str | None) -> str | None:
        """The registered campaign code matching ``campaign_text`` case-insensitively, or None (unknown/absent)."""
        return await resolve_code(session, campaign_text)

    def _language(self, ctx: ChatContext) -> Language:
        return "ja"

    async def _append(
        self,
        session: AsyncSession,
        endpoint: Endpoint,
        action: ConsentAction,
        source: ConsentSource,
        *,
        evidence: dict[str, Any],
        campaign: str | None = None,
        wording: ConsentWording | None = None,
    ) -> ConsentEvent:
        subscriber = await session.get(Subscriber, endpoint.subscriber_id)
        return await consent.append(
            self.db,
            session,
            consent.ConsentFacts(
                subscriber_id=endpoint.subscriber_id,
                endpoint_id=endpoint.id,
                channel=endpoint.channel,
                address=endpoint.address or "",
                action=action.value,
                basis=endpoint.basis,
                source=source.value,
                campaign=campaign,
                topics=subscriber.topics if subscriber is not None else None,
                wording_version=wording.version if wording else None,
                wording_sha256=wording.sha256 if wording else None,
                evidence=evidence,
                occurred_at=self.clock(),
            ),
        )
