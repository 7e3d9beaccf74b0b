"""Burst of LINE webhooks: N people send ``登録 <campaign>`` at the same moment (a QR code on a projector).

Measures, per request, the time until our ``POST /webhooks/line`` answers 200 — the answer comes only after the raw
event is stored (issue 2) — and compares it with a baseline: the same signed requests against a trivial Starlette
endpoint that verifies the signature (the SDK's ``WebhookParser``, as ours does) and answers 200 without storing.
LINE records ``request_timeout`` when the answer takes more than about 2 s (reference/line.md "Webhooks"): the goal is
p99 < 2 s. Each run also verifies exactly-once: every event stored once, processed once without error, one terms
reply per person, one terms offer per person, and no "database is locked" in the logs.

Everything runs on 127.0.0.1 (``bots.sandbox.stack``: the LINE and Telegram emulators, our app, a fresh SQLite file
per run). The requests are sent by a separate process (this script with ``--fire``, aiohttp) so that the client's CPU
is not taken from the server, as with the real LINE Platform. The webhook bodies are built and signed by the LINE
emulator itself (its ``send_events`` posts them once to the baseline endpoint and records the exact bytes), so reply
tokens are known to the emulator and our replies are real.

Usage: ``.venv/bin/python bench/webhook_burst.py [--people 400] [--runs 5]``; prints a Markdown table (median of the
runs) for the README. Exit status 1 when a run fails a check (a non-200 answer, a lost or repeated event...).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CAMPAIGN = "seminar-2026-12"
#: Upper bound (seconds) for one burst and for the processing that follows it: every wait here is bounded.
BURST_TIMEOUT = 120.0
PROCESS_TIMEOUT = 120.0
#: Concurrent preparation webhooks (each is one request from the emulator to the baseline endpoint).
PREPARE_CONCURRENCY = 50


# ---------------------------------------------------------------------------------------------------- the client


async def fire(url: str, requests: list[dict[str, str]]) -> dict[str, Any]:
    """POST every request at once (one connection each, like separate LINE deliveries); return the timings.

    ``requests``: ``[{"body": <JSON text>, "signature": <X-Line-Signature>}, ...]``. Returns ``{"results": [[status,
    seconds], ...], "wall": seconds}`` where ``seconds`` runs from just before the request is sent to the end of the
    answer's body. Network errors count as status 0.
    """
    import aiohttp

    connector = aiohttp.TCPConnector(limit=0, force_close=True)  # no client-side cap, no connection reuse
    timeout = aiohttp.ClientTimeout(total=BURST_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(request: dict[str, str]) -> list[float]:
            headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "LineBotWebhook/2.0",
                       "X-Line-Signature": request["signature"]}
            started = time.perf_counter()
            try:
                async with session.post(url, data=request["body"].encode("utf-8"), headers=headers) as answer:
                    await answer.read()
                    status = answer.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            return [status, time.perf_counter() - started]

        started = time.perf_counter()
        results = await asyncio.gather(*(one(r) for r in requests))
        return {"results": results, "wall": time.perf_counter() - started}


def fire_main(url: str, path: str) -> None:
    """``--fire URL FILE``: read the requests, wait for a line on stdin (the go signal), fire, print JSON."""
    requests = json.loads(Path(path).read_text(encoding="utf-8"))
    print("ready", flush=True)
    sys.stdin.readline()
    print(json.dumps(asyncio.run(fire(url, requests))), flush=True)


async def fire_from_subprocess(url: str, requests: list[dict[str, str]], workdir: Path) -> tuple[dict[str, Any],
                                                                                                   datetime]:
    """Run :func:`fire` in a child process; returns its result and the wall-clock moment the go signal was sent."""
    path = workdir / "requests.json"
    path.write_text(json.dumps(requests, ensure_ascii=False), encoding="utf-8")
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).resolve()), "--fire", url, str(path),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=str(ROOT),
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        ready = await asyncio.wait_for(child.stdout.readline(), timeout=60)
        if ready.strip() != b"ready":
            raise RuntimeError(f"load generator did not start: {ready!r}")
        go_at = datetime.now(UTC)
        child.stdin.write(b"go\n")
        await child.stdin.drain()
        line = await asyncio.wait_for(child.stdout.readline(), timeout=BURST_TIMEOUT + 30)
        await asyncio.wait_for(child.wait(), timeout=30)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    return json.loads(line), go_at


# ---------------------------------------------------------------------------------------------------- the server side


def baseline_app(channel_secret: str):  # type: ignore[no-untyped-def]
    """A trivial webhook endpoint: verify the signature over the raw body (as ours does), answer 200, store nothing."""
    from linebot.v3.exceptions import InvalidSignatureError
    from linebot.v3.webhook import WebhookParser
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    parser = WebhookParser(channel_secret)

    async def webhook(request: Request) -> PlainTextResponse:
        body = await request.body()
        try:
            parser.parse(body.decode("utf-8"), request.headers.get("x-line-signature", ""))
        except InvalidSignatureError:
            return PlainTextResponse("invalid signature", status_code=400)
        return PlainTextResponse("OK")

    return Starlette(routes=[Route("/webhooks/line", webhook, methods=["POST"])])


class LogCounter(logging.Handler):
    """Counts log records at WARNING and above, and those that mention a locked database."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.warnings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.warnings.append(record.getMessage()[:300])

    @property
    def locked(self) -> int:
        return sum("locked" in w.lower() for w in self.warnings)


