"""Shared fixtures: a migrated SQLite file per test, settings for tests, a controllable clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

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
