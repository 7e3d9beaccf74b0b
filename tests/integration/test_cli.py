"""The ``otayori`` command line through real subprocesses (DESIGN.md "Outside contract" -> CLI, Consent export).

Every command runs with ``cwd`` = the test's own directory (so no ``.env`` is read unless a test writes one), an
environment without inherited ``OTAYORI_*`` variables, and a fresh SQLite file.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer

from bots.cli import app
from bots.sandbox.stack import running_stack, sandbox_settings
from core.audit import export_consents
from core.settings import Settings
from core.subscriptions import ChatContext, SubscriptionService
from tests.conftest import TEST_SECRET

_SCRIPT = Path(sys.executable).with_name("otayori")
OTAYORI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "bots.cli"]
TIMEOUT = 60.0  # seconds; a bound on every subprocess, far above what any of them needs

EXPORT_FIELDS = [
    "event_id", "occurred_at", "subscriber_id", "endpoint_id", "channel", "address", "action", "basis", "source",
    "campaign", "topics", "wording_version", "wording_sha256", "evidence", "address_hmac", "prev_hash", "hash",
]


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


def cli_env(**settings: object) -> dict[str, str]:
    """The parent environment minus every ``OTAYORI_*`` (and terminal size) variable, plus ``settings``."""
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith("OTAYORI_") and k not in ("COLUMNS", "LINES")}
    env.update({f"OTAYORI_{name.upper()}": str(value) for name, value in settings.items()})
    return env


def env_from(settings: Settings) -> dict[str, str]:
    """Environment variables that reproduce ``settings`` in another process (lists comma-joined)."""
    values: dict[str, object] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, list):
            value = ",".join(str(item) for item in value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        values[name] = value
    return cli_env(**values)


async def otayori(*args: str, cwd: Path, env: dict[str, str], stdin: bytes | None = None) -> Result:
    """Run ``otayori ARGS`` as a subprocess without blocking the event loop (emulators may be serving in it)."""
    proc = await asyncio.create_subprocess_exec(
        *OTAYORI, *args, cwd=cwd, env=env,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode("utf-8"), err.decode("utf-8"))


async def gather_limited(*coroutines: Any, limit: int = 4) -> list[Any]:
    """``asyncio.gather`` with at most ``limit`` running at once (each is a Python process)."""
    gate = asyncio.Semaphore(limit)

    async def one(coroutine: Any) -> Any:
        async with gate:
            return await coroutine

    return list(await asyncio.gather(*(one(c) for c in coroutines)))


def db_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def count_rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


# ---- help ------------------------------------------------------------------------------------------------------------

def command_paths() -> list[list[str]]:
    """Every command and group path of the Typer app, e.g. ``[[], ["run"], ["db"], ["db", "upgrade"], …]``."""
    paths: list[list[str]] = []

    def walk(command: Any, path: list[str]) -> None:
        paths.append(path)
        # a group has sub-commands (Typer ships its own copy of click, so no isinstance check against click's Group)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


async def test_every_command_has_help(tmp_path: Path):
    paths = command_paths()
    names = {" ".join(p) for p in paths}
    assert {"run", "demo", "db upgrade", "campaign add", "campaign list", "broadcast", "consents export", "audit",
            "deliveries show"} <= names
    env = cli_env()
    results = await gather_limited(*(otayori(*path, "--help", cwd=tmp_path, env=env) for path in paths))
    for path, result in zip(paths, results, strict=True):
        assert result.code == 0, (path, result)
        usage = " ".join(result.out.split())
        assert "Usage:" in usage and " ".join(path) in usage.split("Usage:", 1)[1][:80], (path, result.out)
    assert not (tmp_path / "var").exists()  # --help touches nothing


# ---- run: configuration errors -------------------------------------------------------------------------------------

RUN_CASES = {
    # No channel at all is not an error: `run` opens the rehearsal sandbox (tests/integration/test_sandbox_run.py).
    "LINE secret only": ({"line_channel_secret": "0123456789abcdef", "secret_key": TEST_SECRET,
                          "sender_name": "山田IT事務所"}, ("OTAYORI_LINE_CHANNEL_ACCESS_TOKEN",)),
    "placeholder key": ({"telegram_bot_token": "123:ABC", "secret_key": "change-me", "sender_name": "山田IT事務所"},
                        ("OTAYORI_SECRET_KEY",)),
    "no sender": ({"telegram_bot_token": "123:ABC", "secret_key": TEST_SECRET}, ("OTAYORI_SENDER_NAME",)),
    "bad port": ({"telegram_bot_token": "123:ABC", "secret_key": TEST_SECRET, "sender_name": "山田IT事務所",
                  "http_port": "八千"}, ("OTAYORI_HTTP_PORT",)),
    # Webhooks need https (LINE is always one); the rehearsal's loopback exemption does not cover real platforms.
    "LINE over http": ({"line_channel_secret": "0123456789abcdef", "line_channel_access_token": "tok",
                        "secret_key": TEST_SECRET, "sender_name": "山田IT事務所",
                        "public_url": "http://news.example.jp"}, ("OTAYORI_PUBLIC_URL",)),
    "Telegram webhook over http": ({"telegram_bot_token": "123:ABC", "telegram_mode": "webhook",
                                    "telegram_webhook_secret": "s3cret_token", "secret_key": TEST_SECRET,
                                    "sender_name": "山田IT事務所"}, ("OTAYORI_PUBLIC_URL",)),
}


async def test_run_refuses_bad_configuration_in_one_line(tmp_path: Path):
    cases = list(RUN_CASES.items())
    dotenv_dir = tmp_path / "with-dotenv"
    dotenv_dir.mkdir()
    (dotenv_dir / ".env").write_text("# a LINE secret without its token\nOTAYORI_LINE_CHANNEL_SECRET=abc\n",
                                     encoding="utf-8")
    *results, from_dotenv = await gather_limited(
        *(otayori("run", cwd=tmp_path, env=cli_env(database_url=db_url(tmp_path / f"{i}.sqlite3"), **values))
          for i, (_name, (values, _named)) in enumerate(cases)),
        otayori("run", cwd=dotenv_dir, env=cli_env()),  # `run` reads .env from the working directory
    )
    for (name, (_values, named)), result in zip(cases, results, strict=True):
        assert result.code == 2, (name, result)
        assert len(result.err_lines) == 1, (name, result.err)
        assert all(setting in result.err for setting in named), (name, result.err)
        assert result.out == "", (name, result.out)
    assert not list(tmp_path.glob("*.sqlite3"))  # refused before touching the database
    assert from_dotenv.code == 2 and len(from_dotenv.err_lines) == 1, from_dotenv
    assert "OTAYORI_LINE_CHANNEL_ACCESS_TOKEN" in from_dotenv.err


# ---- db upgrade --------------------------------------------------------------------------------------------------------

async def test_db_upgrade_creates_var_and_the_file_and_is_idempotent(tmp_path: Path):
    env = cli_env()  # the default URL: sqlite+aiosqlite:///var/otayori.sqlite3, relative to the working directory
    assert not (tmp_path / "var").exists()
    first = await otayori("db", "upgrade", cwd=tmp_path, env=env)
    assert first.code == 0, first
    database = tmp_path / "var" / "otayori.sqlite3"
    assert database.is_file()
    with sqlite3.connect(database) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert {"subscriber", "endpoint", "consent_event", "issue", "delivery", "campaign"} <= tables
    second = await otayori("db", "upgrade", cwd=tmp_path, env=env)
    assert second.code == 0, second
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == version
    assert len(version) == 1


# ---- campaigns ---------------------------------------------------------------------------------------------------------

async def test_campaign_add_list_and_the_code_rule(tmp_path: Path):
    env = cli_env(database_url=db_url(tmp_path / "otayori.sqlite3"))
    added = await otayori("campaign", "add", "seminar-2026-12", "--label", "12月 東京セミナー", cwd=tmp_path, env=env)
    assert added.code == 0, added
    listed = await otayori("campaign", "list", cwd=tmp_path, env=env)
    assert listed.code == 0, listed
    assert "seminar-2026-12" in listed.out and "12月 東京セミナー" in listed.out
    bad = ["seminar 2026", "東京セミナー", "a" * 65]
    *refused, duplicate = await gather_limited(
        *(otayori("campaign", "add", code, cwd=tmp_path, env=env) for code in bad),
        otayori("campaign", "add", "SEMINAR-2026-12", "--label", "重複", cwd=tmp_path, env=env),
    )
    for code, result in zip(bad, refused, strict=True):
        assert result.code != 0, (code, result)
        assert len(result.err_lines) == 1 and "A-Z a-z 0-9 _ -" in result.err, (code, result.err)
    assert duplicate.code != 0 and len(duplicate.err_lines) == 1 and "exists" in duplicate.err, duplicate
    with sqlite3.connect(tmp_path / "otayori.sqlite3") as conn:
        codes = sorted(row[0] for row in conn.execute("SELECT code FROM campaign"))
        labels = [row[0] for row in conn.execute("SELECT label FROM campaign WHERE code = 'seminar-2026-12'")]
    assert codes == ["seminar-2026-12"]
    assert labels == ["12月 東京セミナー"]


# ---- broadcast -------------------------------------------------------------------------------------------------------

ISSUE_MD = """# 12月のIT通信