@dataclass
class Timings:
    """Ack times (seconds) of one burst and its wall time."""

    acks: list[float]
    wall: float
    statuses: Counter[int] = field(default_factory=Counter)

    @property
    def p50(self) -> float:
        return percentile(self.acks, 50)

    @property
    def p99(self) -> float:
        return percentile(self.acks, 99)

    @property
    def max(self) -> float:
        return max(self.acks)

    @property
    def rate(self) -> float:
        return len(self.acks) / self.wall


@dataclass
class RunResult:
    """One run: our endpoint, the baseline, processing time and the exactly-once checks."""

    ours: Timings
    baseline: Timings
    processed_after: float
    problems: list[str]


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (the smallest value with at least ``pct`` % of the values at or below it)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil without floats
    return ordered[int(rank) - 1]


def timings(result: dict[str, Any]) -> Timings:
    statuses = Counter(int(status) for status, _ in result["results"])
    return Timings([float(seconds) for _, seconds in result["results"]], float(result["wall"]), statuses)


async def prepare(line, users: list[str], sink_url: str) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    """Let the LINE emulator build, sign and post (to ``sink_url``) one ``登録`` webhook per user; return the exact
    bodies and signatures it sent. The emulator now knows the reply tokens (valid 60 s on its clock)."""
    line.webhook_url = sink_url
    line.clear_records()
    gate = asyncio.Semaphore(PREPARE_CONCURRENCY)

    async def one(user: str) -> None:
        async with gate:
            status, _ = await line.send_events([line.text_event(user, f"登録 {CAMPAIGN}")])
            if status != 200:
                raise RuntimeError(f"the baseline endpoint refused a prepared webhook: {status}")

    await asyncio.gather(*(one(u) for u in users))
    requests = [{"body": post.body.decode("utf-8"), "signature": post.signature} for post in line.webhook_posts]
    line.clear_records()
    return requests


async def wait_processed(stack, count: int) -> datetime:  # type: ignore[no-untyped-def]
    """Wait (bounded) until ``count`` inbound events are processed; return the latest ``processed_at``."""
    from sqlmodel import func, select

    from storage.models import InboundEvent

    loop = asyncio.get_running_loop()
    deadline = loop.time() + PROCESS_TIMEOUT
    while True:
        async with stack.runtime.db.read() as session:
            done = (await session.exec(
                select(func.count()).select_from(InboundEvent)
                .where(InboundEvent.processed_at.is_not(None))  # type: ignore[union-attr]
            )).one()
        if done >= count:
            async with stack.runtime.db.read() as session:
                row = (await session.exec(
                    select(InboundEvent).order_by(InboundEvent.processed_at.desc()).limit(1)  # type: ignore[union-attr]
                )).first()
            return row.processed_at
        if loop.time() >= deadline:
            raise TimeoutError(f"only {done} of {count} events processed within {PROCESS_TIMEOUT} s")
        await asyncio.sleep(0.05)


