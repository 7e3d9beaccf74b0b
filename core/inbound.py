"""Inbound events (webhook events, updates): stored raw before they are acknowledged, processed exactly once.

A LINE webhook is answered 200 only after its raw events are stored (an acknowledged event is never lost to a
crash); processing then marks each event processed in the same transaction as its state change, so a repeated
event (``isRedelivery``, a repeated ``update_id``) does nothing twice (reference/line.md "Webhooks",
reference/telegram.md "update_ids").
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.database import Database
from storage.models import InboundEvent
from storage.types import utcnow


#: Rows per multi-row INSERT: 4 parameters each stays far below SQLite's 32,766 and asyncpg's 32,767 parameters.
_ROWS_PER_INSERT = 500


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
        dialect = session.bind.dialect if session.bind is not None else None
        if getattr(dialect, "insert_returning", False):
            # One multi-row INSERT … ON CONFLICT DO NOTHING RETURNING per chunk instead of one statement per event:
            # a burst's batch of 400 events took ~0.4 s statement by statement, ~0.06 s this way (bench/).
            # SQLAlchemy sets insert_returning for PostgreSQL and for SQLite >= 3.35 (RETURNING's first release).
            inserted: set[str] = set()
            for start in range(0, len(events), _ROWS_PER_INSERT):
                rows = [{"channel": channel, "event_key": key, "payload": payload, "received_at": now}
                        for key, payload in events[start:start + _ROWS_PER_INSERT]]
                statement = (
                    _insert(session)(InboundEvent).values(rows)
                    .on_conflict_do_nothing(index_elements=["channel", "event_key"])
                    .returning(InboundEvent.event_key)  # only the rows actually inserted
                )
                inserted.update((await session.exec(statement)).scalars().all())  # type: ignore[call-overload]
            new_keys: list[str] = []
            for key, _ in events:
                if key in inserted:  # a key repeated within ``events`` is new once
                    inserted.discard(key)
                    new_keys.append(key)
            return new_keys
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


class RawEventStore:
    """Stores the raw events of one channel for many concurrent requests, in as few write transactions as possible.

    A burst of webhooks (issue 2: 400 people scanning one QR code) would otherwise queue one write transaction per
    request behind the single SQLite writer, each paying ``BEGIN IMMEDIATE``, ``COMMIT`` and a thread hop per
    statement, and the last answers would come after LINE's 2 s timeout (reference/line.md "Webhooks"; measured by
    bench/webhook_burst.py). Here a caller joins a queue; one flush at a time stores everything queued so far with
    :func:`store_raw` in one transaction (a group commit), so requests that arrive while a flush commits share the
    next one. Each caller still returns only after its own events are committed.

    Use it from one event loop. Errors of the transaction are raised to every caller of that flush.
    """

    def __init__(self, db: Database, channel: str) -> None:
        self.db = db
        self.channel = channel
        self._queued: list[tuple[list[tuple[str, str]], asyncio.Future[list[str]]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def store(self, events: Sequence[tuple[str, str]]) -> list[str]:
        """Store ``[(event_key, payload_json), …]``; return the keys of *these* events that were new.

        A key already stored, or queued by another caller of the same flush, is not new (so exactly one request
        processes each event).
        """
        if not events:
            return []
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[str]] = loop.create_future()
        self._queued.append((list(events), future))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, []
            try:
                new = set(await store_raw(self.db, self.channel, [event for events, _ in batch for event in events]))
            except Exception as exc:  # every caller of this flush gets the error (its request was not stored)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for events, future in batch:
                mine = []
                for key, _ in events:
                    if key in new:
                        new.discard(key)
                        mine.append(key)
                if not future.done():
                    future.set_result(mine)


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


async def is_processed(db: Database, channel: str, key: str) -> bool:
    """True when the event ``key`` of ``channel`` was processed already (a redelivery or a repeated update)."""
    async with db.read() as session:
        row = (await session.exec(select(InboundEvent).where(
            InboundEvent.channel == channel, InboundEvent.event_key == key))).first()
        return row is not None and row.processed_at is not None
