"""Email throughput: N newsletters through our dispatcher and ``SmtpSender`` vs the sink's own maximum.

The SMTP sink (``bots.sandbox.smtp_sink``: a real aiosmtpd server on 127.0.0.1, plain SMTP, in this process) receives
every message. Each sender runs in its own child process, one after the other, against the same sink:

* **bare aiosmtplib, 1 connection**: one ``aiosmtplib.SMTP`` session, ``send_message`` N times in sequence — the
  sink's own maximum for one client connection;
* **bare aiosmtplib, K connections**: K sessions (``--bare-connections``, default 2 and 4), each sending its share in
  sequence, all at once;
* **ours, connections 2 / 4**: the product path. The N readers are imported into a SQLite file (one transaction:
  subscriber, active opt-in endpoint, ``confirm`` ledger event each, chained with ``core.consent``'s own functions),
  an issue is created and enqueued (``core.broadcast``), and the child runs
  ``open_runtime(settings).dispatcher().dispatch(issue)``: the real :class:`core.dispatcher.Dispatcher` and
  :class:`bots.email.SmtpSender` composing each message per recipient with ``core.mail`` (its own unsubscribe link).
  **Our rate limit is lifted for the run** (``smtp_rate_per_second`` = 1,000,000; the default is 10/s), so what is
  measured is the engine, not the setting.

Every message is the same newsletter (the bare loops send the bytes ``core.mail`` composed for one reader, so sizes
match). messages/s = messages the sink accepted / the child's send time (connections included, imports excluded).
Ratio = ours / bare with the same number of connections, measured in the same run.

Usage: ``.venv/bin/python bench/email_rate.py [--n 10000] [--runs 3]``. Loopback only, bounded. Prints one line per
sender and run, then a Markdown table of the medians. Exit status 1 when a sender lost or duplicated a message.
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
TEXT_TITLE = "12月のIT通信"
TEXT_BODY = "**二段階認証**を有効にしましょう。\n\n勉強会: 12月5日(金)19時〜 新宿 & オンライン"
UNLIMITED = 1_000_000.0


def address(index: int) -> str:
    return f"reader{index}@example.jp"


# ---------------------------------------------------------------------------------------------------- shared helpers


async def import_readers(db: Any, channel: str, addresses: list[str], action: str) -> None:
    """Import ``addresses`` as readers of ``channel`` in one write transaction: a subscriber, an ``active`` opt-in
    endpoint and one ledger event (``action``; source ``import``) each. Bulk Core inserts (``consent.append`` costs a
    round trip per event); the chain is built with :func:`core.consent.chain_hash` as ``append`` builds it and checked
    with :func:`core.consent.verify_chain`. (Same helper as bench/telegram_rate.py: each script stands alone.)"""
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


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def settings_for(directory: Path, port: int, connections: int = 2) -> Any:
    from bots.sandbox.stack import sandbox_settings

    return sandbox_settings(directory, smtp_port=port, smtp_rate_per_second=UNLIMITED, smtp_connections=connections,
                            telegram_bot_token=None, line_channel_secret=None, line_channel_access_token=None)


# ---------------------------------------------------------------------------------------------------- children


async def child_bare(port: int, count: int, connections: int, workdir: str) -> dict[str, Any]:
    """``connections`` aiosmtplib sessions sending ``count`` copies of one composed newsletter (send_message)."""
    import email
    import email.policy

    import aiosmtplib

    from core.mail import SenderIdentity, build_newsletter

    settings = settings_for(Path(workdir), port)
    raw = build_newsletter(sender=SenderIdentity.from_settings(settings), to=address(0), title=TEXT_TITLE,
                           body_markdown=TEXT_BODY, unsubscribe_url=f"{settings.public_url}/u/bench",
                           privacy_url=settings.privacy_url)
    message = email.message_from_bytes(raw, policy=email.policy.SMTP)
    shares = [range(i, count, connections) for i in range(connections)]

    async def one_connection(indices: range) -> int:
        sent = 0
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, use_tls=False)
        await smtp.connect()
        try:
            for index in indices:
                await smtp.send_message(message, sender=settings.mail_from, recipients=[address(index)])
                sent += 1
        finally:
            await smtp.quit()
        return sent

    started = time.perf_counter()
    sent = sum(await asyncio.gather(*(one_connection(s) for s in shares)))
    return {"wall": time.perf_counter() - started, "sent": sent, "bytes": len(raw), "rss_mb": peak_rss_mb()}


async def child_ours(workdir: str, port: int, issue_id: int, connections: int) -> dict[str, Any]:
    """The product path: open_runtime (email only, rate lifted) and its dispatcher, for ``issue_id``."""
    from bots.app import open_runtime

    async with open_runtime(settings_for(Path(workdir), port, connections)) as runtime:
        started = time.perf_counter()
        summary = await runtime.dispatcher().dispatch(issue_id)
        wall = time.perf_counter() - started
        sessions = runtime.email_sender.sessions_opened
    return {"wall": wall, "finished": dict(summary.finished.get("email", {})), "sessions": sessions,
            "rss_mb": peak_rss_mb()}


# ---------------------------------------------------------------------------------------------------- the parent


@dataclass
class Result:
    name: str
    accepted: int
    wall: float
    lost: int
    duplicates: int
    rss_mb: float
    detail: str

    @property
    def rate(self) -> float:
        return self.accepted / self.wall


async def run_child(args: list[str], timeout: float) -> dict[str, Any]:
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).resolve()), "--child", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=str(ROOT))
    try:
        out, err = await asyncio.wait_for(child.communicate(), timeout=timeout)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    if child.returncode != 0 or not lines:
        raise RuntimeError(f"child {args[:1]} failed ({child.returncode}): {err.decode()[-2000:]}")
    return json.loads(lines[-1])


async def one_sender(name: str, count: int, sink: Any, template: Path, workdir: Path, timeout: float) -> Result:
    sink.messages.clear()
    kind, connections = name.split(":")
    if kind == "bare":
        result = await run_child(["bare", str(sink.port), str(count), connections, str(template)], timeout)
        detail = f"{result['bytes']} bytes per message"
    else:
        rundir = workdir / "ours"
        shutil.rmtree(rundir, ignore_errors=True)
        shutil.copytree(template, rundir)
        database_url = f"sqlite+aiosqlite:///{rundir / 'otayori.sqlite3'}"
        issue_id, counts, _ = await new_issue(database_url, ["email"])
        assert counts["email"] == count, counts
        result = await run_child(["ours", str(rundir), str(sink.port), str(issue_id), connections], timeout)
        detail = f"deliveries {result['finished']}, {result['sessions']} SMTP sessions"
    per_rcpt = Counter(r for m in sink.messages for r in m.rcpt_tos)
    return Result(
        name=name, accepted=len(sink.messages), wall=float(result["wall"]),
        lost=sum(1 for i in range(count) if per_rcpt[address(i)] == 0),
        duplicates=sum(n - 1 for n in per_rcpt.values() if n > 1), rss_mb=float(result["rss_mb"]), detail=detail)


async def make_template(count: int, directory: Path) -> None:
    from storage.database import Database
    from storage.migrate import upgrade

    settings = settings_for(directory, 25)
    await asyncio.to_thread(upgrade, settings.database_url)
    db = Database(settings.database_url)
    try:
        await import_readers(db, "email", [address(i) for i in range(count)], "confirm")
    finally:
        await db.dispose()


def label(name: str) -> str:
    kind, connections = name.split(":")
    if kind == "bare":
        return f"bare aiosmtplib `send_message` loop, {connections} connection{'s' if connections != '1' else ''}"
    return f"ours: `Dispatcher` + `SmtpSender`, connections {connections}, rate limit lifted"


def report(count: int, names: list[str], runs: list[dict[str, Result]], loads: tuple[str, str]) -> str:
    def med(name: str, attr: str) -> float:
        return statistics.median(getattr(r[name], attr) for r in runs)

    rows = []
    for name in names:
        kind, connections = name.split(":")
        versus = f"bare:{connections}"
        ratio = (f"{statistics.median(r[name].rate / r[versus].rate for r in runs):.3f}"
                 if kind == "ours" and versus in names else "—")
        vs_one = f"{statistics.median(r[name].rate / r['bare:1'].rate for r in runs):.3f}"
        rows.append(f"| {label(name)} | {med(name, 'rate'):.0f} | {ratio} | {vs_one} | {med(name, 'wall'):.1f} | "
                    f"{max(r[name].lost for r in runs)} / {max(r[name].duplicates for r in runs)} | "
                    f"{med(name, 'rss_mb'):.0f} |")
    return "\n".join([
        f"{count:,} newsletters to the aiosmtpd sink (plain SMTP on 127.0.0.1, in the parent process; each sender in its own child process); "
        f"median of {len(runs)} run(s); load average (1/5/15 min) {loads[0]} before, {loads[1]} after:",
        "",
        "| sender | messages/s | ours / bare, same connections | / bare 1 connection | send time (s) "
        "| lost / duplicated (worst) | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
    ])


async def bench(count: int, runs: int, bare_connections: list[int], ours_connections: list[int]) -> int:
    from bots.sandbox.smtp_sink import SmtpSink

    before = load()
    names = ["bare:1", *(f"bare:{c}" for c in bare_connections if c != 1), *(f"ours:{c}" for c in ours_connections)]
    results: list[dict[str, Result]] = []
    with tempfile.TemporaryDirectory(prefix="otayori-bench-mail-") as tmp:
        template = Path(tmp) / "template"
        await make_template(count, template)
        sink = SmtpSink()
        await sink.start()
        try:
            timeout = count / 5 + 120  # even at 5 messages/s a sender finishes
            for run in range(1, runs + 1):
                order = names if run % 2 else list(reversed(names))
                sides = {}
                for name in order:
                    sides[name] = await one_sender(name, count, sink, template, Path(tmp), timeout)
                    s = sides[name]
                    print(f"run {run} {name}: {s.accepted} accepted in {s.wall:.2f} s = {s.rate:.0f} msg/s, lost "
                          f"{s.lost}, duplicates {s.duplicates}, peak RSS {s.rss_mb:.0f} MB; {s.detail}", flush=True)
                results.append(sides)
        finally:
            await sink.stop()
    print()
    print(report(count, names, results, (before, load())))
    return 1 if any(s.lost or s.duplicates for r in results for s in r.values()) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="messages per sender (default 10000)")
    parser.add_argument("--runs", type=int, default=3, help="repeat the measurement R times (default 3)")
    parser.add_argument("--bare-connections", type=int, nargs="+", default=[2, 4],
                        help="concurrent connections of the bare loops besides 1 (default 2 4)")
    parser.add_argument("--connections", type=int, nargs="+", default=[2, 4],
                        help="our SmtpSender connections to measure (default 2 4)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if args.child:
        kind, *rest = args.child
        if kind == "bare":
            result = asyncio.run(child_bare(int(rest[0]), int(rest[1]), int(rest[2]), rest[3]))
        else:
            result = asyncio.run(child_ours(rest[0], int(rest[1]), int(rest[2]), int(rest[3])))
        print(json.dumps(result), flush=True)
        return 0
    if args.n < 1 or args.runs < 1:
        parser.error("--n and --runs must be >= 1")
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(bench(args.n, args.runs, args.bare_connections, args.connections))
    return 130


if __name__ == "__main__":
    sys.exit(main())
