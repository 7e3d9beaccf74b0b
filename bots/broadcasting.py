"""Broadcast an issue from the command line (or the demo): preview, confirm, enqueue, dispatch.

It uses a bare Telegram ``Bot`` and a LINE API client, never polling (that would fight ``otayori run`` for updates).
It works whether or not ``run`` is running: deliveries are claimed atomically, so each is sent by exactly one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bots.app import Runtime, open_runtime
from core import render, texts
from core.broadcast import IssueDraft, create_issue, defer_over_quota, enqueue, recipient_counts
from core.dispatcher import ChannelNotice, DispatchSummary
from core.reports import DeliveryReport, delivery_report
from core.settings import Settings


def messages_per_line_recipient(draft: IssueDraft) -> int:
    """How much LINE quota one recipient costs: one per request (a request of up to 5 message objects counts once
    per recipient); an issue over 5 parts of 5,000 UTF-16 code units needs more requests (reference/line.md)."""
    parts = len(render.issue_parts("line", draft.title, draft.body_md, texts.text("issue_footer", "ja")))
    return -(-parts // render.LINE_MESSAGES_PER_REQUEST)


@dataclass
class BroadcastResult:
    """The issue id, the recipients per channel when it was enqueued, and the final report."""

    issue_id: int
    enqueued: dict[str, int]
    report: DeliveryReport
    summary: DispatchSummary


async def broadcast_with(
    runtime: Runtime, draft: IssueDraft, *, confirm: Callable[[dict[str, int], int | None], bool] | None = None,
    created_by: str = "cli", progress: Any = None,
) -> BroadcastResult | None:
    """Preview recipients per enabled channel and the LINE quota left, ask ``confirm(counts, line_quota)`` (None =
    yes), then create, enqueue and dispatch. LINE recipients beyond the quota are deferred, not failed.
    ``progress``: an unstarted ``rich.progress.Progress`` to show one bar per channel while sending.

    Returns None when ``confirm`` said no (nothing stored).
    """
    channels = runtime.enabled_channels()
    counts = await recipient_counts(runtime.db, channels)
    line_quota = await runtime.line_quota_remaining()
    if confirm is not None and not confirm(counts, line_quota):
        return None
    issue = await create_issue(runtime.db, draft, created_by=created_by)
    assert issue.id is not None
    enqueued = await enqueue(runtime.db, issue.id, channels)
    deferred = 0
    if line_quota is not None and enqueued.get("line", 0) * messages_per_line_recipient(draft) > line_quota:
        # Over LINE's monthly quota: defer the excess now (resumable), never send requests that must fail.
        allowed = line_quota // messages_per_line_recipient(draft)
        deferred = await defer_over_quota(runtime.db, issue.id, "line", allowed,
                                          "over the LINE monthly message quota")
    if progress is not None:
        progress.start()  # a rich Progress: one bar per channel while the dispatcher sends
    dispatching = asyncio.create_task(runtime.dispatcher().dispatch(issue.id))
    watcher = asyncio.create_task(watch_progress(runtime, issue.id, progress)) if progress is not None else None
    try:
        summary = await dispatching
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    if progress is not None:
        await show_progress(runtime, issue.id, progress)
    report = await delivery_report(runtime.db, issue.id)
    assert report is not None
    if deferred:
        summary.notices.append(ChannelNotice("line", issue.id, "over the LINE monthly message quota", deferred))
    return BroadcastResult(issue.id, enqueued, report, summary)


PROGRESS_INTERVAL = 0.5  # seconds between progress reads from the outbox


async def show_progress(runtime: Runtime, issue_id: int, progress: Any) -> None:
    """Update a ``rich.progress.Progress`` with one bar per channel: finished / all deliveries of the issue."""
    report = await delivery_report(runtime.db, issue_id)
    if report is None:
        return
    tasks = getattr(progress, "_otayori_tasks", None)
    if tasks is None:
        tasks = progress._otayori_tasks = {}
    totals: dict[str, int] = {}
    finished: dict[str, int] = {}
    for (channel, status), count in report.counts.items():
        totals[channel] = totals.get(channel, 0) + count
        if status not in ("pending", "sending"):
            finished[channel] = finished.get(channel, 0) + count
    for channel, total in sorted(totals.items()):
        if channel not in tasks:
            tasks[channel] = progress.add_task(channel, total=total)
        progress.update(tasks[channel], total=total, completed=finished.get(channel, 0))


async def watch_progress(runtime: Runtime, issue_id: int, progress: Any) -> None:
    """Refresh :func:`show_progress` every :data:`PROGRESS_INTERVAL` seconds until cancelled (reads the outbox, so
    it shows deliveries made by any dispatcher, including ``otayori run``'s)."""
    while True:
        await show_progress(runtime, issue_id, progress)
        await asyncio.sleep(PROGRESS_INTERVAL)


async def broadcast_issue(
    settings: Settings, draft: IssueDraft, *, confirm: Callable[[dict[str, int], int | None], bool] | None = None,
    out: Any = None,
) -> BroadcastResult | None:
    """:func:`broadcast_with` on a fresh runtime for ``settings``; prints a short result to ``out`` (a rich Console)."""
    async with open_runtime(settings) as runtime:
        if out is None:
            result = await broadcast_with(runtime, draft, confirm=confirm)
        else:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            columns = (TextColumn("{task.description:>8}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            bar = Progress(*columns, console=out, transient=False)  # started after the confirmation prompt
            try:
                result = await broadcast_with(runtime, draft, confirm=confirm, progress=bar)
            finally:
                bar.stop()
    if result is not None and out is not None:
        totals = result.report.by_status()
        out.print(f"issue {result.issue_id}: " + ", ".join(f"{k} {v}" for k, v in sorted(totals.items())),
                  markup=False, highlight=False)
        for notice in result.summary.notices:
            out.print(f"{notice.channel}: stopped ({notice.reason}); {notice.deferred} deferred", markup=False)
    return result
