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
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
from harness import Emulators, address_for, peak_rss_mb

#: Shares of the deliveries per channel (issue 4: 70% LINE, 20% Telegram, 10% email).
MIX = (("line", 0.7), ("telegram", 0.2), ("email", 0.1))
#: Upper bound (seconds) for one dispatcher run.
RUN_TIMEOUT = 900.0
ISSUE_TITLE = "12月のIT通信"
ISSUE_BODY = "**パスワード管理**のコツと、年末の勉強会🎍のお知らせです。\n\n全角　スペースも、そのまま。\n\n- 一つ目\n- 二つ目"


def split_mix(total: int, mix: tuple[tuple[str, float], ...] = MIX) -> dict[str, int]:
    """``total`` deliveries split per channel by ``mix`` (the last channel takes the rounding rest)."""
    counts: dict[str, int] = {}
    left = total
    for index, (channel, share) in enumerate(mix):
        counts[channel] = left if index == len(mix) - 1 else round(total * share)
        left -= counts[channel]
    return counts


# ------------------------------------------------------------------------------------------------- the database


async def prepare_run(database_url: str, counts: dict[str, int]) -> dict[str, Any]:
    """A fresh database with ``counts[channel]`` readers per channel (:func:`harness.reader_database`: one
    transaction, ledger chain verified) and one enqueued issue. Returns timings and the issue id."""
    readers = {channel: [address_for(channel, i) for i in range(count)] for channel, count in counts.items()}
    timings = await harness.reader_database(database_url, readers)
    started = time.perf_counter()
    issue_id, enqueued, _ = await harness.new_issue(database_url, list(counts), title=ISSUE_TITLE, body=ISSUE_BODY)
    enqueue_seconds = time.perf_counter() - started
    if enqueued != counts:
        raise RuntimeError(f"enqueued {enqueued}, expected {counts}")
    return {"issue_id": issue_id, "seed_seconds": timings["import_seconds"],
            "verify_seconds": timings["verify_seconds"], "events": timings["events"],
            "enqueue_seconds": enqueue_seconds}


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


async def child(config: dict[str, Any]) -> dict[str, Any]:
    """The dispatcher process: open the real runtime (senders + dispatcher) and dispatch the issue."""
    from bots.app import open_runtime
    from core.dispatcher import DispatchPolicy

    if config.get("switch_interval"):
        sys.setswitchinterval(config["switch_interval"])
    settings = harness.emulator_settings(config["database_url"], config["emulators"], config["smtp_connections"])
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
    answer = await harness.run_child(__file__, ["--child", json.dumps(config)], RUN_TIMEOUT + 60)
    after = await emulators.counters()
    got = await harness.delivery_counts(database_url, prepared["issue_id"])
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
          f"median of {len(runs)} runs; {os.cpu_count()} CPUs; load average after (1/5/15 min): "
          f"{harness.load_average()}")
    print()
    rows = [
        harness.spread_row("deliveries/s (dispatch wall time)", [r["rate"] for r in runs], "{:,.0f}", ">= 2,000"),
        harness.spread_row("dispatch wall time (s)", [r["elapsed"] for r in runs], "{:.1f}"),
        harness.spread_row("peak RSS of the dispatcher process (MB)", [r["peak_rss_mb"] for r in runs], "{:.0f}",
                           "< 300"),
        harness.spread_row("RSS before dispatching (imports, clients) (MB)",
                           [r["rss_before_dispatch_mb"] for r in runs], "{:.0f}"),
        harness.spread_row(f"set-up: {args.deliveries:,} endpoints + consent, one transaction (s)",
                           [r["seed_seconds"] for r in runs], "{:.1f}"),
        harness.spread_row("set-up: ledger chain verified (s)", [r["verify_seconds"] for r in runs], "{:.1f}"),
        harness.spread_row("set-up: enqueue (INSERT … SELECT) (s)", [r["enqueue_seconds"] for r in runs], "{:.1f}"),
    ]
    print("\n".join(harness.markdown_table(harness.SPREAD_COLUMNS, rows)))
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