async def wait_replied(line, users: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Wait (bounded) until every user got a message: replies follow the commit that marks an event processed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PROCESS_TIMEOUT
    while not all(line.deliveries_to(u) for u in users) and loop.time() < deadline:
        await asyncio.sleep(0.05)


async def verify(stack, users: list[str], requests: list[dict[str, str]], log: LogCounter) -> list[str]:  # type: ignore[no-untyped-def]
    """Exactly-once checks after a burst; returns the problems found (empty = all good)."""
    from sqlmodel import select

    from storage.models import InboundEvent, TermsOffer

    await wait_replied(stack.line, users)
    await asyncio.sleep(0.2)  # a duplicate reply would come within this time
    problems: list[str] = []
    sent_keys = {json.loads(r["body"])["events"][0]["webhookEventId"] for r in requests}
    async with stack.runtime.db.read() as session:
        inbound = list((await session.exec(select(InboundEvent))).all())
        offers = list((await session.exec(select(TermsOffer))).all())
    if len(inbound) != len(users) or {row.event_key for row in inbound} != sent_keys:
        problems.append(f"{len(inbound)} inbound events stored for {len(users)} webhooks")
    errors = [row.error for row in inbound if row.error]
    if errors:
        problems.append(f"{len(errors)} events failed, e.g. {errors[0]}")
    per_user = Counter(o.address for o in offers)
    if per_user != Counter(users):
        problems.append(f"terms offers per person: {Counter(per_user.values())} (want exactly 1 each)")
    replies = Counter(d.user_id for d in stack.line.delivered if d.via == "reply")
    pushes = Counter(d.user_id for d in stack.line.delivered if d.via == "push")
    if replies != Counter(users):
        problems.append(f"replies per person: {Counter(replies[u] for u in users)}; pushes: {sum(pushes.values())}")
    if log.locked:
        problems.append(f"{log.locked} 'database is locked' log records")
    if log.warnings:
        problems.append(f"{len(log.warnings)} warnings, e.g. {log.warnings[0]}")
    return problems


async def one_run(people: int, workdir: Path) -> RunResult:
    """A fresh stack and database, the baseline burst, then the same burst against our endpoint."""
    from bots.sandbox.server import LocalServer
    from bots.sandbox.stack import running_stack, sandbox_settings
    from core.campaigns import add_campaign

    settings = sandbox_settings(workdir / "stack")
    log = LogCounter()
    loggers = (logging.getLogger(), logging.getLogger("uvicorn"))  # uvicorn's loggers do not propagate to the root
    for logger in loggers:
        logger.addHandler(log)
    try:
        async with running_stack(settings) as stack, \
                LocalServer(baseline_app(settings.line_channel_secret or "")) as baseline_url:
            line = stack.line
            ours_url = line.webhook_url
            await add_campaign(stack.runtime.db, CAMPAIGN, "12月 東京セミナー")
            users = [await line.add_user(display_name=f"参加者{i}", friend=True) for i in range(people)]
            requests = await prepare(line, users, f"{baseline_url}/webhooks/line")
            line.webhook_url = ours_url

            baseline, _ = await fire_from_subprocess(f"{baseline_url}/webhooks/line", requests, workdir)
            ours, go_at = await fire_from_subprocess(ours_url, requests, workdir)
            latest = await wait_processed(stack, people)
            problems = await verify(stack, users, requests, log)
            ours_t, base_t = timings(ours), timings(baseline)
            for name, t in (("ours", ours_t), ("baseline", base_t)):
                if t.statuses != Counter({200: people}):
                    problems.append(f"{name}: answers {dict(t.statuses)} (want {people} x 200)")
            return RunResult(ours_t, base_t, (latest - go_at).total_seconds(), problems)
    finally:
        for logger in loggers:
            logger.removeHandler(log)


def median(values: list[float]) -> float:
    return statistics.median(values)


def report(people: int, runs: list[RunResult]) -> str:
    """Per-run lines and the Markdown table of medians over the runs."""
    lines = []
    for i, r in enumerate(runs, 1):
        lines.append(
            f"run {i}: ours p50 {r.ours.p50 * 1000:.0f} ms, p99 {r.ours.p99 * 1000:.0f} ms, max {r.ours.max * 1000:.0f}"
            f" ms, wall {r.ours.wall:.2f} s ({r.ours.rate:.0f} req/s), all processed after {r.processed_after:.2f} s"
            f" | baseline p50 {r.baseline.p50 * 1000:.0f} ms, p99 {r.baseline.p99 * 1000:.0f} ms, max"
            f" {r.baseline.max * 1000:.0f} ms, wall {r.baseline.wall:.2f} s"
            f" | {'ok' if not r.problems else '; '.join(r.problems)}"
        )

    def row(name: str, pick, processed: str) -> str:  # type: ignore[no-untyped-def]
        values = [pick(r) for r in runs]
        p50, p99, mx = (median([getattr(v, a) for v in values]) * 1000 for a in ("p50", "p99", "max"))
        wall = median([v.wall for v in values])
        rate = median([v.rate for v in values])
        return f"| {name} | {p50:.0f} | {p99:.0f} | {mx:.0f} | {wall:.2f} | {rate:.0f} | {processed} |"

    processed = f"{median([r.processed_after for r in runs]):.2f}"
    ours_p99 = median([r.ours.p99 for r in runs])
    base_p99 = median([r.baseline.p99 for r in runs])
    table = [
        f"Burst of {people} concurrent signed `登録 {CAMPAIGN}` webhooks, one connection each, median of {len(runs)}"
        f" runs (ack = time to the 200 answer):",
        "",
        "| endpoint | ack p50 (ms) | ack p99 (ms) | ack max (ms) | burst wall (s) | req/s | all processed after (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        row("`POST /webhooks/line` (verify, store, then 200)", lambda r: r.ours, processed),
        row("baseline (verify, 200, store nothing)", lambda r: r.baseline, "—"),
        "",
        f"p99 ours / baseline: {ours_p99 / base_p99:.1f}x; goal p99 < 2000 ms: "
        f"{'met' if ours_p99 < 2.0 else 'NOT met'}. Exactly-once checks: "
        f"{'passed in every run' if not any(r.problems for r in runs) else 'FAILED (see the runs above)'}.",
    ]
    return "\n".join(lines + [""] + table)


async def bench(people: int, runs: int) -> int:
    results = []
    for i in range(runs):
        with tempfile.TemporaryDirectory(prefix="otayori-bench-") as tmp:
            result = await one_run(people, Path(tmp))
        results.append(result)
        print(f"run {i + 1}/{runs} done: p99 {result.ours.p99 * 1000:.0f} ms", file=sys.stderr, flush=True)
    print(report(people, results))
    return 1 if any(r.problems for r in results) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=400, help="concurrent webhooks per burst (default 400)")
    parser.add_argument("--runs", type=int, default=5, help="repeat the whole measurement R times (default 5)")
    parser.add_argument("--fire", nargs=2, metavar=("URL", "FILE"), help=argparse.SUPPRESS)  # the load generator
    args = parser.parse_args(argv)
    if args.fire:
        fire_main(*args.fire)
        return 0
    if args.people < 1 or args.runs < 1:
        parser.error("--people and --runs must be >= 1")
    sys.path.insert(0, str(ROOT))
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(bench(args.people, args.runs))
    return 130


if __name__ == "__main__":
    sys.exit(main())
