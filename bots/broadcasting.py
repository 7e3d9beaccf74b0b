"""Broadcast an issue from the command line (or the demo): preview, confirm, enqueue, dispatch — or a test send to
the admins' own endpoints, or sending a stored draft; LINE deliveries beyond the month's quota are deferred.

It uses a bare Telegram ``Bot`` and a LINE API client, never polling (that would fight ``otayori run`` for updates).
It works whether or not ``run`` is running: deliveries are claimed atomically, so each is sent by exactly one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bots.app import Runtime, open_runtime
from core import render, texts
from core.admins import Actor, own_endpoints_clause
from core.broadcast import IssueDraft, create_issue, defer_over_quota, recipient_counts
from core.dispatcher import ChannelNotice, DispatchSummary
from core.issues import IssueStateError, create_test_send, issue_detail, send_now
from core.media import check_image_channels, image_ref, issue_image, set_issue_image, store_image
from core.reports import DeliveryReport, delivery_report
from core.settings import Settings
from storage.models import MediaImage

LINE_QUOTA_REASON = "over the LINE monthly message quota"


def messages_per_line_recipient(draft: IssueDraft, *, with_image: bool = False) -> int:
    """How much LINE quota one recipient costs: one per request (a request of up to 5 message objects counts once
    per recipient); an issue over 5 parts of 5,000 UTF-16 code units needs more requests (reference/line.md). A
    photo issue's image message takes one of the 5 slots."""
    parts = len(render.issue_parts("line", draft.title, draft.body_md, texts.text("issue_footer", "ja")))
    return -(-(parts + int(with_image)) // render.LINE_MESSAGES_PER_REQUEST)


@dataclass(frozen=True)
class Picture:
    """A picture given for a new issue (``otayori broadcast --image``): its bytes and declared MIME type."""

    data: bytes
    content_type: str | None = None


async def store_picture(runtime: Runtime, picture: Picture | None, channels: list[str]) -> MediaImage | None:
    """Check and store ``picture`` (core.media) and check that every channel in ``channels`` can carry it (LINE
    needs an https public URL), before anything is asked or created. Raises :class:`core.media.MediaError`."""
    if picture is None:
        return None
    row = await store_image(runtime.db, runtime.settings, picture.data, picture.content_type)
    check_image_channels(image_ref(runtime.settings, row), channels)
    return row


@dataclass
class BroadcastResult:
    """The issue id, the recipients per channel when it was enqueued, and the final report."""

    issue_id: int
    enqueued: dict[str, int]
    report: DeliveryReport
    summary: DispatchSummary


def cli_actor(name: str = "cli") -> Actor:
    """The admin-log identity of a command-line user: the OS user name (``name`` when it cannot be read)."""
    try:
        return Actor("cli", getpass.getuser())
    except (OSError, KeyError):  # no login name and no passwd entry (a bare container)
        return Actor("cli", name)


async def broadcast_with(
    runtime: Runtime, draft: IssueDraft, *, confirm: Callable[[dict[str, int], int | None], bool] | None = None,
    created_by: str = "cli", progress: Any = None, topic: str | None = None, channels: list[str] | None = None,
    actor: Actor | None = None, picture: Picture | None = None,
) -> BroadcastResult | None:
    """Preview recipients per channel (``channels``, default every enabled one) for ``topic`` (None: every topic)
    and the LINE quota left, ask ``confirm(counts, line_quota)`` (None = yes), then create, enqueue and dispatch.
    LINE recipients beyond the quota are deferred, not failed. ``progress``: an unstarted ``rich.progress.Progress``
    to show one bar per channel while sending. The send is logged as ``actor``'s (default: ``created_by`` on the CLI).
    ``picture``: makes it a photo issue (checked first: :func:`store_picture`).

    Returns None when ``confirm`` said no (no issue stored). Raises :class:`core.media.MediaError`.
    """
    wanted = channels or runtime.enabled_channels()
    actor = actor or Actor("cli", created_by)
    image = await store_picture(runtime, picture, wanted)
    counts = await recipient_counts(runtime.db, wanted, topic=topic)
    line_quota = await runtime.line_quota_remaining()
    if confirm is not None and not confirm(counts, line_quota):
        return None
    issue = await create_issue(runtime.db, draft, created_by=created_by, topic=topic, channels=channels)
    assert issue.id is not None
    if image is not None:
        await set_issue_image(runtime.db, issue.id, image, actor=actor)
    enqueued = await send_now(runtime.db, issue.id, wanted, actor=actor)
    return await dispatch_and_report(runtime, issue.id, enqueued, draft, progress=progress, line_quota=line_quota,
                                     with_image=image is not None)


async def send_test_with(
    runtime: Runtime, draft: IssueDraft, *, actor: Actor, confirm: Callable[[dict[str, int], int | None], bool] | None = None,
    topic: str | None = None, channels: list[str] | None = None, progress: Any = None, picture: Picture | None = None,
) -> tuple[int, BroadcastResult] | None:
    """Store ``draft`` (with ``picture``, if any) as a draft issue and send a test copy of it only to the admins'
    own endpoints (:func:`core.issues.create_test_send`). Returns ``(draft issue id, result of the test copy)``, or
    None when ``confirm`` said no. Raises :class:`core.issues.IssueStateError` ``test_no_recipients`` (nothing
    stored), :class:`core.media.MediaError`."""
    wanted = channels or runtime.enabled_channels()
    counts = await recipient_counts(runtime.db, wanted, only=own_endpoints_clause(runtime.settings))
    if not any(counts.values()):
        raise IssueStateError("test_no_recipients")
    image = await store_picture(runtime, picture, wanted)
    if confirm is not None and not confirm(counts, await runtime.line_quota_remaining()):
        return None
    issue = await create_issue(runtime.db, draft, created_by=actor.key, topic=topic, channels=channels)
    assert issue.id is not None
    if image is not None:
        await set_issue_image(runtime.db, issue.id, image, actor=actor)
    copy = await create_test_send(runtime.db, runtime.settings, issue.id, wanted, actor=actor)
    return issue.id, await dispatch_and_report(runtime, copy.issue_id, copy.enqueued, draft, progress=progress,
                                               with_image=image is not None)


async def defer_line_excess(runtime: Runtime, issue_id: int, enqueued: dict[str, int], draft: IssueDraft,
                            line_quota: int | None = None, *, with_image: bool = False) -> int:
    """Defer the issue's LINE deliveries beyond this month's quota (they would fail: LINE 429 "monthly limit") and
    return how many; ``line_quota`` None reads it from LINE now; ``with_image``: a photo issue."""
    if "line" not in runtime.senders or not enqueued.get("line"):
        return 0
    if line_quota is None:
        line_quota = await runtime.line_quota_remaining()
    cost = messages_per_line_recipient(draft, with_image=with_image)
    if line_quota is None or enqueued["line"] * cost <= line_quota:
        return 0
    # Over LINE's monthly quota: defer the excess now (resumable), never send requests that must fail.
    return await defer_over_quota(runtime.db, issue_id, "line", line_quota // cost, LINE_QUOTA_REASON)


async def dispatch_and_report(
    runtime: Runtime, issue_id: int, enqueued: dict[str, int], draft: IssueDraft, *, progress: Any = None,
    line_quota: int | None = None, with_image: bool = False,
) -> BroadcastResult:
    """Defer what exceeds the LINE quota, dispatch the issue's deliveries (with ``progress`` bars when given) and
    return the final report. ``with_image``: a photo issue (its image message counts in the LINE quota)."""
    deferred = await defer_line_excess(runtime, issue_id, enqueued, draft, line_quota, with_image=with_image)
    if progress is not None:
        progress.start()  # a rich Progress: one bar per channel while the dispatcher sends
    dispatching = asyncio.create_task(runtime.dispatcher().dispatch(issue_id))
    watcher = asyncio.create_task(watch_progress(runtime, issue_id, progress)) if progress is not None else None
    try:
        summary = await dispatching
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    if progress is not None:
        await show_progress(runtime, issue_id, progress)
    report = await delivery_report(runtime.db, issue_id)
    assert report is not None
    if deferred:
        summary.notices.append(ChannelNotice("line", issue_id, LINE_QUOTA_REASON, deferred))
    return BroadcastResult(issue_id, enqueued, report, summary)


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


def _progress_bar(out: Any) -> Any:
    """A rich ``Progress`` on ``out`` (one bar per channel), or None without a console. Started after any prompt."""
    if out is None:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description:>8}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=out, transient=False)


