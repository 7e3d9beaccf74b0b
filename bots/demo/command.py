"""``otayori demo``'s entry point: a fresh directory, the rehearsal under a time budget, the report, an exit code."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.text import Text

from bots.demo.checks import verify
from bots.demo.desk_checks import DEMO_ADMIN_ID, verify_desk
from bots.demo.facts import expectation_for
from bots.demo.rehearsal import Rehearsal, mail_identity, rehearse
from bots.demo.report import actions_table, heading, print_checks, print_desk, print_plain, print_report
from bots.demo.script import (
    CAMPAIGN_CODE,
    CAMPAIGN_LABEL,
    DEFAULT_ATTENDEES,
    DEFAULT_SEED,
    JOIN_PATH,
    SAMPLE_ISSUE,
    plan_rehearsal,
)
from bots.demo.waiting import RehearsalError
from bots.sandbox.stack import sandbox_settings
from core.broadcast import IssueFileError, parse_issue_markdown
from core.settings import ConfigError
from storage.migrate import upgrade

#: Seconds the whole rehearsal may take with up to :data:`DEFAULT_ATTENDEES` people, start-up and shut-down included
#: (issue 2 asks for < 1 minute; it takes about 6 s on a 2-core machine). Bigger rooms get
#: :data:`TIMEOUT_PER_EXTRA_ATTENDEE` more seconds per person (measured: ~0.2 s each).
DEMO_TIMEOUT = 55.0
TIMEOUT_PER_EXTRA_ATTENDEE = 0.5
#: File names a demo directory may contain; anything else means it is not ours to wipe.
_DEMO_FILES = frozenset({"otayori.sqlite3", "otayori.sqlite3-wal", "otayori.sqlite3-shm", "otayori.sqlite3-journal",
                         "secret_key", ".otayori-demo"})
_MARKER = ".otayori-demo"
# The loggers that would otherwise fill the screen (uvicorn start/stop, every httpx request, PTB's polling, the
# SMTP sink's per-session lines).
_NOISY_LOGGERS = ("httpx", "httpcore", "uvicorn", "uvicorn.error", "uvicorn.access", "telegram", "telegram.ext",
                  "aiosqlite", "alembic", "linebot", "apscheduler", "mail.log", "aiosmtplib")


@contextmanager
def _quiet_logs() -> Iterator[None]:
    """Raise the noisy libraries' loggers to WARNING for the duration (the report is the output)."""
    previous = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in previous.items():
            logging.getLogger(name).setLevel(level)


class DemoDirectoryError(Exception):
    """The demo directory holds files the demo did not create, so it is not wiped."""


def fresh_directory(directory: Path) -> None:
    """Wipe and recreate ``directory`` — only when it is missing, empty, or holds nothing but demo files.

    Raises :class:`DemoDirectoryError` otherwise (a mistyped ``--directory`` must never delete someone's files).
    """
    if directory.exists():
        if not directory.is_dir():
            raise DemoDirectoryError(f"{directory} exists and is not a directory")
        names = {p.name for p in directory.iterdir()}
        if names and _MARKER not in names and not names <= _DEMO_FILES:
            raise DemoDirectoryError(f"{directory} holds files the demo did not make; choose another --directory")
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / _MARKER).write_text("created by `otayori demo`; wiped on every run\n", encoding="utf-8")


