"""Core overhead: how many deliveries per second the dispatcher itself can push when no platform slows it down.

100,000 deliveries by default (70% LINE, 20% Telegram, 10% email) on a SQLite file, through the real senders
(``bots.app.open_runtime``: python-telegram-bot, line-bot-sdk, aiosmtplib + core.mail) and the real dispatcher, against
the emulators each running in its own process (``python -m bots.sandbox.telegram_api`` / ``line_api`` /
``smtp_sink``) with no rate limit of their own. **Our own rate limits are lifted for the run**: the Telegram, LINE and
SMTP limiters are set to 1,000,000/s, so what is measured is our overhead (claims, consent re-check + attempt mark per
request, rendering, SDK calls, recording), never a platform's pace.

The dispatcher runs in a child process (this script with ``--child``) so that its peak RSS (``VmHWM``) is its own;
the emulators never share its process. Set-up, per run, is not timed in deliveries/s: a fresh SQLite file, the
endpoints and their consent (one transaction; ledger rows written directly with the hash chain computed by
``core.consent`` and then verified with ``core.consent.verify_chain``), one issue and ``core.broadcast.enqueue``.

Checks per run (exit status 1 when one fails): every delivery ``sent``; the Telegram emulator recorded one message per
Telegram delivery, LINE counted one recipient per LINE delivery with ceil(N/500) multicast requests, the SMTP sink
received one message per email delivery; the ledger chain verifies.

Usage: ``.venv/bin/python bench/core_overhead.py [--deliveries 100000] [--runs 3] [--profile]``. ``--profile`` adds
one more (unmeasured) run under cProfile and prints the top entries.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TELEGRAM_TOKEN = "123456:BENCH-core-overhead"
LINE_TOKEN = "bench-line-access-token"
LINE_SECRET = "bench-line-channel-secret"
SECRET_KEY = "bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz-core"
#: "Lifted" rate limits: far above anything loopback can reach, so our limiters never wait.
UNLIMITED = 1_000_000.0
#: Shares of the deliveries per channel (issue 4: 70% LINE, 20% Telegram, 10% email).
MIX = (("line", 0.7), ("telegram", 0.2), ("email", 0.1))
#: Upper bounds (seconds): emulator start-up, one dispatcher run.
START_TIMEOUT = 60.0
RUN_TIMEOUT = 900.0
ISSUE_TITLE = "12月のIT通信"
ISSUE_BODY = "**パスワード管理**のコツと、年末の勉強会🎍のお知らせです。\n\n全角　スペースも、そのまま。\n\n- 一つ目\n- 二つ目"


def address_for(channel: str, index: int) -> str:
    """A realistic address: a LINE userId, a Telegram chat id (a user's private chat), an email address."""
    if channel == "line":
        return f"U{index:032x}"
    if channel == "telegram":
        return str(700_000_000 + index)
    return f"reader{index}@example.jp"


def split_mix(total: int, mix: tuple[tuple[str, float], ...] = MIX) -> dict[str, int]:
    """``total`` deliveries split per channel by ``mix`` (the last channel takes the rounding rest)."""
    counts: dict[str, int] = {}
    left = total
    for index, (channel, share) in enumerate(mix):
        counts[channel] = left if index == len(mix) - 1 else round(total * share)
        left -= counts[channel]
    return counts


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bound then released: a tiny race we accept in a benchmark)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def load_average() -> str:
    """The 1/5/15-minute load averages as text."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


# ------------------------------------------------------------------------------------------------- the emulators


@dataclass
class Emulators:
    """The three emulators, each a ``python -m bots.sandbox…`` process on 127.0.0.1 (see :meth:`start`)."""

    workdir: Path
    telegram_port: int = 0
    line_port: int = 0
    smtp_port: int = 0
    processes: tuple[subprocess.Popen[bytes], ...] = ()

    @property
    def telegram_url(self) -> str:
        return f"http://127.0.0.1:{self.telegram_port}"

    @property
    def line_url(self) -> str:
        return f"http://127.0.0.1:{self.line_port}"

    @property
    def smtp_log(self) -> Path:
        return self.workdir / "smtp_sink.out"

    def start(self) -> None:
        """Start the processes (stdout/stderr to files in ``workdir``) and wait until each port accepts."""
        self.telegram_port, self.line_port, self.smtp_port = free_port(), free_port(), free_port()
        commands = {
            "telegram": ["bots.sandbox.telegram_api", "--token", TELEGRAM_TOKEN, "--port", str(self.telegram_port)],
            "line": ["bots.sandbox.line_api", "--token", LINE_TOKEN, "--secret", LINE_SECRET,
                     "--port", str(self.line_port)],
            "smtp": ["bots.sandbox.smtp_sink", "--port", str(self.smtp_port)],
        }
        started = []
        for name, args in commands.items():
            out = open(self.smtp_log if name == "smtp" else self.workdir / f"{name}.out", "wb")  # noqa: SIM115
            err = open(self.workdir / f"{name}.err", "wb")  # noqa: SIM115
            started.append(subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, stdout=out, stderr=err,
                                            stdin=subprocess.DEVNULL))
        self.processes = tuple(started)
        deadline = time.monotonic() + START_TIMEOUT
        for port in (self.telegram_port, self.line_port, self.smtp_port):
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
                if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                    self.stop()
                    raise RuntimeError(f"an emulator did not start; see {self.workdir}/*.err")
                time.sleep(0.1)

    def stop(self) -> None:
        """Terminate the processes this object started (and only those)."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def smtp_received(self) -> int:
        """Messages the SMTP sink received so far (it prints ``#<count> …`` per message)."""
        last = 0
        with open(self.smtp_log, "rb") as log:
            for line in log:
                if line.startswith(b"#"):
                    last = int(line[1:].split(b" ", 1)[0])
        return last

    async def register(self, counts: dict[str, int], concurrency: int = 32) -> None:
        """Make the Telegram users (who started the bot) known to the emulator (``POST /_emulator/users``).

        LINE users are not registered: the LINE emulator accepts a multicast to unknown users and just does not
        deliver to them, and registering 70,000 friends one request at a time would take minutes; the check counts the
        recipients in the multicast requests it accepted instead."""
        import aiohttp

        semaphore = asyncio.Semaphore(concurrency)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

            async def post(url: str, body: dict[str, Any]) -> None:
                async with semaphore, session.post(url, json=body) as answer:
                    if answer.status != 200:
                        raise RuntimeError(f"{url}: {answer.status} {await answer.text()}")

            jobs = [post(f"{self.telegram_url}/_emulator/users", {"user_id": int(address_for("telegram", i)),
                                                                   "started": True})
                    for i in range(counts.get("telegram", 0))]
            await asyncio.gather(*jobs)

    async def counters(self) -> dict[str, int]:
        """Cumulative counters: Telegram messages sent, LINE recipients in accepted multicast requests, LINE
        multicast requests, SMTP messages received."""
        import aiohttp

        async with aiohttp.ClientSession() as session:
            async with session.get(f"{self.telegram_url}/_emulator/") as answer:
                telegram = (await answer.json())["sent"]
            async with session.get(f"{self.line_url}/_emulator/requests") as answer:
                requests = [r for r in (await answer.json())["requests"]
                            if r["path"].endswith("/multicast") and r["status"] == 200]
        line = sum(len(r["body"]["to"]) for r in requests)
        return {"telegram": int(telegram), "line": line, "line_requests": len(requests),
                "email": self.smtp_received()}


