"""The consent ledger: append-only, hash-chained, holding a keyed hash of each address, never the address.

Rules (DESIGN.md "Words" -> consent event, and "Consent export"):

* each record holds who (subscriber, endpoint, ``address_hmac``), when (``occurred_at``), how (``source``, ``campaign``,
  ``evidence``) and exactly what they were shown (``wording_version`` and ``wording_sha256``);
* ``address_hmac`` = HMAC-SHA256 of the normalised address under a ledger key generated once and kept in the
  database (never rotated), so erasing an address (APPI Art. 35) never breaks the chain and suppression look-ups
  still work;
* ``hash`` = hex SHA-256 of the UTF-8 bytes of ``prev_hash`` followed by the canonical JSON of the hashed fields
  (sorted keys, no spaces, ``ensure_ascii=False``, timestamps ``YYYY-MM-DDTHH:MM:SS.ffffffZ``); the first
  ``prev_hash`` is 64 zeros;
* appends are serialised (:meth:`storage.database.Database.lock_ledger`) so the chain never forks; ``prev_hash`` is
  also unique in the table.

Records are kept at least as long as 特定電子メール法 Art. 3(2) and its ordinance Art. 4 require (reference/email-and-law.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.database import Database
from storage.models import ConsentEvent, Setting
from storage.types import utcnow

GENESIS_HASH = "0" * 64
LEDGER_KEY_SETTING = "ledger_hmac_key"

#: The fields covered by ``hash`` (every export field except ``address`` and ``hash``).
HASHED_FIELDS = (
    "event_id",
    "occurred_at",
    "subscriber_id",
    "endpoint_id",
    "channel",
    "action",
    "basis",
    "source",
    "campaign",
    "topics",
    "wording_version",
    "wording_sha256",
    "evidence",
    "address_hmac",
    "prev_hash",
)


def format_timestamp(moment: datetime) -> str:
    """ISO 8601 UTC with microseconds and ``Z``: ``2026-11-29T06:30:00.000000Z``. Raises ``ValueError`` if naive."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime in the ledger")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(value: Any) -> str:
    """Canonical JSON used for hashing: sorted keys, no spaces, UTF-8 characters kept (``ensure_ascii=False``)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def hashed_record(event: ConsentEvent) -> dict[str, Any]:
    """The dictionary of :data:`HASHED_FIELDS` for ``event`` exactly as they are hashed and exported."""
    return {
        "event_id": event.id,
        "occurred_at": format_timestamp(event.occurred_at),
        "subscriber_id": event.subscriber_id,
        "endpoint_id": event.endpoint_id,
        "channel": event.channel,
        "action": event.action,
        "basis": event.basis,
        "source": event.source,
        "campaign": event.campaign,
        "topics": event.topics,
        "wording_version": event.wording_version,
        "wording_sha256": event.wording_sha256,
        "evidence": event.evidence or {},
        "address_hmac": event.address_hmac,
        "prev_hash": event.prev_hash,
    }


def chain_hash(prev_hash: str, record: Mapping[str, Any]) -> str:
    """Hex SHA-256 of ``prev_hash`` (hex) followed by the canonical JSON of ``record`` (DESIGN.md consent export)."""
    return hashlib.sha256((prev_hash + canonical_json(dict(record))).encode("utf-8")).hexdigest()


def normalise_address(channel: str, address: str) -> str:
    """The form of an address that is HMAC'd: ``channel:address``; email addresses are lower-cased whole.

    Lower-casing the local part is a deliberate over-match: a suppression must also catch ``Taro@`` vs ``taro@``.
    """
    address = address.strip()
    if channel == "email":
        address = address.lower()
    return f"{channel}:{address}"


def address_hmac(key: bytes, channel: str, address: str) -> str:
    """Hex HMAC-SHA256 of :func:`normalise_address` under the ledger key."""
    return hmac.new(key, normalise_address(channel, address).encode("utf-8"), hashlib.sha256).hexdigest()


async def ledger_key(session: AsyncSession) -> bytes:
    """The ledger HMAC key (32 bytes), generated on first use and kept in ``app_setting`` forever (never rotated).

    Safe under concurrent first use: the insert ignores a conflict and the stored value is read back.
    """
    stored = await session.get(Setting, LEDGER_KEY_SETTING)
    if stored is None:
        dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(Setting).values(
            name=LEDGER_KEY_SETTING, value=secrets.token_hex(32), created_at=utcnow()
        ).on_conflict_do_nothing(index_elements=["name"])
        await session.exec(statement)  # type: ignore[call-overload]
        stored = await session.get(Setting, LEDGER_KEY_SETTING)
        assert stored is not None
    return bytes.fromhex(stored.value)


@dataclass(frozen=True)
class ConsentFacts:
    """What one ledger append records (see :func:`append`). ``evidence`` values must be JSON scalars/lists/dicts."""

    subscriber_id: int
    endpoint_id: int | None
    channel: str
    address: str
    action: str
    basis: str
    source: str
    campaign: str | None = None
    topics: list[str] | None = None
    wording_version: str | None = None
    wording_sha256: str | None = None
    evidence: Mapping[str, Any] | None = None
    occurred_at: datetime | None = None


async def append(db: Database, session: AsyncSession, facts: ConsentFacts) -> ConsentEvent:
    """Append one event to the ledger inside ``session``'s write transaction and return it.

    Takes the ledger lock, reads the chain head, and writes the next event with ``id`` = head id + 1 so that the
    hashed ``event_id`` is known before the insert. Raises ``sqlalchemy.exc.IntegrityError`` if the chain would fork
    (``prev_hash`` is unique), which the lock prevents.
    """
    await db.lock_ledger(session)
    key = await ledger_key(session)
    head = (
        await session.exec(select(ConsentEvent.id, ConsentEvent.hash).order_by(ConsentEvent.id.desc()).limit(1))  # type: ignore[call-overload,union-attr]
    ).first()
    prev_hash = head[1] if head else GENESIS_HASH
    event = ConsentEvent(
        id=(head[0] if head else 0) + 1,
        occurred_at=facts.occurred_at or utcnow(),
        subscriber_id=facts.subscriber_id,
        endpoint_id=facts.endpoint_id,
        channel=facts.channel,
        action=facts.action,
        basis=facts.basis,
        source=facts.source,
        campaign=facts.campaign,
        topics=list(facts.topics) if facts.topics is not None else None,
        wording_version=facts.wording_version,
        wording_sha256=facts.wording_sha256,
        # A JSON round trip now, so that what we hash is exactly what the JSON column gives back later.
        evidence=json.loads(canonical_json(dict(facts.evidence or {}))),
        address_hmac=address_hmac(key, facts.channel, facts.address),
        prev_hash=prev_hash,
        hash="",
    )
    event.hash = chain_hash(prev_hash, hashed_record(event))
    session.add(event)
    await session.flush()
    return event


@dataclass(frozen=True)
class ChainProblem:
    """One place where the stored chain disagrees with a recomputation."""

    event_id: int | None
    problem: str


def verify_chain(events: Iterable[ConsentEvent]) -> list[ChainProblem]:
    """Recompute the hash chain over ``events`` (in id order) and list every disagreement.

    Detects an altered field (hash mismatch), a removed or re-ordered event (``prev_hash`` not the previous hash) and
    a forged hash. An empty list means the chain is intact.
    """
    problems: list[ChainProblem] = []
    expected_prev = GENESIS_HASH
    for event in events:
        if event.prev_hash != expected_prev:
            problems.append(ChainProblem(event.id, "prev_hash does not match the previous event's hash"))
        recomputed = chain_hash(event.prev_hash, hashed_record(event))
        if recomputed != event.hash:
            problems.append(ChainProblem(event.id, "hash does not match the event's contents"))
        expected_prev = event.hash
    return problems


async def count_events(session: AsyncSession) -> int:
    """Number of ledger events."""
    return int((await session.exec(select(func.count()).select_from(ConsentEvent))).one()[0])  # type: ignore[call-overload]