## パスワード管理のコツ

**二段階認証**を今日から有効にしましょう。

## 勉強会のご案内

12月5日(金)19時〜 オンラインで開催します。
"""


async def telegram_subscribe(stack, user_id: int) -> None:
    tg = stack.telegram
    tg.send_text(user_id, "登録")
    terms = (await tg.wait_for_messages(user_id, 1))[-1]
    update_id = tg.press_button(user_id, terms.message_id, terms.buttons[0]["callback_data"])
    await tg.wait_for_callback_answer(update_id)
    assert "ご登録ありがとうございます" in (await tg.wait_for_messages(user_id, 2))[-1].text


async def line_subscribe(stack, user: str) -> None:
    line = stack.line
    assert (await line.follow(user))[0] == 200
    greeting = (await line.wait_for_messages(user, 1))[-1]
    assert (await line.postback(user, greeting["quickReply"]["items"][0]["action"]["data"]))[0] == 200
    assert "ご登録ありがとうございます" in (await line.wait_for_messages(user, 2))[-1]["text"]


def parse_report(text: str) -> dict[tuple[str, str], int]:
    """``deliveries show``'s table rows as ``{(channel, status): count}``."""
    rows: dict[tuple[str, str], int] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]
        if len(cells) == 3 and cells[2].isdigit():
            rows[(cells[0], cells[1])] = int(cells[2])
    return rows