# ------------------------------------------------------------------------------------------------- the database


@dataclass
class _LedgerRow:
    """The attributes :func:`core.consent.hashed_record` reads, without building 100,000 ORM objects."""

    id: int
    occurred_at: Any
    subscriber_id: int
    endpoint_id: int
    channel: str
    action: str
    basis: str
    source: str
    campaign: None = None
    topics: None = None
    wording_version: None = None
    wording_sha256: None = None
    evidence: dict[str, Any] | None = None
    address_hmac: str = ""
    prev_hash: str = ""
    hash: str = ""


async def seed_bulk(db: Any, counts: dict[str, int], *, start: int = 0) -> list[tuple[int, str, str]]:
    """Create, in one write transaction, one subscriber + one active ``opt_in`` endpoint + one consent event
    (``grant``; ``confirm`` for email) per address: ``counts[channel]`` addresses per channel.

    The ledger rows are inserted directly (executemany) rather than through ``core.consent.append`` (which reads the
    chain head per row); they are built with the same functions — the ledger key from ``core.consent.ledger_key``,
    ``address_hmac``, ``hashed_record`` and ``chain_hash`` — continuing the chain from its current head, so the
    result is exactly what ``append`` would have written. Returns ``[(endpoint_id, channel, address), ...]``.
    """
    from sqlalchemy import func, select

    from core.consent import GENESIS_HASH, address_hmac, canonical_json, chain_hash, hashed_record, ledger_key
    from storage.models import ConsentEvent, Endpoint, Subscriber
    from storage.types import utcnow

    made: list[tuple[int, str, str]] = []
    async with db.write() as session:
        await db.lock_ledger(session)
        key = await ledger_key(session)
        head = (await session.exec(select(ConsentEvent.id, ConsentEvent.hash)  # type: ignore[call-overload]
                                   .order_by(ConsentEvent.id.desc()).limit(1))).first()  # type: ignore[union-attr]
        next_event, prev_hash = (head[0] + 1, head[1]) if head else (1, GENESIS_HASH)
        next_subscriber = int((await session.exec(select(func.coalesce(func.max(Subscriber.id), 0)))).one()[0]) + 1  # type: ignore[call-overload]
        next_endpoint = int((await session.exec(select(func.coalesce(func.max(Endpoint.id), 0)))).one()[0]) + 1  # type: ignore[call-overload]
        now = utcnow()
        subscribers, endpoints, events = [], [], []
        evidence = json.loads(canonical_json({"bench": "core_overhead"}))
        for channel, count in counts.items():
            for index in range(start, start + count):
                address = address_for(channel, index)
                subscribers.append({"id": next_subscriber, "created_at": now, "language": "ja"})
                endpoints.append({"id": next_endpoint, "subscriber_id": next_subscriber, "channel": channel,
                                  "address": address, "state": "active", "basis": "opt_in",
                                  "created_at": now, "updated_at": now})
                row = _LedgerRow(id=next_event, occurred_at=now, subscriber_id=next_subscriber,
                                 endpoint_id=next_endpoint, channel=channel,
                                 action="confirm" if channel == "email" else "grant", basis="opt_in",
                                 source="import", evidence=evidence, address_hmac=address_hmac(key, channel, address),
                                 prev_hash=prev_hash)
                row.hash = prev_hash = chain_hash(prev_hash, hashed_record(row))  # type: ignore[arg-type]
                events.append({name: getattr(row, name) for name in (
                    "id", "occurred_at", "subscriber_id", "endpoint_id", "channel", "action", "basis", "source",
                    "campaign", "topics", "wording_version", "wording_sha256", "evidence", "address_hmac",
                    "prev_hash", "hash")})
                made.append((next_endpoint, channel, address))
                next_subscriber, next_endpoint, next_event = next_subscriber + 1, next_endpoint + 1, next_event + 1
        connection = await session.connection()
        for table, rows in ((Subscriber, subscribers), (Endpoint, endpoints), (ConsentEvent, events)):
            for i in range(0, len(rows), 10_000):
                await connection.execute(table.__table__.insert(), rows[i : i + 10_000])  # type: ignore[attr-defined]
    return made


