"""``otayori run`` with no channel configured: the rehearsal sandbox (DESIGN.md "Outside contract"; issue 6 item 7).

The LINE and Telegram emulators and the SMTP sink run in-process, with our real bots, SDK clients and a SQLite file
under ``var/sandbox/``, and ``http://127.0.0.1:<OTAYORI_HTTP_PORT>/sandbox`` lets you chat as LINE or Telegram users
(or as the admin) and read the mails. Everything binds 127.0.0.1 only, whatever ``OTAYORI_HTTP_HOST`` says.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from pathlib import Path

from bots.sandbox.rehearsal_page import ADMIN_LINE_ID, ADMIN_TELEGRAM_ID
from bots.sandbox.stack import running_stack, sandbox_settings
from core.settings import Settings

#: Where the sandbox keeps its database and generated secret key (``var/`` is git-ignored).
SANDBOX_DIR = Path("var/sandbox")


def prepare_directory(directory: Path) -> None:
    """Create ``directory`` and remove the previous run's database: the emulators forget their users and chats on
    every start, so a database that remembered them (and their Telegram ``update_id``\\ s) would not match. The
    generated secret key is kept."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("otayori.sqlite3*"):  # the file and its -wal/-shm companions
        old.unlink()


def rehearsal_settings(directory: Path, port: int) -> Settings:
    """Settings of the sandbox under ``directory``: emulator credentials, the rehearsal sender, one admin on each
    platform (:data:`ADMIN_TELEGRAM_ID`, :data:`ADMIN_LINE_ID`), our app on 127.0.0.1:``port``."""
    return sandbox_settings(directory, telegram_admin_ids=[ADMIN_TELEGRAM_ID], line_admin_user_ids=[ADMIN_LINE_ID],
                            http_host="127.0.0.1", http_port=port)


async def serve_rehearsal(port: int, directory: Path = SANDBOX_DIR,
                          announce: Callable[[str], None] = print) -> None:
    """Run the sandbox until SIGINT or SIGTERM; ``announce`` gets one line with the page's URL once it listens.

    The background dispatcher and the scheduler run as in ``otayori run``. Raises ``OSError`` when ``port`` is taken.
    """
    from bots.app import dispatch_forever
    from bots.scheduling import send_due_forever

    prepare_directory(directory)
    settings = rehearsal_settings(directory, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with running_stack(settings, web_port=port, sandbox_page=True) as stack:
            workers = [asyncio.create_task(dispatch_forever(stack.runtime, stop)),
                       asyncio.create_task(send_due_forever(stack.runtime, stop))]
            announce(f"リハーサル(サンドボックス)を開きました: {stack.web_url}/sandbox  (Ctrl-C で終了)")
            try:
                await stop.wait()
            finally:
                stop.set()
                for worker in workers:
                    with contextlib.suppress(Exception):
                        await worker
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)

