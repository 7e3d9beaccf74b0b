"""Scheduled issues in ``otayori run``: every few seconds, enqueue the issues whose time has come.

:func:`core.issues.enqueue_due` does the work in one transaction per round (never twice for one issue, also across
a restart or a second process); the background dispatcher of ``run`` (bots/app.py ``dispatch_forever``) then sends
the new deliveries within its next round. LINE deliveries beyond the month's quota are deferred, as for a broadcast
from the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from bots.app import Runtime
from bots.broadcasting import defer_line_excess
from bots.desk import scheduled_actor
from core.broadcast import IssueDraft
from core.effects import FollowBroadcast
from core.issues import DueIssue, enqueue_due, issue_detail

log = logging.getLogger(__name__)

#: Seconds between checks for due issues: a scheduled issue starts at most this long after its time.
DUE_INTERVAL = 5.0


async def enqueue_due_once(runtime: Runtime) -> list[DueIssue]:
    """Enqueue every due scheduled issue on the runtime's channels; defer LINE deliveries over the quota. An issue an
    admin scheduled from the chat is followed there (bots.desk: progress to that admin, the final report to every
    admin)."""
    due = await enqueue_due(runtime.db, runtime.enabled_channels())
    for item in due:
        log.info("scheduled issue %s started: %s", item.issue_id, item.enqueued)
        if item.waiting_channels:
            log.warning("issue %s names channels this process cannot send on (%s): their deliveries wait",
                        item.issue_id, ", ".join(item.waiting_channels))
        issue = (await issue_detail(runtime.db, item.issue_id)).issue
        await defer_line_excess(runtime, item.issue_id, item.enqueued, IssueDraft(issue.title, issue.body_md))
        actor = scheduled_actor(runtime.settings, issue.created_by)
        if actor is not None and runtime.desk_edge is not None:
            # Deferral is done above: the follower dispatches with nothing left to defer (no "enqueued").
            runtime.desk_edge.spawn(runtime.desk_edge.follow(FollowBroadcast(item.issue_id, actor)))
    return due


async def send_due_forever(runtime: Runtime, stop: asyncio.Event, interval: float = DUE_INTERVAL) -> None:
    """Every ``interval`` seconds until ``stop`` is set: :func:`enqueue_due_once`; never dies on an error."""
    while not stop.is_set():
        try:
            await enqueue_due_once(runtime)
        except Exception:  # keep serving; the next round retries (nothing half-done: one transaction per round)
            log.exception("checking scheduled issues failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
