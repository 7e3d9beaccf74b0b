"""Opt-outs that do not come through the chat: the unsubscribe link (RFC 8058 one-click or the page's button) and
withdrawals that reach the author another way (a phone call, a reply mail, in person — 特定電子メール法 Art. 3(3)
accepts any method). Each takes effect at once: the dispatcher re-checks consent just before every attempt.

A withdrawn email address stays suppressed: its endpoint stays ``unsubscribed`` (an address the author never had is
recorded as a suppressed endpoint), and only a fresh double opt-in started by its owner brings it back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from core import consent
from core.double_opt_in import AddressError, normalise_email
from core.settings import Settings
from core.tokens import TokenError, Tokens
from storage.database import Database
from storage.models import Basis, ConsentAction, Endpoint, EndpointState, Subscriber
from storage.types import utcnow

RECEIVING = (EndpointState.ACTIVE.value, EndpointState.PENDING.value)


@dataclass(frozen=True)
class EndpointView:
    """What the unsubscribe page shows: the endpoint, its state, and the subscriber's other channels."""

    endpoint_id: int
    channel: str
    address: str | None
    state: str
    other_channels: list[tuple[str, str]]


@dataclass(frozen=True)
class OptOutResult:
    """``withdrawn``: endpoints newly unsubscribed (0 when repeating a done unsubscribe, which is harmless)."""

    kind: Literal["done", "invalid"]
    withdrawn: int = 0
    view: EndpointView | None = None


@dataclass
class OptOuts:
    """Unsubscribe links and admin-recorded withdrawals over ``db``."""

    db: Database
    settings: Settings
    clock: Callable[[], datetime] = field(default=utcnow)

    def __post_init__(self) -> None:
        self.tokens = Tokens(self.settings.secret_key or "")

    def unsubscribe_url(self, endpoint_id: int) -> str:
        """The never-expiring unsubscribe link of ``endpoint_id`` (``{OTAYORI_PUBLIC_URL}/unsubscribe/TOKEN``)."""
        return f"{self.settings.public_url}/unsubscribe/{self.tokens.unsubscribe_token(endpoint_id)}"

    async def describe(self, token: str) -> EndpointView | None:
        """The endpoint a token names, for the GET page; None when the token is forged/altered or unknown."""
        try:
            endpoint_id = self.tokens.read_unsubscribe_token(token)
        except TokenError:
            return None
        async with self.db.read() as session:
            return await self._view(session, endpoint_id)

    async def unsubscribe(
        self, token: str, *, source: Literal["one_click", "web"], scope_all: bool, evidence: dict[str, Any]
    ) -> OptOutResult:
        """Unsubscribe the token's endpoint (``scope_all``: every endpoint of its subscriber) at once.

        ``source``: ``one_click`` for the RFC 8058 POST (body ``List-Unsubscribe=One-Click`` or empty), ``web`` for the
        page's button. Repeating is harmless. Returns ``invalid`` for a forged, altered or unknown token.
        """
        try:
            endpoint_id = self.tokens.read_unsubscribe_token(token)
        except TokenError:
            return OptOutResult("invalid")
        async with self.db.write() as session:
            endpoint = await session.get(Endpoint, endpoint_id)
            if endpoint is None:
                return OptOutResult("invalid")
            targets = [endpoint]
            if scope_all:
                targets = list((await session.exec(
                    select(Endpoint).where(Endpoint.subscriber_id == endpoint.subscriber_id))).all())
            withdrawn = 0
            for target in targets:
                if target.state in RECEIVING:
                    details = dict(evidence)
                    if scope_all:
                        details["scope"] = "all"
                    await self._withdraw(session, target, source, details)
                    withdrawn += 1
            await session.flush()
            view = await self._view(session, endpoint_id)
        return OptOutResult("done", withdrawn, view)

    async def withdraw_by_admin(
        self, address: str, channel: str | None, via: str, note: str | None
    ) -> tuple[int, list[Endpoint]]:
        """Record a withdrawal the author received another way (source ``admin``; ``via`` and ``note`` in evidence).

        ``channel`` None looks the address up on every channel. An email address otayori never had is recorded as a
        suppressed (``unsubscribed``) endpoint with a ``withdraw`` event, so it is never mailed without a fresh
        double opt-in. Returns (endpoints newly withdrawn, endpoints found). Raises ``LookupError`` when a chat
        address is unknown, :class:`core.double_opt_in.AddressError` for a malformed email address.
        """
        email_form: str | None = None
        if channel in (None, "email") and "@" in address:
            email_form = normalise_email(address)
        evidence = {"via": via, **({"note": note} if note else {})}
        now = self.clock()
        async with self.db.write() as session:
            query = select(Endpoint)
            candidates: list[tuple[str, str]] = []
            if email_form is not None:
                candidates.append(("email", email_form))
            if channel in (None, "line", "telegram"):
                for chat in (("line", "telegram") if channel is None else (channel,)):
                    candidates.append((chat, address.strip()))
            found: list[Endpoint] = []
            for cand_channel, cand_address in candidates:
                row = (await session.exec(query.where(Endpoint.channel == cand_channel,
                                                      Endpoint.address == cand_address))).first()
                if row is not None:
                    found.append(row)
            if not found:
                if email_form is None:
                    raise LookupError(f"no endpoint with address {address!r}")
                subscriber = Subscriber(created_at=now)
                session.add(subscriber)
                await session.flush()
                endpoint = Endpoint(subscriber_id=subscriber.id, channel="email", address=email_form,  # type: ignore[arg-type]
                                    state=EndpointState.UNSUBSCRIBED.value, basis=Basis.OPT_IN.value,
                                    created_at=now, updated_at=now)
                session.add(endpoint)
                await session.flush()
                await self._append(session, endpoint, "admin", {**evidence, "suppression_only": True})
                return 1, [endpoint]
            withdrawn = 0
            for endpoint in found:
                if endpoint.state in RECEIVING:
                    await self._withdraw(session, endpoint, "admin", evidence)
                    withdrawn += 1
            return withdrawn, found

    async def _withdraw(self, session: AsyncSession, endpoint: Endpoint, source: str, evidence: dict[str, Any]) -> None:
        endpoint.state = EndpointState.UNSUBSCRIBED.value
        endpoint.updated_at = self.clock()
        session.add(endpoint)
        await self._append(session, endpoint, source, evidence)

    async def _append(self, session: AsyncSession, endpoint: Endpoint, source: str, evidence: dict[str, Any]) -> None:
        subscriber = await session.get(Subscriber, endpoint.subscriber_id)
        await consent.append(self.db, session, consent.ConsentFacts(
            subscriber_id=endpoint.subscriber_id, endpoint_id=endpoint.id, channel=endpoint.channel,
            address=endpoint.address or "", action=ConsentAction.WITHDRAW.value, basis=endpoint.basis,
            source=source, topics=subscriber.topics if subscriber else None, evidence=evidence,
            occurred_at=self.clock(),
        ))

    async def _view(self, session: AsyncSession, endpoint_id: int) -> EndpointView | None:
        endpoint = await session.get(Endpoint, endpoint_id)
        if endpoint is None:
            return None
        siblings = (await session.exec(
            select(Endpoint).where(Endpoint.subscriber_id == endpoint.subscriber_id, Endpoint.id != endpoint.id)
            .order_by(Endpoint.id))).all()  # type: ignore[arg-type]
        return EndpointView(endpoint.id, endpoint.channel, endpoint.address, endpoint.state,  # type: ignore[arg-type]
                            [(s.channel, s.state) for s in siblings])


__all__ = ["AddressError", "EndpointView", "OptOutResult", "OptOuts"]
