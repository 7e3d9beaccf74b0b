"""Inbound events (webhook events, updates): stored raw before they are acknowledged, processed exactly once.

A LINE webhook is answered 200 only after its raw events are stored (an acknowledged event is never lost to a
crash); processing then marks each event processed in the same transaction as its state change, so a repeated
event (``isRedelivery``, a repeated ``update_id``) does nothing twice (reference/line.md "Webhooks",
reference/telegram.md "update_ids").
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.database import Database
from storage.models import InboundEvent
from storage.types import utcnow


def _insert(session: AsyncSession):  # type: ignore[no-untyped-def]
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


async def store_raw(db: Database, channel: str, events: Sequence[tuple[str, str]]) -> list[str]:
    """Store raw events ``[(event_key, payload_json), …]`` for ``channel`` in one write transaction.

    Returns the keys that were new (duplicates are ignored, not errors).
    """
    if not events:
        return []
    now = utcnow()
    async with db.write() as session:
        new: list[str] = []
        for key, payload in events:
            statement = (
                _insert(session)(InboundEvent)
                .values(channel=channel, event_key=key, payload=payload, received_at=now)
                .on_conflict_do_nothing(index_elements=["channel", "event_key"])
            )
            result = await session.exec(statement)  # type: ignore[call-overload]
            if result.rowcount:
                new.append(key)
        return new


async def begin_processing(session: AsyncSession, channel: str, key: str, payload: str = "{}") -> bool:
    """Inside a write transaction: True when the event ``key`` must be processed now, False when it already was.

    Stores the event first when it is not stored yet (Telegram polling stores as it processes). The caller marks it
    done with :func:`finish_processing` in the same transaction as the state change.
    """
    row = (
        await session.exec(select(InboundEvent).where(InboundEvent.channel == channel, InboundEvent.event_key == key))
    ).first()
    if row is None:
        session.add(InboundEvent(channel=channel, event_key=key, payload=payload))
        await session.flush()
        return True
    return row.processed_at is None


async def finish_processing(session: AsyncSession, channel: str, key: str, error: str | None = None) -> None:
    """Mark the event ``key`` processed (with an optional error text, at most 500 characters)."""
    row = (
        await session.exec(select(InboundEvent).where(InboundEvent.channel == channel, InboundEvent.event_key == key))
    ).first()
    if row is not None:
        row.processed_at = utcnow()
        row.error = error[:500] if error else None
        session.add(row)


async def unprocessed(
    db: Database, channel: str, limit: int = 500, keys: Sequence[str] | None = None
) -> list[InboundEvent]:
    """Stored but unprocessed events of ``channel`` in arrival order (for recovery after a crash).

    ``keys``: only these event keys (the events one webhook request just stored). Without it a webhook's background
    task would load every unprocessed event of the channel: quadratic work in a burst, and events beyond ``limit``
    silently left for the next restart.
    """
    query = select(InboundEvent).where(
        InboundEvent.channel == channel, InboundEvent.processed_at.is_(None)  # type: ignore[union-attr]
    )
    if keys is not None:
        if not keys:
            return []
        query = query.where(InboundEvent.event_key.in_(list(keys)))  # type: ignore[attr-defined]
    async with db.read() as session:
        rows = await session.exec(query.order_by(InboundEvent.id).limit(limit))  # type: ignore[arg-type]
        return list(rows.all())
