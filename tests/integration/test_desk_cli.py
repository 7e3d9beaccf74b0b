"""The author's desk from the command line and in ``run`` (issue 5 item 9): ``broadcast --at/--topic/--channels/--test``,
``issues list|show|cancel|send``, ``admin-log``, and scheduled issues started by ``run``'s background task — through
real subprocesses, and against the Telegram and LINE emulators with the real SDK clients where something is sent.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo
from pathlib import Path

from bots.app import dispatch_forever, open_runtime
from bots.sandbox.stack import running_stack, sandbox_settings
from bots.scheduling import send_due_forever
from core.admins import Actor
from core.broadcast import IssueDraft, create_issue
from core.issues import schedule_issue
from storage.migrate import upgrade
from storage.types import utcnow
from tests.conftest import TEST_SECRET
from tests.integration.test_cli import (
    cli_env,
    count_rows,
    db_url,
    env_from,
    gather_limited,
    line_subscribe,
    otayori,
    telegram_subscribe,
)

ISSUE_MD = "# 12月のイベント情報\n\n12月5日(金)19時〜 **オンライン勉強会**を開催します。\n"


def offline_env(database: Path, **more: object) -> dict[str, str]:
    """Settings for commands that do not reach a platform: Telegram "on" with an unreachable API."""
    return cli_env(database_url=db_url(database), secret_key=TEST_SECRET, sender_name="山田IT事務所",
                   telegram_bot_token="123:ABC", telegram_api_url="http://127.0.0.1:9/bot", **more)


def rows(database: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(database) as conn:
        return conn.execute(sql).fetchall()


async def test_schedule_list_show_cancel_and_the_admin_log(tmp_path: Path):
    database = tmp_path / "otayori.sqlite3"
    upgrade(db_url(database))
    (tmp_path / "issue.md").write_text(ISSUE_MD, encoding="utf-8")
    env = offline_env(database)
    # Full-width digits and an ideographic space, in the configured zone (Asia/Tokyo).
    day = (datetime.now(ZoneInfo("Asia/Tokyo")) + timedelta(days=60)).date().isoformat()
    when = day.translate(str.maketrans("0123456789-", "０１２３４５６７８９－")) + "\u3000０９：００"
    utc = datetime.fromisoformat(f"{day}T09:00+09:00").astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    scheduled = await otayori("broadcast", "issue.md", "--at", when, "--topic", "イベント情報", "--channels",
                              "telegram", "--yes", cwd=tmp_path, env=env)
    assert scheduled.code == 0, scheduled
    issue_id = int(scheduled.out.strip().splitlines()[-1])
    assert f"scheduled for {day} 09:00 (Asia/Tokyo)" in " ".join(scheduled.out.split())
    assert "topic: イベント情報" in scheduled.out
    assert rows(database, "SELECT status, topic, channels, scheduled_at FROM issue") == [
        ("scheduled", "events", '["telegram"]', utc)]
    assert count_rows(database, "delivery") == 0

    refusals = {
        "past": (["--at", "2020-01-01 09:00"], "in the past"),
        "malformed": (["--at", "明日の朝"], "2026-12-01 09:00"),
        "unknown topic": (["--topic", "sports"], "it (IT関連情報)"),
        "unknown channel": (["--channels", "telegram,fax"], "fax"),
        "channel off": (["--channels", "line"], "OTAYORI_LINE_CHANNEL_SECRET"),
        "test and at": (["--test", "--at", "+1h"], "cannot be combined"),
        "test without admins": (["--test"], "OTAYORI_TELEGRAM_ADMIN_IDS"),
    }
    results = await gather_limited(*(otayori("broadcast", "issue.md", *args, "--yes", cwd=tmp_path, env=env)
                                     for args, _ in refusals.values()))
    for (name, (_, says)), result in zip(refusals.items(), results, strict=True):
        assert result.code == 2 and len(result.err_lines) == 1, (name, result)
        assert says in result.err, (name, result.err)
    assert count_rows(database, "issue") == 1

    listed, shown = await gather_limited(otayori("issues", "list", cwd=tmp_path, env=env),
                                         otayori("issues", "show", str(issue_id), cwd=tmp_path, env=env))
    assert listed.code == 0 and "12月のイベント情報" in listed.out and "scheduled" in listed.out, listed
    assert f"{day} 09:00" in listed.out
    assert shown.code == 0 and "events (イベント情報)" in shown.out and "telegram" in shown.out, shown

    cancelled = await otayori("issues", "cancel", str(issue_id), "--yes", cwd=tmp_path, env=env)
    assert cancelled.code == 0 and "was scheduled" in cancelled.out, cancelled
    again, missing, declined = await gather_limited(
        otayori("issues", "cancel", str(issue_id), "--yes", cwd=tmp_path, env=env),
        otayori("issues", "cancel", "999", "--yes", cwd=tmp_path, env=env),
        otayori("issues", "send", str(issue_id), "--yes", cwd=tmp_path, env=env),
    )
    assert again.code == 1 and len(again.err_lines) == 1 and "cancelled already" in again.err, again
    assert missing.code == 1 and "no issue 999" in missing.err, missing
    assert declined.code == 1 and "cancelled" in declined.err, declined
    assert rows(database, "SELECT status FROM issue") == [("cancelled",)]

    log = await otayori("admin-log", cwd=tmp_path, env=env)
    assert log.code == 0, log
    lines = [line for line in log.out.splitlines() if "  cli:" in line]
    assert [line.split("  ")[2] for line in lines] == ["issue.cancel", "issue.schedule"], log.out
    assert all(f"issue {issue_id}" in line for line in lines)
    assert "from: scheduled" in lines[0]


async def test_test_send_topic_filter_and_send_of_the_kept_draft(tmp_path: Path):
    async with running_stack(sandbox_settings(tmp_path / "stack")) as stack:
        tg, line = stack.telegram, stack.line
        admin = tg.add_user(first_name="著者").id
        readers = [tg.add_user(first_name=f"読者{i}").id for i in range(2)]
        line_admin = await line.add_user(display_name="著者")
        line_reader = await line.add_user(display_name="読者")
        for user in (admin, *readers):
            await telegram_subscribe(stack, user)
        for user in (line_admin, line_reader):
            await line_subscribe(stack, user)
        # readers[0] wants only IT news; the others chose nothing (= every topic).
        tg.send_text(readers[0], "/topics")  # the Telegram command form
        menu = (await tg.wait_for_messages(readers[0], 3))[-1]
        update_id = tg.press_button(readers[0], menu.message_id, "topic:it")
        await tg.wait_for_callback_answer(update_id)
        assert "いまの設定: IT関連情報" in (await tg.wait_for_messages(readers[0], 4))[-1].text

        issue_file = tmp_path / "issue.md"
        issue_file.write_text(ISSUE_MD, encoding="utf-8")
        env = env_from(stack.settings.model_copy(update={"telegram_admin_ids": [admin],
                                                         "line_admin_user_ids": [line_admin]}))
        before = {u: len(tg.messages_to(u)) for u in (admin, *readers)}
        before.update({u: len(line.messages_to(u)) for u in (line_admin, line_reader)})

        test = await otayori("broadcast", str(issue_file), "--test", "--topic", "events", "--yes",
                             cwd=tmp_path, env=env)
        assert test.code == 0, test
        draft_id = int(test.out.strip().splitlines()[-1])
        assert "test sent as issue" in test.out and f"the draft is issue {draft_id}" in " ".join(test.out.split())
        assert len(tg.messages_to(admin)) == before[admin] + 1
        assert "オンライン勉強会" in tg.messages_to(admin)[-1].text
        assert len(line.messages_to(line_admin)) == before[line_admin] + 1
        assert all(len(tg.messages_to(u)) == before[u] for u in readers)
        assert len(line.messages_to(line_reader)) == before[line_reader]

        # The kept draft (topic "events") goes to everyone who wants events: not readers[0].
        sent = await otayori("issues", "send", str(draft_id), "--yes", cwd=tmp_path, env=env)
        assert sent.code == 0, sent
        assert [len(tg.messages_to(u)) - before[u] for u in (admin, *readers)] == [2, 0, 1]
        assert [len(line.messages_to(u)) - before[u] for u in (line_admin, line_reader)] == [2, 1]
        database = stack.settings.sqlite_path()
        assert rows(database, f"SELECT status, topic FROM issue WHERE id = {draft_id}") == [("sent", "events")]
        assert rows(database, "SELECT count(*) FROM issue WHERE test_of IS NOT NULL") == [(1,)]

        twice = await otayori("issues", "send", str(draft_id), "--yes", cwd=tmp_path, env=env)
        assert twice.code == 1 and len(twice.err_lines) == 1 and "sent" in twice.err, twice
        # Without --yes the refusal comes first: no "send now?" question for an issue that cannot be sent.
        asked = await otayori("issues", "send", str(draft_id), cwd=tmp_path, env=env, stdin=b"y\n")
        assert asked.code == 1 and "send now" not in asked.out + asked.err and "sent" in asked.err, asked
        assert len(asked.err_lines) == 1, asked
        cancel = await otayori("issues", "cancel", str(draft_id), "--yes", cwd=tmp_path, env=env)
        assert cancel.code == 1 and "nothing left to cancel" in cancel.err, cancel
        log = await otayori("admin-log", cwd=tmp_path, env=env)
        actions = [line.split("  ")[2] for line in log.out.splitlines() if "  cli:" in line]
        assert actions == ["issue.send", "issue.test_send"], log.out


async def wait_until(predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    """Poll ``predicate()`` every 0.1 s until true; fail after ``timeout`` seconds."""
    for _ in range(int(timeout / 0.1)):
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("timed out")


async def test_run_starts_a_scheduled_issue_once_after_a_restart(tmp_path: Path):
    async with running_stack(sandbox_settings(tmp_path / "stack")) as stack:
        tg = stack.telegram
        users = [tg.add_user(first_name=f"参加者{i}").id for i in range(2)]
        for user in users:
            await telegram_subscribe(stack, user)
        before = {u: len(tg.messages_to(u)) for u in users}
        issue = await create_issue(stack.runtime.db, IssueDraft("予約号", "予約して送る本文です。"),
                                   channels=["telegram"])
        due = utcnow() + timedelta(seconds=1.5)
        await schedule_issue(stack.runtime.db, issue.id, due, actor=Actor("telegram", str(users[0])))

        # The first process stops before the time comes.
        stop_first = asyncio.Event()
        first = asyncio.create_task(send_due_forever(stack.runtime, stop_first, interval=0.2))
        await asyncio.sleep(0.5)
        stop_first.set()
        await first
        while utcnow() < due + timedelta(seconds=0.5):
            await asyncio.sleep(0.1)
        assert all(len(tg.messages_to(u)) == before[u] for u in users)  # nobody sent it while "down"

        # After the time: a restarted process (a new Runtime and Database on the same file) and, at once, the old
        # one coming back too; both check for due issues and dispatch.
        async with open_runtime(stack.settings) as restarted:
            stop = asyncio.Event()
            loops = [asyncio.create_task(send_due_forever(runtime, stop, interval=0.2))
                     for runtime in (restarted, stack.runtime)]
            loops += [asyncio.create_task(dispatch_forever(runtime, stop, interval=0.2))
                      for runtime in (restarted, stack.runtime)]
            try:
                await wait_until(lambda: all(len(tg.messages_to(u)) > before[u] for u in users))
                await asyncio.sleep(1.0)  # a few more rounds of both loops: nothing more may arrive
            finally:
                stop.set()
                await asyncio.gather(*loops)
        assert [len(tg.messages_to(u)) - before[u] for u in users] == [1, 1]
        assert "予約号" in tg.messages_to(users[0])[-1].text
        database = stack.settings.sqlite_path()
        assert rows(database, f"SELECT status FROM issue WHERE id = {issue.id}") == [("sent",)]
        assert rows(database, f"SELECT count(*) FROM delivery WHERE issue_id = {issue.id}") == [(2,)]
