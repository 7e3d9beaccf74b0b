"""Async engine and sessions; the URL decides the database (SQLite via aiosqlite by default, PostgreSQL via asyncpg).

SQLite is tuned for a web app with concurrent writers (DESIGN.md, issue 2):

* WAL journal, so readers never block the writer;
* a busy timeout, so a writer waits for the lock instead of failing at once;
* ``BEGIN IMMEDIATE`` for every write transaction. A deferred transaction that reads first and then upgrades to
  writing gets ``SQLITE_BUSY`` ("database is locked") *without* waiting for the busy timeout when another writer got
  there first (https://www.sqlite.org/lang_transaction.html, "BEGIN IMMEDIATE"; https://sqlite.org/wal.html). Taking
  the write lock at ``BEGIN`` makes the busy timeout apply.

Nothing connects at construction: the first session opens the first connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

SQLITE_BUSY_TIMEOUT_MS = 30_000
_IMMEDIATE = "otayori_immediate"
#: The advisory lock key that serialises ledger appends on PostgreSQL ("otayori" in ASCII, as a bigint).
LEDGER_LOCK_KEY = int.from_bytes(b"otayori", "big")


class Database:
    """One async engine plus helpers that open read or write transactions.

    ``url``: a SQLAlchemy async URL (``sqlite+aiosqlite:///path`` or ``postgresql+asyncpg://…``). For a SQLite file the
    parent directory is created when missing.
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self.is_postgresql = parsed.get_backend_name() == "postgresql"
        if self.is_sqlite and parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, object] = {"echo": echo}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        self._writer = self.engine.execution_options(**{_IMMEDIATE: True})
        if self.is_sqlite:
            self._install_sqlite_hooks()

    def _install_sqlite_hooks(self) -> None:
        sync_engine = self.engine.sync_engine

        @event.listens_for(sync_engine, "connect")
        def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            # Let us emit BEGIN ourselves (pysqlite's implicit BEGIN is always DEFERRED).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")  # durable across application crashes in WAL mode
            cursor.close()

        @event.listens_for(sync_engine, "begin")
        def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
            immediate = conn.get_execution_options().get(_IMMEDIATE, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite); commits on success, rolls back on error."""
        async with AsyncSession(self._writer, expire_on_commit=False) as session:
            async with session.begin():
                yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read transaction (deferred ``BEGIN``; on SQLite it never takes the write lock unless it writes).

        It ends with a commit so that loaded objects stay usable after the block (a rollback would expire them).
        """
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            async with session.begin():
                yield session

    async def lock_ledger(self, session: AsyncSession) -> None:
        """Serialise ledger appends inside ``session``'s transaction so the hash chain never forks.

        SQLite: the write transaction already holds the one write lock (``BEGIN IMMEDIATE``). PostgreSQL: a
        transaction-scoped advisory lock (https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS).
        """
        if self.is_postgresql:
            await session.exec(text(f"SELECT pg_advisory_xact_lock({LEDGER_LOCK_KEY})"))  # type: ignore[call-overload]

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
