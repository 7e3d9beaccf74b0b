"""Broadcast an issue from the command line (or the demo): preview, confirm, enqueue, dispatch.

It uses a bare Telegram ``Bot`` and a LINE API client, never polling (that would fight ``otayori run`` for updates).
It works whether or not ``run`` is running: deliveries are claimed atomically, so each is sent by exactly one of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bots.app import Runtime, open_runtime
from core.broadcast import IssueDraft, create_issue, enqueue, recipient_counts
from core.dispatcher import DispatchSummary
from core.reports import DeliveryReport, delivery_report
from core.settings import Settings


@dataclass
class BroadcastResult:
    """The issue id, the recipients per channel when it was enqueued, and the final report."""

    issue_id: int
    enqueued: dict[str, int]
    report: DeliveryReport
    summary: DispatchSummary


async def broadcast_with(
    runtime: Runtime, draft: IssueDraft, *, confirm: Callable[[dict[str, int]], bool] | None = None,
    created_by: str = "cli",
) -> BroadcastResult | None:
    """Preview recipients per enabled channel, ask ``confirm`` (None = yes), then create, enqueue and dispatch.

    Returns None when ``confirm`` said no (nothing stored).
    """
    channels = runtime.enabled_channels()
    counts = await recipient_counts(runtime.db, channels)
    if confirm is not None and not confirm(counts):
        return None
    issue = await create_issue(runtime.db, draft, created_by=created_by)
    assert issue.id is not None
    enqueued = await enqueue(runtime.db, issue.id, channels)
    summary = await runtime.dispatcher().dispatch(issue.id)
    report = await delivery_report(runtime.db, issue.id)
    assert report is not None
    return BroadcastResult(issue.id, enqueued, report, summary)


async def broadcast_issue(
    settings: Settings, draft: IssueDraft, *, confirm: Callable[[dict[str, int]], bool] | None = None,
    out: Any = None,
) -> BroadcastResult | None:
    """:func:`broadcast_with` on a fresh runtime for ``settings``; prints a short result to ``out`` (a rich Console)."""
    async with open_runtime(settings) as runtime:
        result = await broadcast_with(runtime, draft, confirm=confirm)
    if result is not None and out is not None:
        totals = result.report.by_status()
        out.print(f"issue {result.issue_id}: " + ", ".join(f"{k} {v}" for k, v in sorted(totals.items())),
                  markup=False, highlight=False)
        for notice in result.summary.notices:
            out.print(f"{notice.channel}: stopped ({notice.reason}); {notice.deferred} deferred", markup=False)
    return result