async def test_broadcast_end_to_end_from_a_separate_process(tmp_path: Path):
    async with running_stack(sandbox_settings(tmp_path / "stack")) as stack:
        tg, line = stack.telegram, stack.line
        tg_users = [tg.add_user(first_name=f"参加者{i}").id for i in range(2)]
        line_users = [await line.add_user(display_name=f"参加者{i}") for i in range(2)]
        stopper = tg.add_user(first_name="解除さん").id
        for user in [*tg_users, stopper]:
            await telegram_subscribe(stack, user)
        for user in line_users:
            await line_subscribe(stack, user)
        tg.send_text(stopper, "解除")
        assert "停止" in (await tg.wait_for_messages(stopper, 3))[-1].text
        issue_file = tmp_path / "issue.md"
        issue_file.write_text(ISSUE_MD, encoding="utf-8")
        env = env_from(stack.settings)
        database = stack.settings.sqlite_path()
        assert database is not None
        sent_before = {u: len(tg.messages_to(u)) for u in [*tg_users, stopper]}
        sent_before.update({u: len(line.messages_to(u)) for u in line_users})

        # Without --yes the author is asked; "n" sends nothing and stores nothing.
        declined = await otayori("broadcast", str(issue_file), cwd=tmp_path, env=env, stdin=b"n\n")
        assert declined.code != 0, declined
        assert "12月のIT通信" in declined.out  # the preview names the issue and the recipients
        assert count_rows(database, "issue") == 0 and count_rows(database, "delivery") == 0
        assert len(declined.err_lines) == 1 and "cancel" in declined.err, declined.err
        sent_now = {u: len(tg.messages_to(u)) for u in [*tg_users, stopper]}
        sent_now.update({u: len(line.messages_to(u)) for u in line_users})
        assert sent_now == sent_before

        calls_before = len(tg.calls)
        sent = await otayori("broadcast", str(issue_file), "--yes", cwd=tmp_path, env=env)
        during = list(tg.calls)[calls_before:]
        assert sent.code == 0, sent
        issue_id = sent.out.strip().splitlines()[-1]
        assert issue_id.isdigit(), sent.out
        # one progress bar per channel, each ending complete (rich prints the final state when not a terminal)
        assert re.search(r"line\b.*\b2/2\b", sent.out) and re.search(r"telegram\b.*\b2/2\b", sent.out), sent.out
        for user in tg_users:
            messages = tg.messages_to(user)
            assert len(messages) == sent_before[user] + 1
            assert "12月のIT通信" in messages[-1].text and "二段階認証" in messages[-1].text
            assert "解除" in messages[-1].text.splitlines()[-1]
        for user in line_users:
            texts = line.texts_to(user)
            assert len(line.messages_to(user)) == sent_before[user] + 1
            assert "12月のIT通信" in texts[-1] and "勉強会のご案内" in texts[-1] and "解除" in texts[-1]
        assert len(tg.messages_to(stopper)) == sent_before[stopper]  # 解除 is honoured
        multicasts = [r for r in line.requests if r.path.endswith("/multicast")]
        assert len(multicasts) == 1 and multicasts[0].retry_key
        # A bare Bot, no polling: besides the running bot's own getUpdates, only getMe and the sends happened, and no
        # getUpdates was answered 409 Conflict (two pollers) — the bot that `run` operates keeps its updates.
        cli_methods = [c.method for c in during if c.method != "getUpdates"]
        assert set(cli_methods) <= {"getMe", "sendMessage"} and cli_methods.count("sendMessage") == 2, cli_methods
        assert all(c.status == 200 for c in during), [(c.method, c.status) for c in during]

    # the emulators are stopped: reading the report needs only the database
    shown = await otayori("deliveries", "show", issue_id, cwd=tmp_path, env=env)
    assert shown.code == 0, shown
    assert parse_report(shown.out) == {("line", "sent"): 2, ("telegram", "sent"): 2}, shown.out


