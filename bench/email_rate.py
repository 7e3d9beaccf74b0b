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
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
from harness import ISSUE_BODY, ISSUE_TITLE, UNLIMITED, address_for, peak_rss_mb


def address(index: int) -> str:
    return address_for("email", index)


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
    raw = build_newsletter(sender=SenderIdentity.from_settings(settings), to=address(0), title=ISSUE_TITLE,
                           body_markdown=ISSUE_BODY, unsubscribe_url=f"{settings.public_url}/u/bench",
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


async def one_sender(name: str, count: int, sink: Any, template: Path, workdir: Path, timeout: float) -> Result:
    sink.messages.clear()
    kind, connections = name.split(":")
    if kind == "bare":
        result = await harness.run_child(__file__, ["--child", "bare", str(sink.port), str(count), connections,
                                                    str(template)], timeout)
        detail = f"{result['bytes']} bytes per message"
    else:
        rundir = workdir / "ours"
        database_url = harness.fresh_copy(template, rundir)
        issue_id, counts, _ = await harness.new_issue(database_url, ["email"])
        assert counts["email"] == count, counts
        result = await harness.run_child(__file__, ["--child", "ours", str(rundir), str(sink.port), str(issue_id),
                                                    connections], timeout)
        detail = f"deliveries {result['finished']}, {result['sessions']} SMTP sessions"
    per_rcpt = Counter(r for m in sink.messages for r in m.rcpt_tos)
    return Result(
        name=name, accepted=len(sink.messages), wall=float(result["wall"]),
        lost=sum(1 for i in range(count) if per_rcpt[address(i)] == 0),
        duplicates=sum(n - 1 for n in per_rcpt.values() if n > 1), rss_mb=float(result["rss_mb"]), detail=detail)


def label(name: str) -> str:
    kind, connections = name.split(":")
    if kind == "bare":
        return f"bare aiosmtplib `send_message` loop, {connections} connection{'s' if connections != '1' else ''}"
    return f"ours: `Dispatcher` + `SmtpSender`, connections {connections}, rate limit lifted"


def report(count: int, names: list[str], runs: list[dict[str, Result]], loads: tuple[str, str]) -> str:
    rows = []
    for name in names:
        kind, connections = name.split(":")
        versus = f"bare:{connections}"
        ratio = (f"{statistics.median(r[name].rate / r[versus].rate for r in runs):.3f}"
                 if kind == "ours" and versus in names else "—")
        vs_one = f"{statistics.median(r[name].rate / r['bare:1'].rate for r in runs):.3f}"
        rows.append([label(name), f"{harness.median_of(runs, name, 'rate'):.0f}", ratio, vs_one,
                     f"{harness.median_of(runs, name, 'wall'):.1f}",
                     f"{max(r[name].lost for r in runs)} / {max(r[name].duplicates for r in runs)}",
                     f"{harness.median_of(runs, name, 'rss_mb'):.0f}"])
    return "\n".join([
        f"{count:,} newsletters to the aiosmtpd sink (plain SMTP on 127.0.0.1, in the parent process; each sender in "
        f"its own child process); median of {len(runs)} run(s); load average (1/5/15 min) {loads[0]} before, "
        f"{loads[1]} after:",
        "",
        *harness.markdown_table(["sender", "messages/s", "ours / bare, same connections", "/ bare 1 connection",
                                 "send time (s)", "lost / duplicated (worst)", "peak RSS (MB)"], rows),
    ])


async def bench(count: int, runs: int, bare_connections: list[int], ours_connections: list[int]) -> int:
    from bots.sandbox.smtp_sink import SmtpSink

    before = harness.load_average()
    names = ["bare:1", *(f"bare:{c}" for c in bare_connections if c != 1), *(f"ours:{c}" for c in ours_connections)]
    results: list[dict[str, Result]] = []
    with tempfile.TemporaryDirectory(prefix="otayori-bench-mail-") as tmp:
        template = Path(tmp) / "template"
        await harness.reader_template(template, {"email": [address(i) for i in range(count)]})
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
    print(report(count, names, results, (before, harness.load_average())))
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