async def verify_ledger(db: Any) -> int:
    """Verify the whole hash chain (``core.consent.verify_chain``); returns the number of events. Raises
    ``RuntimeError`` on any problem."""
    from sqlmodel import select

    from core.consent import verify_chain
    from storage.models import ConsentEvent

    async with db.read() as session:
        events = list((await session.exec(select(ConsentEvent).order_by(ConsentEvent.id))).all())  # type: ignore[arg-type]
    problems = verify_chain(events)
    if problems:
        raise RuntimeError(f"ledger chain broken: {problems[:3]}")
    return len(events)


def bench_settings(database_url: str, emulators: dict[str, Any], smtp_connections: int) -> Any:
    """Settings for the dispatcher process: the emulators' URLs and **lifted** rate limits (see the module doc)."""
    from core.settings import Settings

    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=database_url,
        secret_key=SECRET_KEY,
        sender_name="山田IT事務所",
        sender_postal_address="東京都千代田区千代田1-1",
        sender_contact="info@example.jp",
        mail_from="news@example.jp",
        public_url="http://127.0.0.1:8000",
        telegram_bot_token=TELEGRAM_TOKEN,
        telegram_api_url=f"{emulators['telegram_url']}/bot",
        telegram_file_url=f"{emulators['telegram_url']}/file/bot",
        line_channel_secret=LINE_SECRET,
        line_channel_access_token=LINE_TOKEN,
        line_api_url=emulators["line_url"],
        smtp_host="127.0.0.1",
        smtp_port=emulators["smtp_port"],
        smtp_security="none",
        telegram_rate_per_second=UNLIMITED,
        line_multicast_rate_per_second=UNLIMITED,
        smtp_rate_per_second=UNLIMITED,
        smtp_connections=smtp_connections,
    )


