"""Telegram efficiency: how close a broadcast gets to Telegram's overall limit without being told to slow down.

The Telegram emulator (``bots.sandbox.telegram_api``, in this process) enforces an overall limit of ``--allowed``
messages/s (default 300: Telegram's "about 30 messages per second" scaled by 10 so a run takes seconds, not minutes)
and 1 message/s per chat, answering 429 ``retry_after`` (enforced: a request inside the penalty is refused again) when
a sender exceeds them (https://core.telegram.org/bots/faq). ``--n`` chats (default 3,000) each get one issue.

Two senders, each in its own child process (so each peak RSS is its own, measured with
``resource.getrusage(RUSAGE_SELF).ru_maxrss``), run against a fresh emulator one after the other (order alternates
between runs):

* **ours**: the product path. The readers are imported into a SQLite file (one transaction: subscriber, active opt-in
  endpoint and a ``grant`` ledger event each, chained with ``core.consent``'s own functions), an issue is created and
  enqueued (``core.broadcast``), and the child runs ``open_runtime(settings).dispatcher().dispatch(issue)``: the real
  :class:`core.dispatcher.Dispatcher` with the real :class:`bots.telegram.TelegramSender` set to ``--ours-rate``
  (default 285/s, a 5 % margin below the emulator's limit, as our 25/s default sits below Telegram's 30/s);
* **ptb**: the baseline python-telegram-bot's documentation points to for broadcasts: a ``telegram.ext.ExtBot`` with
  ``AIORateLimiter(overall_max_rate=--allowed, max_retries=3)`` and ``asyncio.gather`` over one ``send_message`` per
  chat, same text. (``max_retries`` defaults to 0, which would drop every message that gets a 429.)

Measured by the emulator: accepted messages and their times, 429 answers, requests refused inside a ``retry_after``
penalty, messages per chat (lost = chats with none, duplicates = chats with more than one). The achieved rate is
accepted / (last accepted - first accepted). Because the emulator's window is a sliding second, the most it can accept
over a span S is ``allowed * (S + 1 s)``; **efficiency** = accepted / (allowed * (S + 1 s)) is the achieved share of
what the limit permits (goal >= 0.95; note that our 285/s setting caps it at 0.95 by construction).

Usage: ``.venv/bin/python bench/telegram_rate.py [--n 3000] [--runs 3]``. Loopback only; every wait is bounded.
Prints one line per run and side, then a Markdown table of the medians. Exit status 1 when a message was lost or
duplicated on our side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "7000000001:" + "A" * 35
FIRST_CHAT = 5_000_000_001
TEXT_TITLE = "12月のIT通信"
TEXT_BODY = "**二段階認証**を有効にしましょう。\n\n勉強会: 12月5日(金)19時〜 新宿 & オンライン"


# ---------------------------------------------------------------------------------------------------- shared helpers


async def import_readers(db: Any, channel: str, addresses: list[str], action: str) -> None:
    """Import ``addresses`` as readers of ``channel`` in one write transaction: a subscriber, an ``active`` opt-in
    endpoint and one ledger event (``action``: ``grant`` for chat, ``confirm`` for email; source ``import``) each.

    Bulk Core inserts (``consent.append`` costs a round trip per event); the hash chain is built with
    :func:`core.consent.chain_hash` exactly as ``append`` builds it, and checked with :func:`core.consent.verify_chain`.
    """
    from sqlalchemy import func, insert, select

    from core import consent
    from storage.models import Basis, ConsentEvent, ConsentSource, Endpoint, EndpointState, Subscriber
    from storage.types import utcnow

    now = utcnow()
    async with db.write() as session:
        conn = await session.connection()
        key = await consent.ledger_key(session)
        sub0 = (await conn.execute(select(func.coalesce(func.max(Subscriber.id), 0)))).scalar_one()
        end0 = (await conn.execute(select(func.coalesce(func.max(Endpoint.id), 0)))).scalar_one()
        head = (await conn.execute(select(ConsentEvent.id, ConsentEvent.hash)
                                   .order_by(ConsentEvent.id.desc()).limit(1))).first()
        last_id, prev_hash = (head[0], head[1]) if head else (0, consent.GENESIS_HASH)
        await conn.execute(insert(Subscriber.__table__), [
            {"id": sub0 + i, "created_at": now, "language": "ja"} for i in range(1, len(addresses) + 1)])
        await conn.execute(insert(Endpoint.__table__), [
            {"id": end0 + i, "subscriber_id": sub0 + i, "channel": channel, "address": address,
             "state": EndpointState.ACTIVE.value, "basis": Basis.OPT_IN.value,
             "friend": True if channel == "line" else None, "created_at": now, "updated_at": now}
            for i, address in enumerate(addresses, start=1)])
        events = []
        for i, address in enumerate(addresses, start=1):
            event = ConsentEvent(
                id=last_id + i, occurred_at=now, subscriber_id=sub0 + i, endpoint_id=end0 + i, channel=channel,
                action=action, basis=Basis.OPT_IN.value, source=ConsentSource.IMPORT.value, evidence={"import": "bench"},
                address_hmac=consent.address_hmac(key, channel, address), prev_hash=prev_hash, hash="")
            event.hash = prev_hash = consent.chain_hash(prev_hash, consent.hashed_record(event))
            events.append(event.model_dump())
        await conn.execute(insert(ConsentEvent.__table__), events)
    async with db.read() as session:
        chain = (await session.exec(select(ConsentEvent).order_by(ConsentEvent.id))).scalars().all()
    problems = consent.verify_chain(chain)
    if problems:
        raise RuntimeError(f"imported ledger chain is broken: {problems[:3]}")


async def new_issue(database_url: str, channels: list[str]) -> tuple[int, dict[str, int], float]:
    """Create and enqueue the bench issue; returns (issue id, deliveries per channel, seconds the enqueue took)."""
    from core.broadcast import IssueDraft, create_issue, enqueue
    from storage.database import Database

    db = Database(database_url)
    try:
        issue = await create_issue(db, IssueDraft(TEXT_TITLE, TEXT_BODY), created_by="bench")
        started = time.perf_counter()
        counts = await enqueue(db, issue.id, channels)
        return int(issue.id), counts, time.perf_counter() - started
    finally:
        await db.dispose()


async def delivery_statuses(database_url: str, issue_id: int) -> dict[str, int]:
    """``{status: count}`` of the issue's deliveries."""
    from sqlalchemy import func, select

    from storage.database import Database
    from storage.models import Delivery

    db = Database(database_url)
    try:
        async with db.read() as session:
            rows = (await session.exec(select(Delivery.status, func.count())  # type: ignore[call-overload]
                                       .where(Delivery.issue_id == issue_id).group_by(Delivery.status))).all()
        return {status: int(count) for status, count in rows}
    finally:
        await db.dispose()


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run_child(args: list[str], timeout: float) -> dict[str, Any]:
    """Run this script with ``args`` in a child process; return the JSON object it prints last. Bounded by
    ``timeout`` seconds (the child is killed after it)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).resolve()), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=str(ROOT))
    try:
        out, err = await asyncio.wait_for(child.communicate(), timeout=timeout)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    if child.returncode != 0 or not lines:
        raise RuntimeError(f"child {args[:2]} failed ({child.returncode}): {err.decode()[-2000:]}")
    return json.loads(lines[-1])


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


# ---------------------------------------------------------------------------------------------------- child processes


async def child_ours(url: str, workdir: str, issue_id: int, rate: float) -> dict[str, Any]:
    """The product path: open_runtime (Telegram only) and its dispatcher, for ``issue_id``."""
    from bots.app import open_runtime
    from bots.sandbox.stack import sandbox_settings

    settings = sandbox_settings(Path(workdir), telegram_api_url=f"{url}/bot", telegram_file_url=f"{url}/file/bot",
                                telegram_rate_per_second=rate, line_channel_secret=None,
                                line_channel_access_token=None, smtp_host=None)
    async with open_runtime(settings) as runtime:
        started = time.perf_counter()
        summary = await runtime.dispatcher().dispatch(issue_id)
        wall = time.perf_counter() - started
    finished = {status: n for status, n in summary.finished.get("telegram", {}).items()}
    return {"wall": wall, "finished": finished, "rss_mb": peak_rss_mb()}


async def child_ptb(url: str, chats: int, allowed: float) -> dict[str, Any]:
    """The baseline: ExtBot + AIORateLimiter, asyncio.gather over every chat."""
    from telegram.constants import ParseMode
    from telegram.error import RetryAfter, TelegramError
    from telegram.ext import AIORateLimiter, ExtBot

    bot = ExtBot(TOKEN, base_url=f"{url}/bot", base_file_url=f"{url}/file/bot",
                 rate_limiter=AIORateLimiter(overall_max_rate=allowed, max_retries=3))
    text = f"<b>{TEXT_TITLE}</b>\n\n{TEXT_BODY}"
    errors: Counter[str] = Counter()

    async def one(chat_id: int) -> None:
        try:
            await bot.send_message(chat_id=chat_id, text=text, parse_mode=ParseMode.HTML)
        except RetryAfter:
            errors["RetryAfter after 3 retries"] += 1
        except TelegramError as exc:
            errors[type(exc).__name__] += 1

    async with bot:
        started = time.perf_counter()
        await asyncio.gather(*(one(FIRST_CHAT + i) for i in range(chats)))
        wall = time.perf_counter() - started
    return {"wall": wall, "errors": dict(errors), "rss_mb": peak_rss_mb()}


# ---------------------------------------------------------------------------------------------------- the parent


@dataclass
class Side:
    """What one sender did in one run, as the emulator saw it."""

    name: str
    accepted: int
    span: float
    too_many: int
    violations: int
    lost: int
    duplicates: int
    wall: float
    rss_mb: float
    allowed: float
    detail: str

    @property
    def rate(self) -> float:
        return (self.accepted - 1) / self.span if self.span > 0 else float("nan")

    @property
    def efficiency(self) -> float:
        return self.accepted / (self.allowed * (self.span + 1.0))

    @property
    def requests(self) -> int:
        return self.accepted + self.too_many

    @property
    def share_429(self) -> float:
        return self.too_many / self.requests if self.requests else 0.0


async def one_side(name: str, chats: int, allowed: float, ours_rate: float, template: Path, workdir: Path) -> Side:
    """A fresh emulator with flood control, one sender in a child process, then the emulator's records."""
    from bots.sandbox.telegram_api import TelegramEmulator

    emulator = TelegramEmulator(TOKEN)
    url = await emulator.start()
    try:
        for i in range(chats):
            emulator.add_user(FIRST_CHAT + i, first_name=f"読者{i}")
        emulator.rate_limit(allowed, 1, retry_after=1)
        timeout = chats / 5 + 300  # generous: the baseline's client is CPU-bound at large N (see the README)
        if name == "ours":
            rundir = workdir / "ours"
            shutil.rmtree(rundir, ignore_errors=True)
            shutil.copytree(template, rundir)
            database_url = f"sqlite+aiosqlite:///{rundir / 'otayori.sqlite3'}"
            issue_id, counts, _ = await new_issue(database_url, ["telegram"])
            assert counts["telegram"] == chats, counts
            result = await run_child(["--child", "ours", url, str(rundir), str(issue_id), str(ours_rate)], timeout)
            statuses = await delivery_statuses(database_url, issue_id)
            detail = f"deliveries {statuses}"
        else:
            result = await run_child(["--child", "ptb", url, str(chats), str(allowed)], timeout)
            detail = f"errors {result['errors'] or 'none'}"
        sent = [m for m in emulator.sent if m.method == "sendMessage"]
        per_chat = Counter(m.chat_id for m in sent)
        times = sorted(m.at for m in sent)
        return Side(
            name=name, accepted=len(sent), span=(times[-1] - times[0]) if times else 0.0,
            too_many=emulator.too_many_requests, violations=emulator.retry_after_violations,
            lost=sum(1 for i in range(chats) if per_chat[FIRST_CHAT + i] == 0),
            duplicates=sum(n - 1 for n in per_chat.values() if n > 1),
            wall=float(result["wall"]), rss_mb=float(result["rss_mb"]), allowed=allowed, detail=detail)
    finally:
        await emulator.stop()


