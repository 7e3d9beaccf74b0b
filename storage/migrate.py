"""Run the Alembic migrations that ship inside the package.

Alembic's async ``env.py`` calls ``asyncio.run``; so migrations run before an event loop starts (``otayori run`` and
``demo`` call :func:`upgrade` first). Called from inside a running loop (tests), they run in a worker thread.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic ``Config`` pointing at the packaged migrations and ``url`` (a SQLAlchemy async URL)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision``; creates a SQLite file's parent directory when missing.

    Raises whatever the driver raises when the database cannot be reached (the CLI reports it in one line).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    cfg = alembic_config(url)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        command.upgrade(cfg, revision)
        return
    errors: list[BaseException] = []

    def _target() -> None:
        try:
            command.upgrade(cfg, revision)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    worker = threading.Thread(target=_target, name="alembic-upgrade")
    worker.start()
    worker.join()
    if errors:
        raise errors[0]