async def prepare_run(database_url: str, counts: dict[str, int]) -> dict[str, Any]:
    """A fresh database with the endpoints, their consent, and one enqueued issue. Returns timings and ids."""
    from core.broadcast import IssueDraft, create_issue, enqueue
    from storage.database import Database
    from storage.migrate import upgrade

    upgrade(database_url)
    db = Database(database_url)
    try:
        started = time.perf_counter()
        await seed_bulk(db, counts)
        seeded = time.perf_counter() - started
        started = time.perf_counter()
        events = await verify_ledger(db)
        verified = time.perf_counter() - started
        started = time.perf_counter()
        issue = await create_issue(db, IssueDraft(ISSUE_TITLE, ISSUE_BODY))
        enqueued = await enqueue(db, issue.id, list(counts))  # type: ignore[arg-type]
        enqueue_seconds = time.perf_counter() - started
    finally:
        await db.dispose()
    if enqueued != counts:
        raise RuntimeError(f"enqueued {enqueued}, expected {counts}")
    return {"issue_id": issue.id, "seed_seconds": seeded, "verify_seconds": verified, "events": events,
            "enqueue_seconds": enqueue_seconds}


async def delivery_counts(database_url: str, issue_id: int) -> dict[str, dict[str, int]]:
    """``{channel: {status: count}}`` for the issue."""
    from sqlalchemy import func, select

    from storage.database import Database
    from storage.models import Delivery

    db = Database(database_url)
    try:
        async with db.read() as session:
            rows = (await session.exec(select(Delivery.channel, Delivery.status, func.count())  # type: ignore[call-overload]
                                       .where(Delivery.issue_id == issue_id)
                                       .group_by(Delivery.channel, Delivery.status))).all()
    finally:
        await db.dispose()
    found: dict[str, dict[str, int]] = {}
    for channel, status, count in rows:
        found.setdefault(channel, {})[status] = int(count)
    return found


# ------------------------------------------------------------------------------------------------- the dispatcher


class InstantSender:
    """``--null-senders``: a sender that answers "sent" at once without any I/O, so that a run measures the dispatcher
    and the database alone (the core's own ceiling), not the SDKs and emulators."""

    def __init__(self, channel: str, max_recipients: int) -> None:
        self.channel = channel
        self.max_recipients = max_recipients

    async def send(self, message: Any) -> Any:
        from core.channels import Outcome, SendResult

        return SendResult(Outcome.sent())


