"""LINE broadcast: N subscribers -> multicast requests, request rate, wall time, and no duplicate after a 5xx storm.

The LINE emulator (``bots.sandbox.line_api``, in this process) knows ``--n`` users (default 100,000), all friends of
the account (``add_user(friend=True)``: no webhook), and enforces LINE's multicast limit of 200 requests/s
(``rate_limit(multicast_per_second=200)``, a leaky bucket of one second; over it: 429). The same users are imported as
readers into a SQLite file (one transaction: subscriber, active opt-in endpoint and a ``grant`` ledger event each,
chained with ``core.consent``'s own functions and verified), an issue is created and enqueued (``core.broadcast``), and
a child process runs the product path: ``open_runtime(settings).dispatcher().dispatch(issue)`` — the real
:class:`core.dispatcher.Dispatcher` and :class:`bots.line.LineSender` (line-bot-sdk's ``AsyncMessagingApi``) at our
default 150 requests/s.

Each run makes two broadcasts, each with a fresh emulator and a fresh copy of the database:

* **clean**: number of multicast requests (goal ``ceil(N / 500)``), request rate (requests / span between the first
  and last request, and the most requests in any one second) against LINE's 200/s, 429s, wall time of the dispatch;
* **storm**: once half the users have the issue, the emulator answers the next ``--storm`` (default 20) multicasts
  with 500 **after accepting them** (``fail_next(..., 500, count=20, accept_before_failing=True)``: LINE delivered, the
  client saw a 5xx). Our retries must repeat the same ``X-Line-Retry-Key`` (409 "already accepted" = sent), so every
  user still has exactly one copy: duplicates = users with more than one delivery, lost = users with none.

Usage: ``.venv/bin/python bench/line_multicast.py [--n 100000] [--runs 1] [--storm 20]``. Loopback only, bounded.
Prints one line per broadcast and a Markdown table (medians over runs). Exit status 1 on a duplicate or lost user.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
from harness import address_for, peak_rss_mb

TOKEN = "sandbox-line-access-token"
SECRET = "sandbox-line-channel-secret"
MULTICAST = "/v2/bot/message/multicast"
LINE_LIMIT = 200.0  # multicast requests/s (reference/line.md "Sending")


def user_id(index: int) -> str:
    """A LINE-shaped user id (``U`` + 32 hex digits), deterministic so the emulator and the database agree."""
    return address_for("line", index)


# ---------------------------------------------------------------------------------------------------- the child


async def child_ours(url: str, workdir: str, issue_id: int, rate: float) -> dict[str, Any]:
    """The product path: open_runtime (LINE only) and its dispatcher, for ``issue_id``."""
    from bots.app import open_runtime
    from bots.sandbox.stack import sandbox_settings

    settings = sandbox_settings(Path(workdir), line_api_url=url, line_data_api_url=url,
                                line_multicast_rate_per_second=rate, telegram_bot_token=None, smtp_host=None)
    async with open_runtime(settings) as runtime:
        started = time.perf_counter()
        summary = await runtime.dispatcher().dispatch(issue_id)
        wall = time.perf_counter() - started
    return {"wall": wall, "finished": dict(summary.finished.get("line", {})), "rss_mb": peak_rss_mb()}


# ---------------------------------------------------------------------------------------------------- the parent


@dataclass
class Broadcast:
    """One broadcast as the emulator saw it (plus the child's wall time and RSS)."""

    kind: str
    users: int
    requests: int
    statuses: dict[int, int]
    span: float
    peak_per_second: int
    rate_limited: int
    lost: int
    duplicates: int
    wall: float
    enqueue: float
    rss_mb: float
    deliveries: dict[str, int]

    @property
    def rate(self) -> float:
        return (self.requests - 1) / self.span if self.span > 0 else float("nan")


def peak_in_one_second(times: list[float]) -> int:
    """The most timestamps (seconds, sorted) inside any window of one second."""
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


async def one_broadcast(kind: str, users: int, storm: int, rate: float, template: Path, workdir: Path) -> Broadcast:
    from bots.sandbox.line_api import LineEmulator

    emulator = LineEmulator(TOKEN, SECRET)
    url = await emulator.start()
    watcher: asyncio.Task[None] | None = None
    try:
        for i in range(users):
            await emulator.add_user(user_id(i), display_name=f"読者{i}", friend=True)
        emulator.rate_limit(multicast_per_second=LINE_LIMIT)
        rundir = workdir / kind
        database_url = harness.fresh_copy(template, rundir)
        issue_id, counts, enqueue_seconds = await harness.new_issue(database_url, ["line"])
        assert counts["line"] == users, counts

        if kind == "storm":
            async def inject_at_half() -> None:
                while len(emulator.delivered) < users // 2:  # bounded by the child's timeout (cancelled after)
                    await asyncio.sleep(0.01)
                emulator.fail_next(MULTICAST, 500, {"message": "Internal Server Error"}, count=storm,
                                   accept_before_failing=True)
            watcher = asyncio.create_task(inject_at_half())

        timeout = 10 * math.ceil(users / 500) + 300
        result = await harness.run_child(__file__, ["--child", url, str(rundir), str(issue_id), str(rate)], timeout)

        calls = [r for r in emulator.requests if r.path == MULTICAST]
        times = sorted(r.at.timestamp() for r in calls)
        per_user = Counter(d.user_id for d in emulator.delivered if d.via == "multicast")
        return Broadcast(
            kind=kind, users=users, requests=len(calls), statuses=dict(Counter(r.status for r in calls)),
            span=(times[-1] - times[0]) if times else 0.0, peak_per_second=peak_in_one_second(times),
            rate_limited=emulator.rate_limited["multicast"],
            lost=sum(1 for i in range(users) if per_user[user_id(i)] == 0),
            duplicates=sum(n - 1 for n in per_user.values() if n > 1),
            wall=float(result["wall"]), enqueue=enqueue_seconds, rss_mb=float(result["rss_mb"]),
            deliveries=(await harness.delivery_counts(database_url, issue_id)).get("line", {}))
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await emulator.stop()


def line_for(run: int, b: Broadcast) -> str:
    return (f"run {run} {b.kind}: {b.requests} multicasts {b.statuses} in {b.span:.2f} s = {b.rate:.1f} req/s "
            f"(peak {b.peak_per_second} in one second), 429s {b.rate_limited}, dispatch wall {b.wall:.2f} s "
            f"(enqueue {b.enqueue:.2f} s before), lost {b.lost}, duplicates {b.duplicates}, child peak RSS "
            f"{b.rss_mb:.0f} MB; deliveries {b.deliveries}")


def report(users: int, storm: int, rate: float, runs: list[dict[str, Broadcast]], setup: dict[str, float],
           loads: tuple[str, str]) -> str:
    def med(kind: str, attr: str) -> float:
        return harness.median_of(runs, kind, attr)

    goal = math.ceil(users / 500)
    clean_requests = int(med("clean", "requests"))
    wall = med("clean", "wall")
    rows = [
        [name, requests, f"{med(kind, 'rate'):.1f}", f"{med(kind, 'peak_per_second'):.0f}",
         f"{med(kind, 'rate_limited'):.0f}", f"{med(kind, 'wall'):.1f}", f"{med(kind, 'enqueue'):.1f}",
         f"{max(r[kind].lost for r in runs)} / {max(r[kind].duplicates for r in runs)}", f"{med(kind, 'rss_mb'):.0f}"]
        for kind, name, requests in (
            ("clean", "clean", f"{clean_requests} (goal {goal})"),
            ("storm", f"5xx storm ({storm} accepted-then-500)", f"{int(med('storm', 'requests'))}"),
        )
    ]
    ideal = goal / rate
    ok = (clean_requests == goal and all(r[k].lost == 0 and r[k].duplicates == 0 for r in runs for k in r)
          and med("clean", "rate_limited") == 0)
    return "\n".join([
        f"{users:,} LINE friends, one text message each, dispatcher + `LineSender` at {rate:g} req/s against the "
        f"emulator's 200 req/s limit; median of {len(runs)} run(s); import of the readers {setup['import']:.1f} s, "
        f"emulator users {setup['users']:.1f} s; load average (1/5/15 min) {loads[0]} before, {loads[1]} after:",
        "",
        *harness.markdown_table(["broadcast", "multicast requests", "req/s (span)", "peak req in 1 s", "429s",
                                 "dispatch wall (s)", "enqueue (s)", "lost / duplicated (worst)",
                                 "dispatcher peak RSS (MB)"], rows),
        "",
        f"Request rate / LINE's 200 req/s: {med('clean', 'rate') / LINE_LIMIT:.3f} (our setting {rate:g}/s: "
        f"{med('clean', 'rate') / rate:.3f} of it). At {rate:g} req/s the {goal} requests would take about "
        f"{ideal:.1f} s; the dispatch took {wall:.1f} s ({ideal / wall:.2f} of that pace). Checks (requests = "
        f"ceil(N/500), no 429, nobody lost or duplicated): {'passed' if ok else 'FAILED'}.",
        *([] if users >= 100_000 else [
            "",
            f"**Extrapolated** (not measured) to 100,000 users, linearly from this run's per-request time "
            f"({wall / clean_requests:.2f} s per multicast of 500): {math.ceil(100_000 / 500)} requests, about "
            f"{wall / clean_requests * math.ceil(100_000 / 500):.0f} s of dispatch for the clean broadcast."]),
    ])


async def bench(users: int, runs: int, storm: int, rate: float) -> int:
    before = harness.load_average()
    results: list[dict[str, Broadcast]] = []
    with tempfile.TemporaryDirectory(prefix="otayori-bench-line-") as tmp:
        template = Path(tmp) / "template"
        import_seconds = await harness.reader_template(template, {"line": [user_id(i) for i in range(users)]})
        from bots.sandbox.line_api import LineEmulator

        probe = LineEmulator(TOKEN, SECRET)
        started = time.perf_counter()
        for i in range(users):
            await probe.add_user(user_id(i), friend=True)
        setup = {"import": import_seconds, "users": time.perf_counter() - started}
        print(f"imported {users} readers in {import_seconds:.1f} s; {users} emulator friends in "
              f"{setup['users']:.1f} s", file=sys.stderr, flush=True)
        for run in range(1, runs + 1):
            sides = {}
            for kind in ("clean", "storm"):
                sides[kind] = await one_broadcast(kind, users, storm, rate, template, Path(tmp))
                print(line_for(run, sides[kind]), flush=True)
            results.append(sides)
    print()
    print(report(users, storm, rate, results, setup, (before, harness.load_average())))
    bad = any(b.lost or b.duplicates for r in results for b in r.values())
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="LINE subscribers (default 100000)")
    parser.add_argument("--runs", type=int, default=1, help="repeat both broadcasts R times (default 1)")
    parser.add_argument("--storm", type=int, default=20, help="accepted-then-500 answers injected (default 20)")
    parser.add_argument("--rate", type=float, default=150.0, help="our LineSender rate, req/s (default 150)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        url, workdir, issue_id, rate = args.child
        print(json.dumps(asyncio.run(child_ours(url, workdir, int(issue_id), float(rate)))), flush=True)
        return 0
    if args.n < 2 or args.runs < 1 or args.storm < 1:
        parser.error("--n must be >= 2, --runs and --storm >= 1")
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(bench(args.n, args.runs, args.storm, args.rate))
    return 130


if __name__ == "__main__":
    sys.exit(main())
