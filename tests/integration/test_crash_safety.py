"""Crash safety of the delivery outbox (issue 4 item 4; DESIGN.md "Delivery: an outbox").

A broadcast runs in a real subprocess (``otayori broadcast FILE.md --yes``) against the Telegram and LINE emulators,
which keep serving in this test's event loop on 127.0.0.1. The test kills it with SIGKILL at a chosen point, then:

1. checks what the dead process left: no request went out for a delivery without a committed attempt mark, nobody
   got the issue twice;
2. shows that a dispatcher started while the dead one's leases still run sends nothing (the leases hold);
3. restarts dispatching with a dispatcher whose clock is past every lease (a real restart would wait 5 minutes), with
   the real senders of :func:`bots.app.open_runtime`;
4. checks that every delivery ended ``sent`` or ``uncertain`` (nothing ``pending``/``sending``, nothing lost), that
   every LINE user got the issue exactly once (a repeated multicast carries the same ``X-Line-Retry-Key``: 409 =
   sent), that Telegram deliveries claimed but never attempted went back to ``pending`` and were sent once, and that
   those in flight at the kill became ``uncertain`` and were not sent again;
5. ``otayori deliveries show`` reports the uncertain ones; ``otayori deliveries retry-uncertain`` sends each of those
   chats exactly one more copy and nobody else anything; ``otayori audit`` passes.

The subscribers (40 Telegram; 520 LINE: a full multicast of 500 and a second of 20) are created once per module
through the subscription use cases (about 25 ms each, which is why there are not more); every test works on its own
copy of that SQLite file and on fresh emulators.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import sqlite3
import sys
import threading
from collections import Counter
from contextlib import closing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bots.app import open_runtime
from bots.sandbox.line_api import LineEmulator
from bots.sandbox.telegram_api import TelegramEmulator
from core.dispatcher import Dispatcher, DispatchPolicy
from core.settings import Settings
from core.subscriptions import ChatContext, SubscriptionService
from storage.database import Database
from storage.migrate import upgrade
from storage.types import utcnow

_SCRIPT = Path(sys.executable).with_name("otayori")
OTAYORI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "bots.cli"]
CLI_TIMEOUT = 60.0  # seconds: a bound on every CLI subprocess, far above what any of them needs
KILL_POINT_TIMEOUT = 30.0  # seconds: the broadcast reaches its kill point well within this
POLL = 0.01  # seconds between looks at the emulators / the database while waiting for a kill point

TELEGRAM_TOKEN = "7000000001:" + "C" * 35
LINE_TOKEN = "crash-test-line-access-token"
LINE_SECRET = "crash-test-line-channel-secret"
TELEGRAM_CHATS = [5_100_000_001 + i for i in range(40)]
LINE_USERS = [f"U{0xC0FFEE00 + i:032x}" for i in range(520)]  # LINE user ids: "U" + 32 hex digits
LINE_BATCH = 500  # recipients per multicast (LINE's maximum; LineSender.max_recipients)
#: Telegram messages/s of the killed broadcast: slow, so that kills land mid-Telegram deterministically (40 chats take
#: about 8 s). The restart and retry-uncertain send at full speed.
SLOW_TELEGRAM_RATE = 5
FAST_TELEGRAM_RATE = 40
#: A clock this far ahead is past every lease the dead process held (claims and channel leases).
PAST_THE_LEASES = timedelta(seconds=DispatchPolicy().lease + DispatchPolicy().channel_lease + 10)

TITLE = "12月のIT通信 停電対策号"
ISSUE_MD = f"""# {TITLE}

## 停電に備えて

**UPS**の電池は３年で交換を。　テーブルタップの埃も確認しましょう 🔌