async def make_template(chats: int, directory: Path) -> None:
    """A migrated SQLite file with ``chats`` imported Telegram readers (copied for every run)."""
    from bots.sandbox.stack import sandbox_settings
    from storage.database import Database
    from storage.migrate import upgrade

    settings = sandbox_settings(directory)
    await asyncio.to_thread(upgrade, settings.database_url)
    db = Database(settings.database_url)
    try:
        await import_readers(db, "telegram", [str(FIRST_CHAT + i) for i in range(chats)], "grant")
    finally:
        await db.dispose()


def line_for(run: int, side: Side) -> str:
    return (f"run {run} {side.name}: {side.accepted} accepted in {side.span:.2f} s = {side.rate:.1f} msg/s, "
            f"efficiency {side.efficiency:.3f}, 429s {side.too_many} ({side.share_429:.2%} of {side.requests} "
            f"requests; {side.violations} inside a penalty), lost {side.lost}, duplicates {side.duplicates}, "
            f"child wall {side.wall:.2f} s, peak RSS {side.rss_mb:.0f} MB; {side.detail}")


def report(chats: int, allowed: float, ours_rate: float, runs: list[dict[str, Side]], loads: tuple[str, str]) -> str:
    def med(name: str, attr: str) -> float:
        return statistics.median(getattr(r[name], attr) for r in runs)

    ratio = statistics.median(r["ours"].rate / r["ptb"].rate for r in runs)
    rss_ratio = statistics.median(r["ours"].rss_mb / r["ptb"].rss_mb for r in runs)
    rows = []
    for name, label in (("ours", f"ours: `Dispatcher` + `TelegramSender` at {ours_rate:g}/s, SQLite outbox"),
                        ("ptb", f"PTB baseline: `ExtBot` + `AIORateLimiter({allowed:g}/s)` + `asyncio.gather`")):
        lost = max(r[name].lost for r in runs)
        dup = max(r[name].duplicates for r in runs)
        rows.append(
            f"| {label} | {med(name, 'rate'):.1f} | {med(name, 'efficiency'):.3f} | {med(name, 'too_many'):.0f}"
            f" ({med(name, 'share_429'):.2%}) | {lost} / {dup} | {med(name, 'span'):.2f} | {med(name, 'rss_mb'):.0f} |")
    ours_ok = (med("ours", "efficiency") >= 0.95 and med("ours", "share_429") < 0.01
               and max(r["ours"].lost for r in runs) == 0 and max(r["ours"].duplicates for r in runs) == 0)
    return "\n".join([
        f"{chats:,} chats, one message each; emulator limit {allowed:g} msg/s overall (Telegram's ~30/s x 10) and "
        f"1 msg/s per chat, 429 `retry_after` 1 s enforced; median of {len(runs)} runs; load average (1/5/15 min) "
        f"{loads[0]} before, {loads[1]} after:",
        "",
        "| sender | msg/s | efficiency (of the limit) | 429s (share of requests) | lost / duplicated (worst run) "
        "| send span (s) | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Rate ours / PTB baseline: {ratio:.3f}; peak RSS ours / baseline: {rss_ratio:.2f}x (ours includes SQLAlchemy, "
        f"the outbox and the SQLite driver). Goals for ours (efficiency >= 0.95, 429s < 1 %, lost = 0): "
        f"{'met' if ours_ok else 'NOT all met'}.",
    ])


