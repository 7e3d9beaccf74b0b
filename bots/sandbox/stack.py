"""A whole otayori stack on loopback: the Telegram and LINE emulators, our web app and bots, one SQLite file.

Used by the demo and the integration tests, so both exercise exactly what ``otayori run`` wires: the real
python-telegram-bot Application polling the Telegram emulator (or, with ``telegram_mode="webhook"``, the emulator
posting updates to our ``/webhooks/telegram``), the real line-bot-sdk client calling the LINE emulator, and the LINE
emulator posting signed webhooks to our Starlette app.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.routing import BaseRoute
from bots.app import Runtime, open_runtime, running_telegram
from bots.sandbox.line_api import LineEmulator
from bots.sandbox.server import LocalServer
from bots.sandbox.smtp_sink import SmtpSink
from bots.sandbox.telegram_api import TelegramEmulator
from bots.web import create_app
from core.settings import Settings
from storage.migrate import upgrade

REHEARSAL_SENDER = "【リハーサル】お便りサンドボックス"


@dataclass
class Stack:
    """The running pieces: ``telegram`` and ``line`` emulators, our ``runtime``, ``web_url`` of our app."""

    settings: Settings
    runtime: Runtime
    telegram: TelegramEmulator
    line: LineEmulator
    web_url: str
    smtp: SmtpSink


def sandbox_settings(directory: Path, **overrides: Any) -> Settings:
    """Settings for a local stack under ``directory`` (SQLite file, generated secret key, rehearsal sender).

    ``.env`` is ignored. Emulator URLs are filled in by :func:`running_stack`. The secret key is generated once per
    directory and kept in ``directory/secret_key`` (never a placeholder).
    """
    directory.mkdir(parents=True, exist_ok=True)
    key_file = directory / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_hex(32), encoding="utf-8")
    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{directory / 'otayori.sqlite3'}",
        "secret_key": key_file.read_text(encoding="utf-8").strip(),
        "sender_name": REHEARSAL_SENDER,
        "telegram_bot_token": "7000000001:" + "A" * 35,
        "line_channel_secret": "sandbox-line-channel-secret",
        "line_channel_access_token": "sandbox-line-access-token",
        # Email goes to a local SMTP sink (its port is filled in by running_stack); a clearly marked rehearsal sender.
        "smtp_host": "127.0.0.1",
        "smtp_security": "none",
        "mail_from": "rehearsal@otayori.invalid",
        "sender_postal_address": "【リハーサル】東京都千代田区千代田1-1(架空の住所)",
        "sender_contact": "rehearsal@otayori.invalid",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running_stack(settings: Settings, *, first_update_id: int = 100_000_001, web_port: int = 0,
                        sandbox_page: bool = False) -> AsyncIterator[Stack]:
    """Start the emulators, point ``settings`` at them, upgrade the database, and run our app and bots.

    Everything listens on 127.0.0.1 only and is stopped on exit. ``first_update_id``: where the Telegram emulator's
    update ids start — a "restarted" stack on the same database continues above the old ones, as Telegram's do
    (the bot deduplicates on ``update_id``). ``web_port``: where our app listens (0: a free port). ``sandbox_page``:
    also serve the rehearsal page ``/sandbox`` (bots/sandbox/rehearsal_page.py; its admins must be in ``settings``).
    """
    telegram = TelegramEmulator(settings.telegram_bot_token or "", first_update_id=first_update_id)
    line = LineEmulator(settings.line_channel_access_token or "", settings.line_channel_secret or "")
    smtp = SmtpSink()
    await telegram.start()
    await line.start()
    _host, smtp_port = await smtp.start()
    try:
        # The web app's port is known only once it listens; reserve one now so links in mails point at it.
        web_port = web_port or free_loopback_port()
        settings = settings.model_copy(update={
            "telegram_api_url": telegram.api_url,
            "telegram_file_url": telegram.file_url,
            "line_api_url": line.url,
            "line_data_api_url": line.url,
            "smtp_port": smtp_port if settings.smtp_host else None,
            # An https:// public URL given by the caller is kept, as behind a TLS proxy (LINE image messages need
            # one; nothing fetches it here): links then name it, and tests reach the app at ``web_url``.
            "public_url": (settings.public_url if settings.public_url.startswith("https://")
                           else f"http://127.0.0.1:{web_port}"),
        })
        upgrade(settings.database_url)
        async with open_runtime(settings, telegram_updates=True) as runtime:
            stack = Stack(settings, runtime, telegram, line, f"http://127.0.0.1:{web_port}", smtp)
            extra_routes: Sequence[BaseRoute] = ()
            if sandbox_page:
                from bots.sandbox.rehearsal_page import SandboxPeople, sandbox_routes
                from bots.web import templates

                people = SandboxPeople(stack)
                await people.add_admins()
                extra_routes = sandbox_routes(stack, people, templates())
            web = LocalServer(create_app(runtime, extra_routes=extra_routes), port=web_port)
            web_url = stack.web_url = await web.start()
            line.webhook_url = f"{web_url}/webhooks/line"
            try:
                # Webhook mode: the emulator posts to our app itself, also when the public URL is an https:// one.
                async with running_telegram(runtime, webhook_url=f"{web_url}/webhooks/telegram"):
                    yield stack
            finally:
                await web.stop()
    finally:
        await smtp.stop()
        await line.stop()
        await telegram.stop()


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 right now (bound and released; used at once by the caller)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