勉強会: 12月5日(金)19時〜
"""

KILL_POINTS = {
    "before_any_send": "the deliveries are enqueued, but another dispatcher holds both channels: nothing was sent",
    "mid_telegram_line_accepted": "12 of 40 Telegram messages arrived (up to 8 more in flight, the rest claimed but "
                                  "not attempted) and LINE accepted the first multicast, whose answer is held",
    "line_not_accepted": "the first multicast (its retry key committed) has fully reached LINE, which holds it "
                         "unprocessed",
}


# ---- the seeded database (once per module) --------------------------------------------------------------------------

@dataclass(frozen=True)
class Seed:
    """A migrated SQLite file with every subscriber, and the secret key it was made with."""

    database: Path
    secret_key: str


def base_settings(database: Path, secret_key: str, **overrides: Any) -> Settings:
    """Telegram and LINE on (email off), no ``.env``; emulator URLs and rates come in ``overrides``."""
    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{database}",
        "secret_key": secret_key,
        "sender_name": "山田IT事務所",
        "telegram_bot_token": TELEGRAM_TOKEN,
        "line_channel_secret": LINE_SECRET,
        "line_channel_access_token": LINE_TOKEN,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


async def _subscribe_everyone(settings: Settings) -> None:
    db = Database(settings.database_url)
    service = SubscriptionService(db, settings)
    try:
        for channel, address in [*(("telegram", str(c)) for c in TELEGRAM_CHATS), *(("line", u) for u in LINE_USERS)]:
            ctx = ChatContext(channel=channel, address=address)
            await service.handle_text(ctx, "登録")
            replies = await service.handle_text(ctx, "同意")
            assert replies[0].kind == "subscribed", (address, replies)
    finally:
        await db.dispose()


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Seed:
    directory = tmp_path_factory.mktemp("crash-seed")
    secret_key = secrets.token_hex(32)  # hex: never mistaken for a placeholder ("xxxx")
    database = directory / "otayori.sqlite3"
    settings = base_settings(database, secret_key)
    upgrade(settings.database_url)
    errors: list[BaseException] = []

    def work() -> None:  # a fresh loop in a thread: never the loop pytest-asyncio gives each test
        try:
            asyncio.run(_subscribe_everyone(settings))
        except BaseException as exc:  # re-raised below
            errors.append(exc)

    worker = threading.Thread(target=work, name="crash-seed")
    worker.start()
    worker.join()
    if errors:
        raise errors[0]
    return Seed(database, secret_key)


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite file (WAL included) through SQLite's backup API."""
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


# ---- looking at the database and the emulators ----------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    """One delivery as stored: ``attempted`` = an attempt mark is committed (``attempted_at`` set)."""

    id: int
    channel: str
    status: str
    attempted: bool
    retry_key: str | None
    address: str
    reason: str | None


def read_rows(database: Path) -> dict[str, Row]:
    """The deliveries of the (only) issue, by address."""
    with closing(sqlite3.connect(database, timeout=30)) as conn:
        found = conn.execute(
            "SELECT d.id, d.channel, d.status, d.attempted_at IS NOT NULL, d.retry_key, e.address, d.reason "
            "FROM delivery d JOIN endpoint e ON e.id = d.endpoint_id ORDER BY d.id"
        ).fetchall()
    rows = [Row(r[0], r[1], r[2], bool(r[3]), r[4], r[5], r[6]) for r in found]
    return {row.address: row for row in rows}


def scalar(database: Path, sql: str) -> Any:
    """The first column of the first row of ``sql`` (a plain read; WAL lets it run beside the writer)."""
    with closing(sqlite3.connect(database, timeout=30)) as conn:
        return conn.execute(sql).fetchone()[0]


def copies(tg: TelegramEmulator, line: LineEmulator) -> Counter[str]:
    """How many copies of the issue each recipient got (Telegram chat id as text, LINE user id)."""
    got: Counter[str] = Counter(str(m.chat_id) for m in tg.sent if TITLE in (m.text or ""))
    got.update(d.user_id for d in line.delivered if any(TITLE in m.get("text", "") for m in d.messages))
    return got


def multicasts(line: LineEmulator) -> list[Any]:
    """The LINE emulator's records of multicast requests (answered ones only: a record is made with the answer)."""
    return [r for r in line.requests if r.path == "/v2/bot/message/multicast"]


# ---- the CLI ---------------------------------------------------------------------------------------------------------