def peak_rss_mb() -> float:
    """This process's peak resident set size (``VmHWM`` in /proc/self/status), in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def child(config: dict[str, Any]) -> dict[str, Any]:
    """The dispatcher process: open the real runtime (senders + dispatcher) and dispatch the issue."""
    from bots.app import open_runtime
    from core.dispatcher import DispatchPolicy

    if config.get("switch_interval"):
        sys.setswitchinterval(config["switch_interval"])
    settings = bench_settings(config["database_url"], config["emulators"], config["smtp_connections"])
    policy = DispatchPolicy(concurrency=config["concurrency"], claim_size=config["claim_size"])
    profiler = None
    async with open_runtime(settings) as runtime:
        if config.get("null_senders"):
            runtime.senders = {channel: InstantSender(sender.channel, sender.max_recipients)
                               for channel, sender in runtime.senders.items()}
        dispatcher = runtime.dispatcher(policy)
        rss_before = peak_rss_mb()
        if config.get("profile"):
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        started = time.perf_counter()
        summary = await asyncio.wait_for(dispatcher.dispatch(config["issue_id"]), timeout=RUN_TIMEOUT)
        elapsed = time.perf_counter() - started
        if profiler is not None:
            profiler.disable()
    result: dict[str, Any] = {
        "elapsed": elapsed, "peak_rss_mb": peak_rss_mb(), "rss_before_dispatch_mb": rss_before,
        "finished": {channel: dict(statuses) for channel, statuses in summary.finished.items()},
        "notices": [notice.reason for notice in summary.notices],
    }
    if profiler is not None:
        import io
        import pstats

        for order in ("tottime", "cumulative"):
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).strip_dirs().sort_stats(order).print_stats(config.get("top", 30))
            result[f"profile_{order}"] = text.getvalue()
    return result


def run_child(config: dict[str, Any]) -> dict[str, Any]:
    """Run :func:`child` in a new process; returns its JSON answer."""
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(config)],
        cwd=ROOT, capture_output=True, timeout=RUN_TIMEOUT + 60, check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"dispatcher process failed ({completed.returncode}):\n"
                           f"{completed.stderr.decode(errors='replace')[-4000:]}")
    return json.loads(completed.stdout.decode().strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------- main


async def one_run(emulators: Emulators, counts: dict[str, int], args: argparse.Namespace, workdir: Path,
                  number: int, *, profile: bool = False) -> dict[str, Any]:
    """One measured run: prepare a fresh database, dispatch in a child process, check every figure."""
    database_url = f"sqlite+aiosqlite:///{workdir / f'run{number}.sqlite3'}"
    prepared = await prepare_run(database_url, counts)
    before = await emulators.counters()
    config = {
        "database_url": database_url, "issue_id": prepared["issue_id"], "concurrency": args.concurrency,
        "claim_size": args.claim_size, "smtp_connections": args.smtp_connections, "profile": profile,
        "top": args.top, "switch_interval": args.switch_interval, "null_senders": args.null_senders,
        "emulators": {"telegram_url": emulators.telegram_url, "line_url": emulators.line_url,
                      "smtp_port": emulators.smtp_port},
    }
    load_before = os.getloadavg()[0]
    answer = run_child(config)
    after = await emulators.counters()
    got = await delivery_counts(database_url, prepared["issue_id"])
    problems = []
    for channel, count in counts.items():
        if got.get(channel) != {"sent": count}:
            problems.append(f"{channel}: statuses {got.get(channel)} (expected {count} sent)")
    received = {name: after[name] - before[name] for name in after}
    expected = {"telegram": counts.get("telegram", 0), "line": counts.get("line", 0),
                "line_requests": math.ceil(counts.get("line", 0) / 500), "email": counts.get("email", 0)}
    if args.null_senders:
        expected = {name: 0 for name in expected}
    if received != expected:
        problems.append(f"emulators received {received}, expected {expected}")
    total = sum(counts.values())
    return {**prepared, **answer, "deliveries": total, "rate": total / answer["elapsed"], "received": received,
            "problems": problems, "load_before": load_before}


async def main_async(args: argparse.Namespace) -> int:
    mix = tuple((name, float(share)) for name, share in (item.split("=") for item in args.mix.split(",")))
    counts = split_mix(args.deliveries, mix)
    with tempfile.TemporaryDirectory(prefix="otayori-core-overhead-") as tmp:
        workdir = Path(tmp)
        emulators = Emulators(workdir)
        emulators.start()
        try:
            started = time.perf_counter()
            await emulators.register(counts)
            print(f"emulators ready: {counts} users registered in {time.perf_counter() - started:.1f} s",
                  flush=True)
            runs = []
            for number in range(1, args.runs + 1):
                result = await one_run(emulators, counts, args, workdir, number)
                runs.append(result)
                print(f"run {number}: {result['deliveries']} deliveries in {result['elapsed']:.1f} s = "
                      f"{result['rate']:.0f}/s; peak RSS {result['peak_rss_mb']:.0f} MB "
                      f"(before dispatch {result['rss_before_dispatch_mb']:.0f} MB); set-up: seed "
                      f"{result['seed_seconds']:.1f} s, chain verify {result['verify_seconds']:.1f} s, enqueue "
                      f"{result['enqueue_seconds']:.1f} s; load before {result['load_before']:.2f}; "
                      f"{'OK' if not result['problems'] else 'FAILED: ' + '; '.join(result['problems'])}",
                      flush=True)
            profiled = None
            if args.profile:
                profiled = await one_run(emulators, counts, args, workdir, args.runs + 1, profile=True)
        finally:
            emulators.stop()
    print()
    print(f"Core overhead{' (INSTANT senders: dispatcher + SQLite alone)' if args.null_senders else ''} — "
          f"{args.deliveries:,} deliveries ({', '.join(f'{c} {n:,}' for c, n in counts.items())}), "
          f"SQLite, emulators in their own processes, **our rate limits lifted** (1,000,000/s), dispatcher "
          f"concurrency {args.concurrency}, claim size {args.claim_size}, {args.smtp_connections} SMTP connections; "
          f"median of {len(runs)} runs; {os.cpu_count()} CPUs; load average after (1/5/15 min): {load_average()}")
    print()
    print("| measure | median | min | max | goal |")
    print("|---|---|---|---|---|")

    def row(name: str, values: list[float], fmt: str, goal: str) -> None:
        print(f"| {name} | {fmt.format(statistics.median(values))} | {fmt.format(min(values))} | "
              f"{fmt.format(max(values))} | {goal} |")

    row("deliveries/s (dispatch wall time)", [r["rate"] for r in runs], "{:,.0f}", ">= 2,000")
    row("dispatch wall time (s)", [r["elapsed"] for r in runs], "{:.1f}", "")
    row("peak RSS of the dispatcher process (MB)", [r["peak_rss_mb"] for r in runs], "{:.0f}", "< 300")
    row("RSS before dispatching (imports, clients) (MB)", [r["rss_before_dispatch_mb"] for r in runs], "{:.0f}", "")
    row(f"set-up: {args.deliveries:,} endpoints + consent, one transaction (s)", [r["seed_seconds"] for r in runs],
        "{:.1f}", "")
    row("set-up: ledger chain verified (s)", [r["verify_seconds"] for r in runs], "{:.1f}", "")
    row("set-up: enqueue (INSERT … SELECT) (s)", [r["enqueue_seconds"] for r in runs], "{:.1f}", "")
    failed = [r for r in runs if r["problems"]]
    print()
    print(f"Checks: every delivery `sent`, emulators received exactly one message per delivery "
          f"(LINE in ceil(N/500) = {math.ceil(counts.get('line', 0) / 500)} multicasts), ledger chain verified: "
          f"{'all runs OK' if not failed else f'{len(failed)} run(s) FAILED'}")
    if profiled is not None:
        print()
        print(f"Profile (cProfile, one extra run, {profiled['elapsed']:.1f} s under the profiler):")
        print(profiled["profile_tottime"])
        print(profiled["profile_cumulative"])
        if profiled["problems"]:
            failed.append(profiled)
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight per channel")
    parser.add_argument("--claim-size", type=int, default=2000, help="deliveries claimed per round")
    parser.add_argument("--smtp-connections", type=int, default=8)
    parser.add_argument("--mix", default=",".join(f"{c}={s}" for c, s in MIX),
                        help="shares per channel, e.g. telegram=1 to measure one channel alone")
    parser.add_argument("--profile", action="store_true", help="one more run under cProfile; print the top entries")
    parser.add_argument("--top", type=int, default=30, help="profile entries to print")
    parser.add_argument("--switch-interval", type=float, default=0.0,
                        help="sys.setswitchinterval() for the dispatcher process (0: Python's default, 5 ms)")
    parser.add_argument("--null-senders", action="store_true",
                        help="senders that answer 'sent' without I/O: the dispatcher + database alone")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(json.loads(args.child)))))
        return 0
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