# A blank file (a stray U+3000 included) has no title; a heading saved with a BOM (Windows Notepad) has no body.
UNUSABLE_FILES = {"blank.md": ("\n\u3000\n  \n", "title"), "title-only.md": ("\ufeff# タイトルだけ\n\n", "body")}


async def test_broadcast_of_an_unusable_file_creates_nothing(tmp_path: Path):
    from storage.migrate import upgrade

    database = tmp_path / "otayori.sqlite3"
    upgrade(db_url(database))
    for name, (content, _complaint) in UNUSABLE_FILES.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
    env = cli_env(database_url=db_url(database), secret_key=TEST_SECRET, sender_name="山田IT事務所",
                  telegram_bot_token="123:ABC", telegram_api_url="http://127.0.0.1:9/bot")
    results = await gather_limited(*(otayori("broadcast", name, "--yes", cwd=tmp_path, env=env)
                                     for name in UNUSABLE_FILES))
    for (name, (_content, complaint)), result in zip(UNUSABLE_FILES.items(), results, strict=True):
        assert result.code != 0, (name, result)
        assert len(result.err_lines) == 1 and complaint in result.err and name in result.err, (name, result.err)
    assert count_rows(database, "issue") == 0


# ---- consents export and audit -------------------------------------------------------------------------------------

async def small_ledger(db, settings) -> None:
    """Two people on Telegram, one on LINE; one withdraws; Japanese and emoji in the evidence."""
    service = SubscriptionService(db, settings)
    for channel, address in (("telegram", "1001"), ("line", "U" + "b" * 32), ("telegram", "1002")):
        ctx = ChatContext(channel=channel, address=address, evidence={"message_id": "m1", "note": "東京😀"})
        terms = await service.handle_text(ctx, "登録")
        await service.handle_button(ctx, terms[0].buttons[0].data)
    await service.handle_text(ChatContext(channel="telegram", address="1002", evidence={"update_id": 9}), "解除")