@dataclass
class Result:
    """A finished CLI run: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    @property
    def words(self) -> str:
        """The output with whitespace normalised (rich wraps long lines at the terminal width)."""
        return " ".join(self.out.split())


def cli_env(settings: Settings) -> dict[str, str]:
    """The parent environment minus every ``OTAYORI_*`` variable, plus ``settings`` as ``OTAYORI_*``."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("OTAYORI_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, list):
            value = ",".join(str(item) for item in value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[f"OTAYORI_{name.upper()}"] = str(value)
    return env


async def otayori(*args: str, cwd: Path, env: dict[str, str]) -> Result:
    """Run ``otayori ARGS`` to completion (bounded) without blocking the loop the emulators serve in."""
    proc = await asyncio.create_subprocess_exec(
        *OTAYORI, *args, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode("utf-8"), err.decode("utf-8"))


def parse_report(text: str) -> dict[tuple[str, str], int]:
    """``deliveries show``'s table rows as ``{(channel, status): count}``."""
    rows: dict[tuple[str, str], int] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]
        if len(cells) == 3 and cells[2].isdigit():
            rows[(cells[0], cells[1])] = int(cells[2])
    return rows


async def broadcast_until_killed(
    cwd: Path, env: dict[str, str], ready: Callable[[], Awaitable[bool]]
) -> None:
    """Start ``otayori broadcast ISSUE --yes``, wait (bounded) until ``ready()``, then SIGKILL it."""
    issue_file = cwd / "issue.md"
    issue_file.write_text(ISSUE_MD, encoding="utf-8")
    # Output to files, not pipes: a full pipe would stall the broadcast at a point of its own choosing.
    with (cwd / "broadcast.out").open("wb") as out, (cwd / "broadcast.err").open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            *OTAYORI, "broadcast", str(issue_file), "--yes", cwd=cwd, env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=err,
        )
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + KILL_POINT_TIMEOUT
        while not await ready():
            if proc.returncode is not None:
                raise AssertionError(f"the broadcast ended (exit {proc.returncode}) before its kill point: "
                                     + (cwd / "broadcast.err").read_text(encoding="utf-8")[-2000:])
            if loop.time() > deadline:
                raise AssertionError(f"the broadcast did not reach its kill point within {KILL_POINT_TIMEOUT} s")
            await asyncio.sleep(POLL)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.returncode is None:
            proc.kill()
        await asyncio.wait_for(proc.wait(), 10)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, (cwd / "broadcast.err").read_text(encoding="utf-8"))