def run_demo(
    directory: Path, attendees: int = DEFAULT_ATTENDEES, *, seed: int = DEFAULT_SEED,
    issue_file: Path | None = None, console: Console | None = None,
) -> int:
    """Rehearse a seminar in ``directory`` (wiped) with ``attendees`` people and print the report and the checks.

    Synchronous: migrates the fresh SQLite database, then ``asyncio.run`` the rehearsal (bounded by
    :data:`DEMO_TIMEOUT` seconds, more for big rooms). ``seed`` fixes every choice of the script; ``issue_file``
    defaults to :data:`~bots.demo.script.SAMPLE_ISSUE`; ``console`` defaults to a rich Console on stdout. Returns the
    exit code: 0 when every check agrees, 1 on any disagreement or failed step, 2 when it cannot start (too few
    attendees, a directory that is not the demo's, an unreadable issue file).
    """
    out = console or Console(highlight=False)
    clock = time.monotonic()
    try:
        plan = plan_rehearsal(attendees, seed)
        draft = parse_issue_markdown((issue_file or SAMPLE_ISSUE).read_text(encoding="utf-8"))
        fresh_directory(directory)
        settings = sandbox_settings(directory, telegram_admin_ids=[DEMO_ADMIN_ID])  # the author's Telegram id
        mail = mail_identity(settings)
    except (ValueError, OSError, IssueFileError, DemoDirectoryError, ConfigError) as exc:
        print_plain(out, f"error: {exc}")
        return 2
    tg_count = sum(1 for p in plan if p.channel == "telegram")
    emails = [p.email for p in plan if p.email is not None]
    print_plain(out, f"otayori demo — セミナーのリハーサル / seminar rehearsal: {attendees} attendees "
             f"(Telegram {tg_count}, LINE {attendees - tg_count}), seed {seed}")
    print_plain(out, f"  メールも追加 / also add email: {len(emails)} (chat {sum(e.via == 'chat' for e in emails)}, "
             f"web {sum(e.via == 'web' for e in emails)}; {sum(not e.confirms for e in emails)} never confirms)")
    print_plain(out, f"作業ディレクトリ / directory: {directory} (fresh SQLite, local emulators and SMTP sink on 127.0.0.1, "
             ".env ignored)")
    print_plain(out, f"キャンペーン / campaign: {CAMPAIGN_CODE} ({CAMPAIGN_LABEL})")
    out.print()
    heading(out, "台本 / the script: what attendees will do")
    print_plain(out, "  質問 question, 登録 subscribe, 同意 consent, 解除 withdraw, ブロック block, メール add email in the chat, "
             f"コード the code from the mail, Web the form at {JOIN_PATH}, リンク the mailed link; (購読後) after "
             "subscribing; ␣ = space")
    out.print(actions_table(plan))
    print_plain(out, "リハーサル中 / rehearsing …")
    rehearsal = Rehearsal(settings=settings, plan=plan, draft=draft)
    budget = DEMO_TIMEOUT + TIMEOUT_PER_EXTRA_ATTENDEE * max(0, attendees - DEFAULT_ATTENDEES)
    with _quiet_logs():
        upgrade(settings.database_url)  # before the event loop: Alembic's env.py calls asyncio.run
        try:
            asyncio.run(asyncio.wait_for(rehearse(rehearsal), timeout=budget))
        except RehearsalError as exc:
            rehearsal.failure = str(exc)
        except TimeoutError:
            rehearsal.failure = f"the rehearsal did not finish within {budget:.0f} s"

    timing = ", ".join(f"{k} {v:.1f} s" for k, v in rehearsal.timings.items())
    if timing:
        print_plain(out, f"  所要時間 / steps: {timing}")
    ok = False
    if (rehearsal.failure is not None or rehearsal.readings is None or rehearsal.result is None
            or rehearsal.desk is None):
        out.print(Text.assemble(Text("✗", style="bold red"),
                                f" リハーサル失敗 / a step failed: {rehearsal.failure or 'nothing observed'}"),
                  soft_wrap=True)
    else:
        result = rehearsal.result
        enqueued = ", ".join(f"{c} {n}" for c, n in result.enqueued.items())
        print_plain(out, f"配信 / broadcast: issue {result.issue_id}「{draft.title}」 → {enqueued}")
        for notice in result.summary.notices:
            print_plain(out, f"  {notice.channel}: stopped ({notice.reason}); {notice.deferred} deferred")
        out.print()
        print_report(out, rehearsal, mail)
        print_desk(out, rehearsal.desk)
        checks = verify(expectation_for(plan, draft.title, mail), rehearsal.readings.observation)
        checks += verify_desk(rehearsal.desk.expectation, rehearsal.desk.observation)
        print_checks(out, checks)
        ok = all(c.ok for c in checks)

    out.print()
    print_plain(out, f"データベース / database: {settings.database_url}")
    print_plain(out, f"  見るには / inspect: OTAYORI_DATABASE_URL={settings.database_url} otayori consents export")
    print_plain(out, f"                      OTAYORI_DATABASE_URL={settings.database_url} otayori audit")
    verdict = "すべて一致 / all checks agree" if ok else "不一致あり / disagreement found"
    print_plain(out, f"{verdict} — {time.monotonic() - clock:.1f} s")
    return 0 if ok else 1