async def test_consents_export_jsonl_and_csv(tmp_path: Path, db, settings):
    await small_ledger(db, settings)
    expected = io.StringIO()
    await export_consents(db, expected, "jsonl")
    env = cli_env(database_url=settings.database_url)
    jsonl, to_csv, csv_cp932, xml = await gather_limited(
        otayori("consents", "export", "--format", "jsonl", cwd=tmp_path, env=env),
        otayori("consents", "export", "--format", "csv", "--out", "f.csv", cwd=tmp_path, env=env),
        # a terminal whose locale is not UTF-8 (Japanese Windows: cp932, which has no emoji) still gets UTF-8
        otayori("consents", "export", "--format", "csv", cwd=tmp_path, env={**env, "PYTHONIOENCODING": "cp932"}),
        otayori("consents", "export", "--format", "xml", cwd=tmp_path, env=env),
    )
    assert jsonl.code == 0, jsonl
    records = [json.loads(line) for line in jsonl.out.splitlines()]
    assert [r["action"] for r in records] == ["grant", "grant", "grant", "withdraw"]
    for record in records:
        assert set(record) == set(EXPORT_FIELDS)
        assert isinstance(record["evidence"], dict)
    assert records[0]["evidence"]["note"] == "東京😀" and records[0]["address"] == "1001"
    assert jsonl.out == expected.getvalue()

    assert to_csv.code == 0, to_csv
    with (tmp_path / "f.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == EXPORT_FIELDS
        rows = list(reader)
    assert len(rows) == len(records)
    for row, record in zip(rows, records, strict=True):
        assert json.loads(row["evidence"]) == record["evidence"]
        assert row["hash"] == record["hash"] and row["occurred_at"] == record["occurred_at"]
        assert int(row["event_id"]) == record["event_id"] and row["address"] == record["address"]
    assert "4 records" in to_csv.err and to_csv.out == ""
    assert csv_cp932.code == 0, csv_cp932
    assert csv_cp932.out.replace("\r\n", "\n") == (tmp_path / "f.csv").read_text(encoding="utf-8")

    assert xml.code == 2 and len(xml.err_lines) == 1 and "jsonl" in xml.err, xml


async def test_audit_passes_then_fails_after_tampering(tmp_path: Path, db, settings):
    await small_ledger(db, settings)
    await db.dispose()
    env = cli_env(database_url=settings.database_url)
    intact = await otayori("audit", cwd=tmp_path, env=env)
    assert intact.code == 0, intact
    assert "4 ledger events" in intact.out and "OK" in intact.out
    database = settings.sqlite_path()
    assert database is not None
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE consent_event SET source = 'web' WHERE id = 2")
    tampered = await otayori("audit", cwd=tmp_path, env=env)
    assert tampered.code == 1, tampered
    assert re.search(r"ledger event 2\b", tampered.out), tampered.out
    assert "ledger event 1" not in tampered.out and "ledger event 3" not in tampered.out


def test_usage_errors_are_one_line_and_exit_2(tmp_path):
    """Typer's own usage errors (missing file, unknown command, bad integer) follow the one-line rule too."""
    import subprocess

    from pathlib import Path as _Path

    otayori = _Path(__file__).resolve().parents[2] / ".venv" / "bin" / "otayori"
    for args in (["broadcast", "missing.md"], ["nonsense"], ["deliveries", "show", "abc"]):
        done = subprocess.run([str(otayori), *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: "), (args, done.stderr)


def test_read_only_commands_refuse_a_missing_database(tmp_path):
    """A mistyped database path must not look like an empty, clean ledger (nor be created)."""
    import os
    import subprocess

    from pathlib import Path as _Path

    otayori = _Path(__file__).resolve().parents[2] / ".venv" / "bin" / "otayori"
    missing = tmp_path / "nowhere" / "x.sqlite3"
    env = {**os.environ, "OTAYORI_DATABASE_URL": f"sqlite+aiosqlite:///{missing}"}
    for args in (["audit"], ["consents", "export"], ["campaign", "list"], ["deliveries", "show", "1"]):
        done = subprocess.run([str(otayori), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and done.stderr.startswith("error: no database at"), (args, done.stderr)
        assert done.stderr.count("\n") == 1
    assert not missing.exists() and not missing.parent.exists()
