"""Opt-out race: withdrawals (解除) arriving while a broadcast is being sent -> deliveries after a withdrawal = 0.

Per run: a fresh SQLite file with ``--recipients`` consented endpoints (LINE and Telegram, ``--telegram-share`` of them
on Telegram; set-up by ``bench/harness.py`` as for ``core_overhead.py``), one issue enqueued, then, at the same time
in one event loop:

* the real dispatcher with the real senders (``bots.app.open_runtime``) against the emulators, each in its own
  process. Our rate limits are lowered for the run (Telegram ``--telegram-rate``/s, LINE ``--line-rate`` multicasts/s)
  so that the broadcast lasts long enough for withdrawals to land in the middle of it;
* ``--withdrawals`` people, chosen at random among the recipients, each sending 解除 through the real chat path
  (``SubscriptionService.handle_text``), spread evenly over ``--window`` seconds.

What counts as a violation (DESIGN.md: "no send *starts* after a withdrawal is committed"): a withdrawn endpoint's
delivery that was attempted (``attempted_at``) after its withdrawal's ledger time (``occurred_at``, stamped inside the
withdrawal's write transaction, which commits after it). SQLite runs write transactions one at a time, so an attempt
mark taken after that commit re-checks consent and is ``skipped`` instead. A second, independent check uses the
emulators: no withdrawn person whose delivery is ``skipped`` received anything (Telegram ``/_emulator/sent``, LINE
multicast bodies). It also reports how many of the withdrawals came before their attempt (skipped), how many after
it (already sent), and how many messages the emulator accepted after the withdrawal committed although the attempt
started before (in flight: allowed by the definition; shown for transparency).

Usage: ``.venv/bin/python bench/opt_out_race.py [--recipients 10000] [--withdrawals 1000] [--runs 3]``. Exit status 1
when any violation is found or a delivery is not final.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
from harness import Emulators, address_for

#: Upper bound (seconds) for one broadcast with its withdrawals.
RUN_TIMEOUT = 900.0


async def one_run(emulators: Emulators, counts: dict[str, int], args: argparse.Namespace, workdir: Path,
                  number: int) -> dict[str, Any]:
    import aiohttp
    from sqlmodel import select

    from bots.app import open_runtime
    from core.dispatcher import DispatchPolicy
    from core.subscriptions import ChatContext
    from storage.models import ConsentEvent, Delivery, Endpoint

    database_url = f"sqlite+aiosqlite:///{workdir / f'race{number}.sqlite3'}"
    readers = {channel: [address_for(channel, i) for i in range(count)] for channel, count in counts.items()}
    await harness.reader_database(database_url, readers)
    issue_id, _, _ = await harness.new_issue(database_url, list(counts))
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{emulators.telegram_url}/_emulator/sent?since=0") as answer:
            telegram_since = (await answer.json())["next"]
        async with http.post(f"{emulators.line_url}/_emulator/clear", json={}) as answer:
            await answer.read()
    settings = harness.emulator_settings(database_url, {"telegram_url": emulators.telegram_url,
                                                        "line_url": emulators.line_url,
                                                        "smtp_port": emulators.smtp_port}, 1)
    settings = settings.model_copy(update={"telegram_rate_per_second": args.telegram_rate,
                                           "line_multicast_rate_per_second": args.line_rate,
                                           "smtp_host": None})
    rng = random.Random(number)
    everyone = [(channel, address) for channel, addresses in readers.items() for address in addresses]
    chosen = rng.sample(everyone, args.withdrawals)
    committed_at: dict[tuple[str, str], float] = {}  # time.monotonic() when the withdrawal's transaction returned
    async with open_runtime(settings) as runtime:
        dispatcher = runtime.dispatcher(DispatchPolicy(concurrency=args.concurrency))

        async def withdraw_all() -> None:
            start = time.monotonic()
            for index, (channel, address) in enumerate(chosen):  # bounded: --withdrawals people
                await asyncio.sleep(max(0.0, start + index * args.window / len(chosen) - time.monotonic()))
                replies = await runtime.subscriptions.handle_text(ChatContext(channel=channel, address=address), "解除")
                if replies[0].kind != "withdrawn":
                    raise RuntimeError(f"{channel}:{address}: {replies[0].kind}")
                committed_at[(channel, address)] = time.monotonic()

        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(dispatcher.dispatch(issue_id), withdraw_all()), timeout=RUN_TIMEOUT)
        elapsed = time.perf_counter() - started
    # ---- the checks, from the database and from the emulators
    from storage.database import Database

    db = Database(database_url)
    try:
        async with db.read() as session:
            rows = (await session.exec(select(Delivery, Endpoint).join(Endpoint, Endpoint.id == Delivery.endpoint_id)
                                       .where(Delivery.issue_id == issue_id))).all()
            withdraws = (await session.exec(select(ConsentEvent).where(ConsentEvent.action == "withdraw"))).all()
    finally:
        await db.dispose()
    withdrawn_at = {event.endpoint_id: event.occurred_at for event in withdraws}
    by_address = {(endpoint.channel, endpoint.address): (delivery, endpoint) for delivery, endpoint in rows}
    statuses: dict[str, int] = {}
    for delivery, _ in rows:
        statuses[delivery.status] = statuses.get(delivery.status, 0) + 1
    violations, skipped, sent_before, other = [], 0, 0, 0
    for key in chosen:
        delivery, endpoint = by_address[key]
        when = withdrawn_at[endpoint.id]
        if delivery.status == "skipped":
            skipped += 1
        elif delivery.attempted_at is not None and delivery.attempted_at > when:
            violations.append((key, delivery.status, delivery.attempted_at, when))
        elif delivery.status == "sent":
            sent_before += 1
        else:
            other += 1
    # The emulators' view: who received the issue, and when (Telegram: time.monotonic() of the emulator, the same
    # system-wide clock as ours on Linux).
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{emulators.telegram_url}/_emulator/sent?since={telegram_since}") as answer:
            telegram_sent = (await answer.json())["messages"]
    line_requests = await emulators.accepted_multicasts()
    received: dict[tuple[str, str], float | None] = {}
    for message in telegram_sent:
        key = ("telegram", str(message["chat_id"]))
        received[key] = min(received.get(key) or message["at"], message["at"])
    for request in line_requests:
        for address in request["body"]["to"]:
            received[("line", address)] = None
    received_but_skipped = [key for key in chosen if key in received and by_address[key][0].status == "skipped"]
    in_flight = sum(1 for key in chosen if received.get(key) is not None and received[key] > committed_at[key])
    not_final = {s: n for s, n in statuses.items() if s not in ("sent", "skipped")}
    return {"elapsed": elapsed, "violations": len(violations), "violation_examples": violations[:3],
            "received_but_skipped": len(received_but_skipped), "skipped": skipped, "sent_before": sent_before,
            "other": other, "in_flight": in_flight, "statuses": statuses, "not_final": not_final,
            "recipients": sum(counts.values()), "withdrawals": len(chosen)}


async def main_async(args: argparse.Namespace) -> int:
    telegram = round(args.recipients * args.telegram_share)
    counts = {"line": args.recipients - telegram, "telegram": telegram}
    runs = []
    with tempfile.TemporaryDirectory(prefix="otayori-opt-out-race-") as tmp:
        emulators = Emulators(Path(tmp))
        emulators.start()
        try:
            await emulators.register(counts)
            for number in range(1, args.runs + 1):
                result = await one_run(emulators, counts, args, Path(tmp), number)
                runs.append(result)
                print(f"run {number}: {result['recipients']} recipients, {result['withdrawals']} withdrawals in "
                      f"{result['elapsed']:.1f} s; violations {result['violations']} "
                      f"(emulator: {result['received_but_skipped']} skipped people received something); skipped "
                      f"{result['skipped']}, sent before they withdrew {result['sent_before']}, other "
                      f"{result['other']}; in flight at the withdrawal {result['in_flight']}; statuses "
                      f"{result['statuses']}; load {os.getloadavg()[0]:.2f}", flush=True)
                if result["violation_examples"]:
                    print(f"  e.g. {result['violation_examples']}")
        finally:
            emulators.stop()
    print()
    print(f"Opt-out race — {args.recipients:,} recipients (LINE {counts['line']:,}, Telegram {counts['telegram']:,}), "
          f"{args.withdrawals:,} 解除 spread over {args.window:g} s during the broadcast; our limits set to Telegram "
          f"{args.telegram_rate:g}/s, LINE {args.line_rate:g} multicasts/s; SQLite; emulators in their own processes; "
          f"median of {len(runs)} runs; load average (1/5/15 min): {harness.load_average()}")
    print()
    rows = [
        harness.spread_row(name, [r[key] for r in runs], "{:.1f}" if key == "elapsed" else "{:,.0f}", goal)
        for name, key, goal in (
            ("deliveries attempted after the person's withdrawal committed", "violations", "0"),
            ("withdrawn people whose delivery is `skipped` but who received it (emulators)", "received_but_skipped",
             "0"),
            ("withdrawals before their attempt -> `skipped`", "skipped", ""),
            ("withdrawals after their attempt -> already `sent`", "sent_before", ""),
            ("… of which still in flight at the withdrawal (emulator accepted after it)", "in_flight", ""),
            ("broadcast wall time (s)", "elapsed", ""),
        )
    ]
    print("\n".join(harness.markdown_table(harness.SPREAD_COLUMNS, rows)))
    bad = [r for r in runs if r["violations"] or r["received_but_skipped"] or r["not_final"] or r["other"]]
    print()
    print(f"Total violations over all runs: {sum(r['violations'] + r['received_but_skipped'] for r in runs)}; "
          f"{'every delivery final (sent/skipped)' if not any(r['not_final'] for r in runs) else 'NOT all final'}")
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--withdrawals", type=int, default=1_000)
    parser.add_argument("--telegram-share", type=float, default=0.3)
    parser.add_argument("--telegram-rate", type=float, default=100.0, help="our Telegram limit for the run (msg/s)")
    parser.add_argument("--line-rate", type=float, default=1.0, help="our LINE limit for the run (multicasts/s)")
    parser.add_argument("--window", type=float, default=30.0, help="seconds over which the withdrawals arrive")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if args.withdrawals > args.recipients:
        parser.error("--withdrawals must not exceed --recipients")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
