"""Shared fixtures: a migrated SQLite file per test, settings for tests, a controllable clock, and a migrated
PostgreSQL database per test module when ``OTAYORI_TEST_POSTGRES_URL`` is set."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from core.settings import Settings
from storage.database import Database
from storage.migrate import upgrade

TEST_SECRET = "test-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"


class Clock:
    """A settable clock returning aware UTC datetimes; ``advance(seconds)`` moves it forward."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 12, 1, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Settings for tests: a SQLite file under ``tmp_path``, no ``.env``, a real-looking secret key."""
    values: dict[str, object] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'otayori.sqlite3'}",
        "secret_key": TEST_SECRET,
        "sender_name": "山田IT事務所",
        "public_url": "http://127.0.0.1:8000",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
async def db(settings: Settings):
    upgrade(settings.database_url)
    database = Database(settings.database_url)
    yield database
    await database.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


# ---- PostgreSQL ------------------------------------------------------------------------------------------------------
#
# The outbox must claim correctly on PostgreSQL too (FOR UPDATE SKIP LOCKED, advisory ledger lock; issue 4). When
# ``OTAYORI_TEST_POSTGRES_URL`` names a server (``.ci/run`` exports it), every test module that asks for ``pg_db`` gets
# its own freshly created and migrated database, dropped at the end of the module; tables are emptied before each
# test. Without the variable (a laptop with no server) the PostgreSQL variants skip, saying why.

POSTGRES_URL_ENV = "OTAYORI_TEST_POSTGRES_URL"
POSTGRES_SKIP_REASON = f"{POSTGRES_URL_ENV} not set: PostgreSQL outbox tests need a server"


def _in_thread(work: Callable[[], Awaitable[None]]) -> None:
    """Run ``work()`` to completion on a fresh event loop in a worker thread (module fixtures are synchronous and must
    not touch the loop pytest-asyncio gives each test)."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(work())  # type: ignore[arg-type]
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    worker = threading.Thread(target=target, name="postgres-fixture")
    worker.start()
    worker.join()
    if errors:
        raise errors[0]


async def _admin(url: str, *statements: str) -> None:
    """Run ``statements`` in autocommit mode (CREATE/DROP DATABASE cannot run inside a transaction)."""
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            for statement in statements:
                await connection.exec_driver_sql(statement)
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """URL of a new, migrated PostgreSQL database for this test module (``otayori_t_<random>``), dropped afterwards.

    Created through the connection ``OTAYORI_TEST_POSTGRES_URL`` names (its user needs CREATEDB). Skips when the
    variable is unset; fails (does not skip) when it is set and the server cannot be reached.
    """
    base = os.environ.get(POSTGRES_URL_ENV, "").strip()
    if not base:
        pytest.skip(POSTGRES_SKIP_REASON)
    name = f"otayori_t_{uuid.uuid4().hex[:12]}"
    _in_thread(lambda: _admin(base, f'CREATE DATABASE "{name}"'))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        _in_thread(lambda: _admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def pg_db(postgres_url: str):
    """A :class:`Database` on the module's PostgreSQL database with every table emptied (identities restarted)."""
    database = Database(postgres_url)
    async with database.engine.begin() as connection:
        names = (
            await connection.exec_driver_sql(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename <> 'alembic_version'"
            )
        ).scalars().all()
        if names:
            tables = ", ".join(f'"{name}"' for name in names)
            await connection.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    yield database
    await database.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request: pytest.FixtureRequest) -> Database:
    """The same test on both databases: the SQLite file of ``db``, then the PostgreSQL database of ``pg_db``."""
    return request.getfixturevalue("db" if request.param == "sqlite" else "pg_db")