async def bench(chats: int, runs: int, allowed: float, ours_rate: float) -> int:
    before = load()
    results: list[dict[str, Side]] = []
    with tempfile.TemporaryDirectory(prefix="otayori-bench-tg-") as tmp:
        template = Path(tmp) / "template"
        started = time.perf_counter()
        await make_template(chats, template)
        print(f"imported {chats} readers in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
        for run in range(1, runs + 1):
            order = ("ours", "ptb") if run % 2 else ("ptb", "ours")
            sides = {}
            for name in order:
                sides[name] = await one_side(name, chats, allowed, ours_rate, template, Path(tmp))
                print(line_for(run, sides[name]), flush=True)
            results.append(sides)
    print()
    print(report(chats, allowed, ours_rate, results, (before, load())))
    bad = any(r["ours"].lost or r["ours"].duplicates for r in results)
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="chats, one message each (default 3000)")
    parser.add_argument("--runs", type=int, default=3, help="repeat the measurement R times (default 3)")
    parser.add_argument("--allowed", type=float, default=300.0, help="emulator's overall limit, msg/s (default 300)")
    parser.add_argument("--ours-rate", type=float, default=285.0, help="our TelegramSender rate, msg/s (default 285)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if args.child:
        kind, url, *rest = args.child
        if kind == "ours":
            result = asyncio.run(child_ours(url, rest[0], int(rest[1]), float(rest[2])))
        else:
            result = asyncio.run(child_ptb(url, int(rest[0]), float(rest[1])))
        print(json.dumps(result), flush=True)
        return 0
    if args.n < 2 or args.runs < 1:
        parser.error("--n must be >= 2 and --runs >= 1")
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(bench(args.n, args.runs, args.allowed, args.ours_rate))
    return 130


if __name__ == "__main__":
    sys.exit(main())
