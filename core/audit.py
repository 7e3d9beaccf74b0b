"""Consent export and audit (DESIGN.md "Consent export"; 特定電子メール法 Art. 3(2) records of consent).

The export gives one record per ledger event with the current address (``null`` once erased). The audit recomputes
the hash chain and checks, for every delivery with an attempt mark, that when its first attempt started, and when its
last attempt started, the endpoint's latest consent event other than ``topics`` was ``grant`` (chat) or ``confirm``
(email).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from sqlmodel import select

from core.consent import ChainProblem, canonical_json, hashed_record, verify_chain
from storage.database import Database
from storage.models import ConsentAction, ConsentEvent, Delivery, Endpoint

EXPORT_FIELDS = (
    "event_id", "occurred_at", "subscriber_id", "endpoint_id", "channel", "address", "action", "basis", "source",
    "campaign", "topics", "wording_version", "wording_sha256", "evidence", "address_hmac", "prev_hash", "hash",
)
BATCH = 1000


async def _events(db: Database) -> AsyncIterator[tuple[ConsentEvent, str | None]]:
    """Ledger events in id order with the endpoint's current address, read in bounded batches."""
    last_id = 0
    while True:
        async with db.read() as session:
            rows = (
                await session.exec(
                    select(ConsentEvent, Endpoint.address)
                    .join(Endpoint, Endpoint.id == ConsentEvent.endpoint_id, isouter=True)  # type: ignore[arg-type]
                    .where(ConsentEvent.id > last_id)  # type: ignore[operator]
                    .order_by(ConsentEvent.id)  # type: ignore[arg-type]
                    .limit(BATCH)
                )
            ).all()
        if not rows:
            return
        for event, address in rows:
            yield event, address
        last_id = rows[-1][0].id


def export_record(event: ConsentEvent, address: str | None) -> dict[str, Any]:
    """One export record: the hashed fields plus ``address`` and ``hash``, in :data:`EXPORT_FIELDS` order."""
    record = hashed_record(event)
    record["address"] = address
    record["hash"] = event.hash
    return {name: record[name] for name in EXPORT_FIELDS}


async def export_consents(db: Database, out: TextIO, fmt: str = "jsonl") -> int:
    """Write the ledger to ``out`` as JSON Lines or CSV (``evidence`` and ``topics`` as JSON strings in CSV).

    Returns the number of records. Raises ``ValueError`` for an unknown format.
    """
    if fmt not in ("jsonl", "csv"):
        raise ValueError("format must be jsonl or csv")
    writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writeheader()
    count = 0
    async for event, address in _events(db):
        record = export_record(event, address)
        if writer is not None:
            row = dict(record)
            row["evidence"] = canonical_json(record["evidence"])
            row["topics"] = "" if record["topics"] is None else canonical_json(record["topics"])
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        else:
            out.write(json.dumps(record, ensure_ascii=False, sort_keys=False) + "\n")
        count += 1
    return count


@dataclass(frozen=True)
class DeliveryViolation:
    """A delivery attempted without the required consent at the time of its first or its last attempt."""

    delivery_id: int
    issue_id: int
    endpoint_id: int
    channel: str
    latest_action: str | None


@dataclass(frozen=True)
class AuditReport:
    """The audit's findings: ``events`` and ``deliveries`` checked, and every problem found."""

    events: int
    deliveries: int
    chain_problems: list[ChainProblem]
    delivery_violations: list[DeliveryViolation]

    @property
    def ok(self) -> bool:
        return not self.chain_problems and not self.delivery_violations


def required_action_for(channel: str) -> str:
    """``confirm`` for email (double opt-in), ``grant`` for chat channels."""
    return ConsentAction.CONFIRM.value if channel == "email" else ConsentAction.GRANT.value


async def audit(db: Database) -> AuditReport:
    """Recompute the hash chain and check every attempted delivery against the consent rule (module docstring)."""
    chain: list[ConsentEvent] = []
    history: dict[int, list[ConsentEvent]] = {}
    async for event, _address in _events(db):
        chain.append(event)
        if event.endpoint_id is not None and event.action != ConsentAction.TOPICS.value:
            history.setdefault(event.endpoint_id, []).append(event)
    problems = verify_chain(chain)
    violations: list[DeliveryViolation] = []
    checked = 0
    last_id = 0
    while True:
        async with db.read() as session:
            rows = (
                await session.exec(
                    select(Delivery)
                    .where(Delivery.first_attempted_at.is_not(None), Delivery.id > last_id)  # type: ignore[union-attr,operator]
                    .order_by(Delivery.id)  # type: ignore[arg-type]
                    .limit(BATCH)
                )
            ).all()
        if not rows:
            break
        for delivery in rows:
            checked += 1
            # Consent must hold at the first attempt and at the last one (a retry is a request too; a LINE repeat
            # that left someone out did not mark them again, so their last mark is the one they were sent under).
            for moment in {delivery.first_attempted_at, delivery.attempted_at or delivery.first_attempted_at}:
                latest = _latest_before(history.get(delivery.endpoint_id, ()), moment)
                action = latest.action if latest else None
                if action != required_action_for(delivery.channel):
                    violations.append(DeliveryViolation(delivery.id, delivery.issue_id,  # type: ignore[arg-type]
                                                        delivery.endpoint_id, delivery.channel, action))
                    break
        last_id = rows[-1].id  # type: ignore[assignment]
    return AuditReport(len(chain), checked, problems, violations)


def _latest_before(events: Iterable[ConsentEvent], moment: Any) -> ConsentEvent | None:
    latest = None
    for event in events:
        if event.occurred_at <= moment:
            latest = event
    return latest