def _print_result(out: Any, result: BroadcastResult) -> None:
    totals = result.report.by_status()
    out.print(f"issue {result.issue_id}: " + ", ".join(f"{k} {v}" for k, v in sorted(totals.items())),
              markup=False, highlight=False)
    for notice in result.summary.notices:
        out.print(f"{notice.channel}: stopped ({notice.reason}); {notice.deferred} deferred", markup=False)


async def broadcast_issue(
    settings: Settings, draft: IssueDraft, *, confirm: Callable[[dict[str, int], int | None], bool] | None = None,
    out: Any = None, topic: str | None = None, channels: list[str] | None = None, test: bool = False,
    actor: Actor | None = None, picture: Picture | None = None,
) -> tuple[int, BroadcastResult] | None:
    """:func:`broadcast_with` (or, with ``test``, :func:`send_test_with`) on a fresh runtime for ``settings``; prints
    a short result to ``out`` (a rich Console). Returns ``(the issue id to report, the result of what was sent)`` —
    for a test, the kept draft's id and the test copy's result — or None when ``confirm`` said no."""
    actor = actor or cli_actor()
    async with open_runtime(settings) as runtime:
        bar = _progress_bar(out)
        try:
            if test:
                outcome = await send_test_with(runtime, draft, actor=actor, confirm=confirm, topic=topic,
                                               channels=channels, progress=bar, picture=picture)
            else:
                sent = await broadcast_with(runtime, draft, confirm=confirm, progress=bar, topic=topic,
                                            channels=channels, actor=actor, picture=picture)
                outcome = None if sent is None else (sent.issue_id, sent)
        finally:
            if bar is not None:
                bar.stop()
    if outcome is not None and out is not None:
        _print_result(out, outcome[1])
    return outcome


async def send_stored_issue(settings: Settings, issue_id: int, *, actor: Actor, out: Any = None) -> BroadcastResult:
    """Send a stored draft (or a scheduled issue, ahead of its time) now: :func:`core.issues.send_now`, then dispatch
    on a fresh runtime. Raises :class:`core.issues.IssueNotFound` / :class:`core.issues.IssueStateError`, and
    :class:`core.media.MediaError` when its picture cannot go on one of its channels (nothing sent)."""
    async with open_runtime(settings) as runtime:
        detail = await issue_detail(runtime.db, issue_id)
        image = await issue_image(runtime.db, settings, detail.issue)
        check_image_channels(image, detail.issue.channels or runtime.enabled_channels())  # before anything is sent
        enqueued = await send_now(runtime.db, issue_id, runtime.enabled_channels(), actor=actor)
        bar = _progress_bar(out)
        try:
            result = await dispatch_and_report(runtime, issue_id, enqueued,
                                               IssueDraft(detail.issue.title, detail.issue.body_md), progress=bar,
                                               with_image=image is not None)
        finally:
            if bar is not None:
                bar.stop()
    if out is not None:
        _print_result(out, result)
    return result
