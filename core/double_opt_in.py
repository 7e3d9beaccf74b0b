"""Email double opt-in: an address is added from the chat (``メール <address>``) or the web form, and becomes an
active endpoint only when its owner confirms by a signed link (POST) or a 6-digit code typed back in the chat.

Rules (issue 3 item 1; reference/email-and-law.md; 特定電子メール法 Art. 3 and the Ministry guideline recommending
double opt-in):

* syntax is checked with ``email-validator`` (no DNS); the stored address is the validated form, lower-cased, so the
  same address typed twice is one endpoint;
* a confirmation mail goes only to an address the person just gave us, at most 3 per address per 24 h;
* links and codes expire after ``OTAYORI_CONFIRM_TTL_SECONDS`` and are single-use (server-side ``used_at``); codes
  are stored as an HMAC, never in clear; 5 wrong codes lock the request (a new one is needed);
* confirming writes a ``confirm`` consent event with the evidence (IP and user agent for the web, message id for
  chat) and the wording version and hash; an address held by another subscriber moves to the requester (the owner
  of the mailbox decides); a subscriber keeps at most one email endpoint: the old one gets a ``withdraw``.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from email_validator import EmailNotValidError, validate_email
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from core import consent, texts
from core.campaigns import raw_evidence, resolve_code
from core.settings import Settings
from core.subscriptions import ChatContext, Reply
from core.terms import current_wording
from core.texts import Language
from core.tokens import TokenError, Tokens
from storage.database import Database
from storage.models import (
    Basis,
    ConsentAction,
    ConsentWording,
    EmailConfirmation,
    Endpoint,
    EndpointState,
    Subscriber,
)
from storage.types import utcnow

MAX_MAILS_PER_ADDRESS_PER_DAY = 3
MAX_WRONG_CODES = 5
CHANNEL = "email"


class ConfirmationMailer(Protocol):
    """Sends the confirmation mail (implemented in bots/ with core.mail + the SMTP sender)."""

    async def send_confirmation(self, *, to: str, confirm_url: str, code: str, expires_hours: int) -> bool:
        """Send it; True when the relay accepted the message."""
        ...


class AddressError(ValueError):
    """An email address that cannot be used; ``str()`` says why (from email-validator)."""


def normalise_email(raw: str) -> str:
    """The stored form of an address: validated by email-validator (syntax only, no DNS), ASCII, lower-cased.

    Raises :class:`AddressError` with the reason (no @, spaces, a local part over 64 characters, …).
    """
    # NFKC first, as the chat grammar does: a full-width ＠ or ｔａｒｏ typed on a Japanese keyboard is fine.
    candidate = unicodedata.normalize("NFKC", raw).strip()
    if not candidate or any(ch in candidate for ch in "\r\n\t"):
        raise AddressError("the address is empty or contains line breaks")
    try:
        result = validate_email(candidate, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise AddressError(str(exc)) from exc
    return result.normalized.lower()


@dataclass(frozen=True)
class RequestResult:
    """What happened to a request to add an address.

    ``kind``: ``sent`` (confirmation mailed), ``invalid`` (``detail`` says why), ``rate_limited``,
    ``already_active``, ``send_failed`` (the relay refused; try again later), ``needs_subscription`` (chat only:
    the chat must be subscribed first), ``unavailable`` (email is not configured).
    """

    kind: Literal["sent", "invalid", "rate_limited", "already_active", "send_failed", "needs_subscription",
                  "unavailable"]
    address: str | None = None
    detail: str | None = None
    confirmation_id: int | None = None


@dataclass(frozen=True)
class ConfirmResult:
    """``kind``: ``confirmed``, ``already`` (this address is active for this subscriber already), ``expired``,
    ``used``, ``invalid`` (forged/unknown), ``locked`` (too many wrong codes), ``wrong_code`` (``remaining`` tries)."""

    kind: Literal["confirmed", "already", "expired", "used", "invalid", "locked", "wrong_code"]
    address: str | None = None
    remaining: int | None = None


@dataclass
class EmailSubscriptions:
    """The double opt-in use cases. ``mailer`` None means email is off (requests answer ``unavailable``)."""

    db: Database
    settings: Settings
    mailer: ConfirmationMailer | None
    clock: Callable[[], datetime] = field(default=utcnow)

    def __post_init__(self) -> None:
        self.tokens = Tokens(self.settings.secret_key or "")

    # ---- requests ------------------------------------------------------------------------------------------------

    async def request_from_chat(self, ctx: ChatContext, raw_address: str | None, language: Language) -> list[Reply]:
        """``メール <address>`` in a private chat: validate, store the request, mail the confirmation; the replies."""
        if not raw_address:
            return [Reply("email_usage", texts.text("email_usage", language))]
        async with self.db.write() as session:
            from core.inbound import begin_processing, finish_processing

            if ctx.event_key is not None and not await begin_processing(session, ctx.channel, ctx.event_key):
                return []
            chat_endpoint = (
                await session.exec(select(Endpoint).where(Endpoint.channel == ctx.channel,
                                                          Endpoint.address == ctx.address))
            ).first()
            if ctx.event_key is not None:
                await finish_processing(session, ctx.channel, ctx.event_key)
        if chat_endpoint is None:
            return [Reply("email_needs_subscription", texts.text("email_needs_subscription", language))]
        result = await self.request(
            raw_address, via="chat", requester_id=chat_endpoint.subscriber_id, campaign=None,
            evidence=dict(ctx.evidence), language=language,
            requested_channel=ctx.channel, requested_address=ctx.address,
        )
        return [self._request_reply(result, language)]

    async def request(
        self,
        raw_address: str,
        *,
        via: Literal["chat", "web"],
        requester_id: int | None,
        campaign: str | None,
        evidence: dict[str, Any],
        language: Language = "ja",
        requested_channel: str | None = None,
        requested_address: str | None = None,
    ) -> RequestResult:
        """Store a confirmation request for ``raw_address`` and mail it (after the commit).

        ``requester_id`` None (the web form): the address's current owner, or a new subscriber. Nothing is stored for
        an invalid address. See :class:`RequestResult` for the outcomes.
        """
        if self.mailer is None:
            return RequestResult("unavailable")
        try:
            address = normalise_email(raw_address)
        except AddressError as exc:
            return RequestResult("invalid", detail=str(exc))
        now = self.clock()
        code = f"{secrets.randbelow(10**6):06d}"
        nonce = secrets.token_urlsafe(18)
        async with self.db.write() as session:
            recent = (
                await session.exec(
                    select(EmailConfirmation).where(EmailConfirmation.address == address,
                                                    EmailConfirmation.created_at > now - timedelta(days=1))
                )
            ).all()
            if len(recent) >= MAX_MAILS_PER_ADDRESS_PER_DAY:
                return RequestResult("rate_limited", address=address)
            endpoint = await self._email_endpoint(session, address)
            if requester_id is None:
                if endpoint is not None:
                    requester_id = endpoint.subscriber_id
                else:
                    subscriber = Subscriber(language=language, created_at=now)
                    session.add(subscriber)
                    await session.flush()
                    requester_id = subscriber.id
            assert requester_id is not None
            if (endpoint is not None and endpoint.subscriber_id == requester_id
                    and endpoint.state == EndpointState.ACTIVE.value):
                return RequestResult("already_active", address=address)
            if endpoint is None:
                session.add(Endpoint(subscriber_id=requester_id, channel=CHANNEL, address=address,
                                     state=EndpointState.PENDING.value, basis=Basis.OPT_IN.value,
                                     created_at=now, updated_at=now))
            wording = await current_wording(session, self.settings, language)
            campaign_code = await self._campaign(session, campaign)
            stored_evidence = dict(evidence)
            raw = raw_evidence(campaign, campaign_code)
            if raw is not None:
                stored_evidence["campaign_raw"] = raw
            confirmation = EmailConfirmation(
                address=address, subscriber_id=requester_id, nonce=nonce, code_hash=self._code_hash(nonce, code),
                requested_via=via, requested_channel=requested_channel, requested_address=requested_address,
                campaign=campaign_code, wording_version=wording.version, evidence=stored_evidence,
                created_at=now, expires_at=now + timedelta(seconds=self.settings.confirm_ttl_seconds),
            )
            session.add(confirmation)
            await session.flush()
            confirmation_id = confirmation.id
        accepted = await self.mailer.send_confirmation(
            to=address,
            confirm_url=f"{self.settings.public_url}/email/confirm/{self.tokens.confirm_token(nonce)}",
            code=code,
            expires_hours=max(1, -(-self.settings.confirm_ttl_seconds // 3600)),  # rounded up
        )
        async with self.db.write() as session:
            row = await session.get(EmailConfirmation, confirmation_id)
            if row is not None:
                row.sent = accepted
                session.add(row)
        if not accepted:
            return RequestResult("send_failed", address=address, confirmation_id=confirmation_id)
        return RequestResult("sent", address=address, confirmation_id=confirmation_id)

    # ---- confirming ----------------------------------------------------------------------------------------------

    async def inspect_token(self, token: str) -> tuple[ConfirmResult, EmailConfirmation | None]:
        """What a confirmation link would do, without changing anything (for ``GET /email/confirm/{token}``)."""
        async with self.db.read() as session:
            confirmation, problem = await self._from_token(session, token)
            if problem is not None:
                return problem, confirmation
            assert confirmation is not None
            endpoint = await self._email_endpoint(session, confirmation.address)
            if (endpoint is not None and endpoint.state == EndpointState.ACTIVE.value
                    and endpoint.subscriber_id == confirmation.subscriber_id):
                return ConfirmResult("already", confirmation.address), confirmation
            return ConfirmResult("confirmed", confirmation.address), confirmation

    async def confirm_token(self, token: str, evidence: dict[str, Any]) -> ConfirmResult:
        """``POST /email/confirm/{token}``: confirm the request the token names (web evidence: IP, user agent)."""
        async with self.db.write() as session:
            confirmation, problem = await self._from_token(session, token)
            if problem is not None:
                return problem
            assert confirmation is not None
            return await self._confirm(session, confirmation, "web", evidence)

    async def confirm_code_from_chat(self, ctx: ChatContext, code: str, language: Language) -> list[Reply] | None:
        """A 6-digit code typed in the chat that asked for a confirmation; None when that chat has none open
        (the message is then ordinary text)."""
        async with self.db.write() as session:
            from core.inbound import begin_processing, finish_processing

            confirmation = (
                await session.exec(
                    select(EmailConfirmation)
                    .where(EmailConfirmation.requested_channel == ctx.channel,
                           EmailConfirmation.requested_address == ctx.address,
                           EmailConfirmation.used_at.is_(None))  # type: ignore[union-attr]
                    .order_by(EmailConfirmation.id.desc())  # type: ignore[union-attr]
                    .limit(1)
                )
            ).first()
            if confirmation is None:
                return None
            if ctx.event_key is not None and not await begin_processing(session, ctx.channel, ctx.event_key):
                return []
            if ctx.event_key is not None:
                await finish_processing(session, ctx.channel, ctx.event_key)
            result = await self._check_code(session, confirmation, code, dict(ctx.evidence))
        return [self._confirm_reply(result, language)]

    async def _check_code(
        self, session: AsyncSession, confirmation: EmailConfirmation, code: str, evidence: dict[str, Any]
    ) -> ConfirmResult:
        problem = self._state_problem(confirmation)
        if problem is not None:
            return problem
        if not hmac.compare_digest(self._code_hash(confirmation.nonce, code), confirmation.code_hash):
            confirmation.wrong_codes += 1
            session.add(confirmation)
            remaining = MAX_WRONG_CODES - confirmation.wrong_codes
            if remaining <= 0:
                return ConfirmResult("locked", confirmation.address)
            return ConfirmResult("wrong_code", confirmation.address, remaining=remaining)
        return await self._confirm(session, confirmation, "chat", evidence)

    async def _confirm(
        self, session: AsyncSession, confirmation: EmailConfirmation, source: str, evidence: dict[str, Any]
    ) -> ConfirmResult:
        now = self.clock()
        problem = self._state_problem(confirmation)
        if problem is not None:
            return problem
        requester = confirmation.subscriber_id
        endpoint = await self._email_endpoint(session, confirmation.address)
        if endpoint is None:
            endpoint = Endpoint(subscriber_id=requester, channel=CHANNEL, address=confirmation.address,
                                created_at=now)
        already = endpoint.state == EndpointState.ACTIVE.value and endpoint.subscriber_id == requester
        confirmation.used_at = now
        session.add(confirmation)
        if already:
            return ConfirmResult("already", confirmation.address)
        previous_owner = endpoint.subscriber_id if endpoint.id is not None else None
        endpoint.subscriber_id = requester  # the owner of the mailbox decides
        endpoint.state = EndpointState.ACTIVE.value
        endpoint.basis = Basis.OPT_IN.value
        endpoint.updated_at = now
        session.add(endpoint)
        await session.flush()
        # A subscriber keeps at most one email endpoint: the old one is replaced (withdrawn) only now.
        others = (
            await session.exec(
                select(Endpoint).where(Endpoint.subscriber_id == requester, Endpoint.channel == CHANNEL,
                                       Endpoint.id != endpoint.id,
                                       Endpoint.state.in_([EndpointState.ACTIVE.value, EndpointState.PENDING.value]))  # type: ignore[attr-defined]
            )
        ).all()
        for old in others:
            was_active = old.state == EndpointState.ACTIVE.value
            old.state = EndpointState.UNSUBSCRIBED.value
            old.updated_at = now
            session.add(old)
            if was_active and old.address:
                await self._append(session, old, ConsentAction.WITHDRAW, "chat" if source == "chat" else "web",
                                   {"replaced_by_endpoint": endpoint.id, "confirmation_id": confirmation.id})
        wording = (
            await session.exec(select(ConsentWording).where(ConsentWording.version == confirmation.wording_version))
        ).first()
        full_evidence = dict(confirmation.evidence or {})
        full_evidence.update({f"confirm_{k}": v for k, v in evidence.items()})
        full_evidence["confirmation_id"] = confirmation.id
        full_evidence["requested_via"] = confirmation.requested_via
        if previous_owner is not None and previous_owner != requester:
            full_evidence["moved_from_subscriber"] = previous_owner
        await self._append(session, endpoint, ConsentAction.CONFIRM, source, full_evidence,
                           campaign=confirmation.campaign, wording=wording)
        # Other open requests for this address are superseded: every link and code is single-use in effect.
        stale = (
            await session.exec(
                select(EmailConfirmation).where(EmailConfirmation.address == confirmation.address,
                                                EmailConfirmation.used_at.is_(None))  # type: ignore[union-attr]
            )
        ).all()
        for row in stale:
            row.used_at = now
            session.add(row)
        return ConfirmResult("confirmed", confirmation.address)

    # ---- helpers -------------------------------------------------------------------------------------------------

    def _state_problem(self, confirmation: EmailConfirmation) -> ConfirmResult | None:
        if confirmation.used_at is not None:
            return ConfirmResult("used", confirmation.address)
        if confirmation.wrong_codes >= MAX_WRONG_CODES:
            return ConfirmResult("locked", confirmation.address)
        if self.clock() >= confirmation.expires_at:
            return ConfirmResult("expired", confirmation.address)
        return None

    async def _from_token(
        self, session: AsyncSession, token: str
    ) -> tuple[EmailConfirmation | None, ConfirmResult | None]:
        try:
            nonce = self.tokens.read_confirm_token(token, self.settings.confirm_ttl_seconds)
        except TokenError as exc:
            return None, ConfirmResult("expired" if exc.expired else "invalid")
        confirmation = (
            await session.exec(select(EmailConfirmation).where(EmailConfirmation.nonce == nonce))
        ).first()
        if confirmation is None:
            return None, ConfirmResult("invalid")
        return confirmation, self._state_problem(confirmation)

    def _code_hash(self, nonce: str, code: str) -> str:
        key = (self.settings.secret_key or "").encode("utf-8")
        return hmac.new(key, f"email-code:{nonce}:{code}".encode(), hashlib.sha256).hexdigest()

    async def _email_endpoint(self, session: AsyncSession, address: str) -> Endpoint | None:
        return (
            await session.exec(select(Endpoint).where(Endpoint.channel == CHANNEL, Endpoint.address == address))
        ).first()

    async def _campaign(self, session: AsyncSession, text: str | None) -> str | None:
        return await resolve_code(session, text)

    async def _append(
        self, session: AsyncSession, endpoint: Endpoint, action: ConsentAction, source: str,
        evidence: dict[str, Any], *, campaign: str | None = None, wording: ConsentWording | None = None,
    ) -> None:
        subscriber = await session.get(Subscriber, endpoint.subscriber_id)
        await consent.append(self.db, session, consent.ConsentFacts(
            subscriber_id=endpoint.subscriber_id, endpoint_id=endpoint.id, channel=endpoint.channel,
            address=endpoint.address or "", action=action.value, basis=endpoint.basis, source=source,
            campaign=campaign, topics=subscriber.topics if subscriber else None,
            wording_version=wording.version if wording else None,
            wording_sha256=wording.sha256 if wording else None,
            evidence=evidence, occurred_at=self.clock(),
        ))

    def _request_reply(self, result: RequestResult, language: Language) -> Reply:
        key = {
            "sent": "email_sent",
            "invalid": "email_invalid",
            "rate_limited": "email_rate_limited",
            "already_active": "email_already_active",
            "send_failed": "email_send_failed",
            "needs_subscription": "email_needs_subscription",
            "unavailable": "email_unavailable",
        }[result.kind]
        return Reply(key, texts.text(key, language, address=result.address or "", detail=result.detail or "",
                                     hours=max(1, -(-self.settings.confirm_ttl_seconds // 3600))))

    def _confirm_reply(self, result: ConfirmResult, language: Language) -> Reply:
        key = f"email_confirm_{result.kind}"
        return Reply(key, texts.text(key, language, address=result.address or "", remaining=result.remaining or 0))