class ArrivalLog:
    """ASGI wrapper of an emulator's app noting the path of every request whose body has fully arrived (before the
    emulator answers): it tells the test that a request is inside the emulator, not merely on its way."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.complete: list[str] = []
        self.retry_keys: list[str | None] = []  # X-Line-Retry-Key of each complete request, in arrival order

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def noting() -> dict[str, Any]:
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                self.complete.append(scope["path"])
                headers = dict(scope["headers"])
                key = headers.get(b"x-line-retry-key")
                self.retry_keys.append(key.decode() if key else None)
            return message

        await self.app(scope, noting, send)


# ---- the test --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kill_point", list(KILL_POINTS))
async def test_a_broadcast_killed_with_sigkill_loses_nothing_and_duplicates_only_on_request(
    tmp_path: Path, seed: Seed, kill_point: str
):
    """Kill ``otayori broadcast`` at ``kill_point`` (see :data:`KILL_POINTS`), restart, and check the module
    docstring's promises."""
    database = tmp_path / "otayori.sqlite3"
    copy_database(seed.database, database)
    tg = TelegramEmulator(TELEGRAM_TOKEN)
    line = LineEmulator(LINE_TOKEN, LINE_SECRET)
    arrivals = ArrivalLog(line.app)
    line.app = arrivals  # served from start()
    for chat in TELEGRAM_CHATS:
        tg.add_user(chat, first_name="読者")
    for user in LINE_USERS:
        await line.add_user(user, "読者", friend=True)
    total = len(TELEGRAM_CHATS) + len(LINE_USERS)
    async with tg, line:
        emulators = {"telegram_api_url": tg.api_url, "telegram_file_url": tg.file_url,
                     "line_api_url": line.url, "line_data_api_url": line.url}
        slow = base_settings(database, seed.secret_key, telegram_rate_per_second=SLOW_TELEGRAM_RATE, **emulators)
        fast = slow.model_copy(update={"telegram_rate_per_second": FAST_TELEGRAM_RATE})

        # ---- arrange the kill point, run the broadcast, kill it ------------------------------------------------------
        def held_key() -> str | None:
            """The retry key of the multicast LINE holds: the first one to arrive (``fail_next`` takes the next)."""
            keys = [k for path, k in zip(arrivals.complete, arrivals.retry_keys)
                    if path == "/v2/bot/message/multicast"]
            return keys[0] if keys else None

        if kill_point == "before_any_send":
            # Another dispatcher (say `otayori run`) holds both channels: the broadcast enqueues, then waits for it.
            other = Database(slow.database_url)
            try:
                holder = Dispatcher(other, {}, SubscriptionService(other, slow), owner="otayori-run-elsewhere")
                assert await holder.acquire_channel("telegram") and await holder.acquire_channel("line")
            finally:
                await other.dispose()

            async def ready() -> bool:
                return scalar(database, "SELECT count(*) FROM delivery") == total
        elif kill_point == "mid_telegram_line_accepted":
            # LINE processes the first multicast (delivers, remembers its retry key) but answers only after 10 s.
            line.fail_next("/v2/bot/message/multicast", 500, {"message": "Internal server error"},
                           accept_before_failing=True, delay=10.0)
            # Telegram delivers each message at once but answers 2 s later, so requests are in flight at the kill
            # (the dispatcher waits for the rate limit before the attempt mark: without slow answers a request is in
            # flight for milliseconds only).
            tg.hold_answers("sendMessage", 2.0)

            async def ready() -> bool:
                got = copies(tg, line)
                held = held_key()
                return (sum(got[str(c)] for c in TELEGRAM_CHATS) >= 12 and held is not None
                        and any(d.retry_key == held for d in line.delivered))
        else:
            # LINE holds the first multicast 5 s, then refuses it (500) without processing it.
            line.fail_next("/v2/bot/message/multicast", 500, {"message": "Internal server error"}, delay=5.0)

            async def ready() -> bool:
                return "/v2/bot/message/multicast" in arrivals.complete

        await broadcast_until_killed(tmp_path, cli_env(slow), ready)
        at_kill = read_rows(database)
        got_at_kill = copies(tg, line)
        issue_id = scalar(database, "SELECT id FROM issue")
        telegram_rows = [r for r in at_kill.values() if r.channel == "telegram"]
        line_rows = [r for r in at_kill.values() if r.channel == "line"]

        # ---- what the dead process left ----------------------------------------------------------------------------
        assert len(at_kill) == total
        assert {r.status for r in at_kill.values()} <= {"pending", "sending", "sent"}, Counter(
            r.status for r in at_kill.values())
        assert max(got_at_kill.values(), default=0) <= 1, "somebody got the issue twice before the kill"
        for row in at_kill.values():
            if not row.attempted:  # the attempt mark is committed before every request
                assert got_at_kill[row.address] == 0, row
            if row.status == "sent":
                assert got_at_kill[row.address] == 1, row
        in_flight = {r.address for r in telegram_rows if r.status == "sending" and r.attempted}
        claimed_only = {r.address for r in telegram_rows if r.status == "sending" and not r.attempted}
        # The multicast LINE holds (500 or the other 20 recipients: the two requests go side by side, whichever
        # arrives first is held); the other one may be answered but not yet recorded at the kill.
        line_keys = {held_key()} - {None}
        line_flying = [r for r in line_rows if r.retry_key in line_keys]
        where = KILL_POINTS[kill_point]
        if kill_point == "before_any_send":
            assert {r.status for r in at_kill.values()} == {"pending"} and not got_at_kill, where
        else:
            # one multicast of 500 in flight under one retry key; every other LINE row was either sent by its own
            # request (the 20 left over: workers send requests side by side) or never attempted (no key)
            assert len(line_keys) == 1, line_keys
            assert len(line_flying) in (LINE_BATCH, len(LINE_USERS) - LINE_BATCH), len(line_flying)
            assert all(r.status == "sending" and r.attempted for r in line_flying)
            # every other LINE row: sent by its own request, in flight under its own key, or never attempted
            assert all(r.status == "sent" or (r.attempted and r.retry_key) or (not r.attempted and not r.retry_key)
                       for r in line_rows if r not in line_flying), Counter((r.status, r.attempted) for r in line_rows)
        if kill_point == "mid_telegram_line_accepted":
            sent_tg = sum(got_at_kill[str(c)] for c in TELEGRAM_CHATS)
            assert 12 <= sent_tg < len(TELEGRAM_CHATS), (where, sent_tg)
            assert in_flight and claimed_only, (where, len(in_flight), len(claimed_only))
            # the held batch was accepted: LINE delivered it; the answer never reached the process
            assert all(got_at_kill[r.address] == 1 for r in line_flying)
        if kill_point == "line_not_accepted":
            # the held batch was refused unprocessed; only the other request's recipients have the issue
            assert all(got_at_kill[r.address] == 0 for r in line_flying)
            assert not any(d.retry_key in line_keys for d in line.delivered)

        async with open_runtime(fast) as runtime:
            # ---- a dispatcher started while the dead one's leases run sends nothing ------------------------------
            await runtime.dispatcher().dispatch(issue_id, wait_for_retries=False)
            assert read_rows(database) == at_kill
            assert copies(tg, line) == got_at_kill

            # ---- the restart: past the leases, recover and finish ------------------------------------------------
            restart = Dispatcher(runtime.db, runtime.senders, runtime.subscriptions,
                                 clock=lambda: utcnow() + PAST_THE_LEASES)
            await asyncio.wait_for(restart.dispatch(issue_id), 60)
        after = read_rows(database)
        got = copies(tg, line)
        statuses = Counter(r.status for r in after.values())
        assert statuses == Counter({"sent": total - len(in_flight), "uncertain": len(in_flight)}), statuses
        assert {a for a, r in after.items() if r.status == "uncertain"} == in_flight  # only those in flight
        assert all("in flight" in (after[a].reason or "") for a in in_flight)
        assert all(got[u] == 1 for u in LINE_USERS), Counter(got[u] for u in LINE_USERS)  # LINE: exactly once
        for chat in map(str, TELEGRAM_CHATS):
            # in flight: not sent again (0 or 1 copies, as at the kill); all others: exactly one copy
            assert got[chat] == (got_at_kill[chat] if chat in in_flight else 1), (chat, at_kill[chat], after[chat])
        assert all(after[c].status == "sent" and got[c] == 1 for c in claimed_only)  # back to pending, sent once
        if kill_point != "before_any_send":
            (key,) = line_keys
            group = sorted(r.address for r in line_flying)
            answered = [r for r in multicasts(line) if r.retry_key == key and r.status != 500]
            if kill_point == "mid_telegram_line_accepted":
                # the identical request again, same key: LINE answered 409 "already accepted" = sent
                assert [r.status for r in answered] == [409], [r.status for r in answered]
            else:
                # the identical request again, same key: LINE had not processed it, so now it does, once
                assert [r.status for r in answered] == [200], [r.status for r in answered]
            assert sorted(answered[0].body["to"]) == group
            assert sorted(d.user_id for d in line.delivered if d.retry_key == key) == group
            assert all(after[a].status == "sent" and after[a].retry_key == key for a in group)

        # ---- the author is told, and decides ----------------------------------------------------------------------
        env = cli_env(fast)
        shown = await otayori("deliveries", "show", str(issue_id), cwd=tmp_path, env=env)
        assert shown.code == 0, shown
        expected = {("line", "sent"): len(LINE_USERS), ("telegram", "sent"): len(TELEGRAM_CHATS) - len(in_flight)}
        if in_flight:
            expected[("telegram", "uncertain")] = len(in_flight)
            assert (f"telegram: {len(in_flight)} × in flight when a dispatcher stopped; the platform cannot tell "
                    "whether it arrived") in shown.words, shown.out
        assert parse_report(shown.out) == expected, shown.out

        if kill_point == "mid_telegram_line_accepted":
            # Only now, because the author asked: each uncertain chat gets one more copy; nobody else anything.
            retried = await otayori("deliveries", "retry-uncertain", str(issue_id), cwd=tmp_path, env=env)
            assert retried.code == 0, retried
            assert f"{len(in_flight)} uncertain deliveries re-queued" in retried.words, retried.out
            assert f"sent {total}" in retried.words, retried.out
            final = copies(tg, line)
            for recipient in [*map(str, TELEGRAM_CHATS), *LINE_USERS]:
                assert final[recipient] == got[recipient] + (recipient in in_flight), recipient
            assert {r.status for r in read_rows(database).values()} == {"sent"}

        audited = await otayori("audit", cwd=tmp_path, env=env)
        assert audited.code == 0, audited
        assert "OK" in audited.out, audited.out
