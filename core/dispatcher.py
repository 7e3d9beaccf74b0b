"""The dispatcher: claims due deliveries, re-checks consent, commits an attempt mark, sends, records the outcome.

The state machine is DESIGN.md "Delivery: an outbox"; the failure classes are :mod:`core.channels`. In order, for
every request (one Telegram message, one LINE multicast of <= 500 recipients, one email):

1. **claim**: ``UPDATE delivery SET status='sending', claimed_by, lease_expires_at … WHERE id IN (SELECT … LIMIT n)
   RETURNING …`` (PostgreSQL adds ``FOR UPDATE SKIP LOCKED``): atomic, so a row is claimed once even when ``run`` and a
   CLI broadcast dispatch at the same time;
2. **turn**: the sender's rate limit is waited for first (``take_turn``), so nothing waits between the next two steps;
3. **attempt mark**: in one write transaction, just before the request, consent is re-checked with the broadcast's own
   rule (:mod:`core.eligibility`) — rows whose consent is gone become ``skipped`` — and the rest get ``attempted_at``
   (and, for LINE, the batch's retry key) committed. Marks of requests that are ready at the same moment share one
   transaction (group commit). "Stops at once" means no request starts after a withdrawal commits;
4. **send** through the channel's sender;
5. **record**: sent / pending again (temporary, with ``next_attempt_at``) / failed (+ endpoint unreachable) /
   deferred (channel-wide stop) / uncertain.

After a crash, rows whose lease ran out return to ``pending`` when they were never attempted; attempted LINE rows
repeat their identical request with the same retry key while LINE remembers it (24 h); attempted Telegram/email rows
become ``uncertain`` (those platforms cannot deduplicate).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel.ext.asyncio.session import AsyncSession

from core import render, texts
from core.broadcast import finish_if_done
from core.channels import ChannelSender, OutboundMessage, Outcome, OutcomeKind, SendResult
from core.eligibility import consented_clause, delivery_topic
from core.media import ImageRef, issue_image
from core.subscriptions import SubscriptionService
from storage.database import Database
from storage.models import ChannelLease, Delivery, DeliveryStatus, Endpoint, EndpointState, Issue
from storage.types import UTCDateTime, utcnow

log = logging.getLogger(__name__)

#: A LINE retry key is remembered by LINE for 24 h (reference/line.md "Idempotent retries"); past that, not trusted.
LINE_RETRY_KEY_TRUST = timedelta(hours=24)
#: Ids per ``IN (…)`` list in one statement (well below SQLite's 32,766 bound variables).
_IDS_PER_STATEMENT = 500


@dataclass
class ChannelNotice:
    """Something the author must be told: a channel stopped for an issue (``reason``), ``deferred`` rows left."""

    channel: str
    issue_id: int
    reason: str
    deferred: int


@dataclass
class DispatchPolicy:
    """Retry policy. ``lease``: how long a claim holds (seconds); ``max_attempts``: attempts before ``failed``;
    ``max_age``: a delivery older than this (seconds since its first attempt) is not retried; ``claim_size``:
    deliveries claimed per round; ``backoff_base``: seconds of the first retry wait (doubles per attempt);
    ``concurrency``: requests in flight per channel; ``channel_lease``: seconds a dispatcher holds a channel without
    renewing it (renewed every quarter of it)."""

    lease: float = 300.0
    max_attempts: int = 5
    max_age: float = 6 * 3600.0
    claim_size: int = 500
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    concurrency: int = 8
    channel_lease: float = 60.0


@dataclass
class DispatchSummary:
    """What one ``dispatch`` call did: per channel, per status counts of rows it finished, and notices."""

    finished: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    notices: list[ChannelNotice] = field(default_factory=list)


@dataclass(slots=True)
class Claimed:
    """A claimed delivery as the dispatcher carries it between claim, mark and record: the few columns it needs, not
    an ORM object (a LINE claim holds thousands of rows; ORM loading was a third of the dispatcher's CPU)."""

    id: int
    issue_id: int
    endpoint_id: int
    channel: str
    status: str
    retry_key: str | None
    attempted_at: datetime | None
    first_attempted_at: datetime | None
    attempts: int


_CLAIMED_COLUMNS = (Delivery.id, Delivery.issue_id, Delivery.endpoint_id, Delivery.channel, Delivery.status,
                    Delivery.retry_key, Delivery.attempted_at, Delivery.first_attempted_at, Delivery.attempts)


def default_owner() -> str:
    """A dispatcher identity for leases: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Dispatcher:
    """Sends pending deliveries through ``senders`` (``{channel: ChannelSender}``); see the module docstring."""

    def __init__(
        self,
        db: Database,
        senders: Mapping[str, ChannelSender],
        subscriptions: SubscriptionService,
        *,
        policy: DispatchPolicy | None = None,
        owner: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.senders = dict(senders)
        self.subscriptions = subscriptions
        self.policy = policy or DispatchPolicy()
        self.owner = owner or default_owner()
        self.clock = clock
        # Per issue (and channel): one task each, so the workers that start together share one database read
        # instead of each loading the issue (a thundering herd at the start of every broadcast).
        self._rendered: dict[tuple[int, str], asyncio.Task[tuple[tuple[str, ...], tuple[str, ...], str, str]]] = {}
        self._images: dict[int, asyncio.Task[ImageRef | None]] = {}  # an issue's picture (photo issues)
        # The two statements run for every request, built once (SQLAlchemy statement construction costs more CPU
        # than SQLite executing them; the compiled form is cached by SQLAlchemy either way).
        self._mark_statement = _mark_statement()
        self._sent_statement = _sent_statement()

    # ---- public ---------------------------------------------------------------------------------------------

    async def dispatch(self, issue_id: int | None = None, *, wait_for_retries: bool = True) -> DispatchSummary:
        """Send every due delivery (of ``issue_id``, or of every issue) on every channel that has a sender.

        Channels run concurrently. With ``wait_for_retries`` it also waits for rows scheduled for a later retry
        (bounded by the policy's attempts and age) and returns when nothing is pending; otherwise it returns when
        nothing is due now.
        """
        summary = DispatchSummary()
        await self.recover_expired()
        await asyncio.gather(
            *(self._channel_loop(channel, issue_id, summary, wait_for_retries) for channel in self.senders)
        )
        for done_issue in await self._open_issue_ids(issue_id):
            await finish_if_done(self.db, done_issue)
        return summary

    async def recover_expired(self) -> dict[str, int]:
        """Return rows whose lease ran out (a crashed dispatcher) to a safe state; counts per new status.

        Never attempted -> ``pending``. Attempted LINE rows with a retry key younger than 24 h -> ``pending`` (their
        identical request is repeated with the same key). Other attempted rows -> ``uncertain``.
        """
        now = self.clock()
        counts: dict[str, int] = defaultdict(int)
        async with self.db.write() as session:
            expired = select(Delivery).where(
                Delivery.status == DeliveryStatus.SENDING.value, Delivery.lease_expires_at < now  # type: ignore[operator]
            )
            if self.db.is_postgresql:
                # Lock what we change: another dispatcher recovering (and re-claiming) the same rows right now must
                # not have its result overwritten with what we read before it committed (a lost update).
                expired = expired.with_for_update(skip_locked=True)
            rows = (await session.exec(expired)).scalars().all()
            for row in rows:
                if row.attempted_at is None:
                    row.status = DeliveryStatus.PENDING.value
                elif (
                    row.channel == "line"
                    and row.retry_key
                    and row.first_attempted_at is not None
                    and now - row.first_attempted_at < LINE_RETRY_KEY_TRUST
                ):
                    row.status = DeliveryStatus.PENDING.value
                else:
                    row.status = DeliveryStatus.UNCERTAIN.value
                    row.reason = "in flight when a dispatcher stopped; the platform cannot tell whether it arrived"
                row.claimed_by = None
                row.lease_expires_at = None
                row.updated_at = now
                session.add(row)
                counts[row.status] += 1
        return dict(counts)

    # ---- per channel ------------------------------------------------------------------------------------------

    async def _channel_loop(
        self, channel: str, issue_id: int | None, summary: DispatchSummary, wait_for_retries: bool
    ) -> None:
        sender = self.senders[channel]
        stopped: set[int] = set()  # issues whose channel hit a channel-wide stop in this run
        while True:  # bounded: each pass ends when nothing is due, or re-acquires a lost channel lease
            if not await self.acquire_channel(channel):
                # Another dispatcher sends on this channel (limits hold across processes): it will send these rows
                # too; wait for it, or for its lease to run out after a crash.
                if not wait_for_retries or await self._seconds_until_next_due(channel, issue_id) is None:
                    return
                await asyncio.sleep(1.0)
                continue
            heartbeat = asyncio.create_task(self._keep_channel(channel))
            try:
                finished = await self._pump(channel, sender, issue_id, summary, stopped, wait_for_retries, heartbeat)
            finally:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
                await self.release_channel(channel)
            if finished:
                return

    async def _pump(
        self, channel: str, sender: ChannelSender, issue_id: int | None, summary: DispatchSummary,
        stopped: set[int], wait_for_retries: bool, heartbeat: asyncio.Task[None],
    ) -> bool:
        """Claim due rows and feed their requests to ``policy.concurrency`` workers through a bounded queue.

        The next claim runs while the workers send (no pause between batches), and at most ``concurrency`` requests
        wait in the queue, so memory stays bounded by ``claim_size`` rows whatever the audience. Returns True when
        nothing is due (or, with ``wait_for_retries``, nothing is pending at all), False when the channel lease was
        lost. Raises the first error a worker met (a database failure, not a platform answer: those are outcomes).
        """
        workers = max(1, self.policy.concurrency)
        queue: asyncio.Queue[list[Claimed]] = asyncio.Queue(maxsize=workers)
        marker = _Marker(self, channel, summary)
        recorder = _Recorder(self, channel, summary)
        failures: list[BaseException] = []
        tasks = [asyncio.create_task(self._work(queue, sender, summary, stopped, marker, recorder, failures))
                 for _ in range(workers)]
        # At least two full requests per claim (a LINE request carries 500 recipients), but no more: the queue refills
        # as workers take from it, and every claimed row is an object in memory until its outcome is recorded.
        claim_size = max(self.policy.claim_size, sender.max_recipients * 2)
        try:
            while True:  # bounded: every pass claims rows (finite) or waits for the next due row, or returns
                if failures:
                    raise failures[0]
                if heartbeat.done():
                    await queue.join()
                    return False
                claimed = await self._claim(channel, issue_id, claim_size, exclude=stopped)
                if not claimed:
                    await queue.join()  # in-flight requests may put rows back (retries): wait for their outcomes
                    await recorder.close()
                    if failures:
                        raise failures[0]
                    if not wait_for_retries:
                        return True
                    wait = await self._seconds_until_next_due(channel, issue_id)
                    if wait is None:
                        return True
                    await asyncio.sleep(min(max(wait, 0.05), 5.0))
                    continue
                for group in self._group(sender, claimed):
                    await queue.put(group)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await recorder.close()

    async def _work(
        self, queue: asyncio.Queue[list[Claimed]], sender: ChannelSender, summary: DispatchSummary,
        stopped: set[int], marker: _Marker, recorder: _Recorder, failures: list[BaseException],
    ) -> None:
        """One worker: take a request's rows from ``queue`` and attempt it, until cancelled.

        Platform failures are outcomes (recorded); anything else (the database) is put in ``failures`` for the pump
        to raise, and later requests are left claimed: their lease runs out and recovery returns them to ``pending``
        (never attempted), so nothing is lost.
        """
        while True:
            group = await queue.get()
            try:
                if failures:
                    continue
                if group[0].issue_id in stopped:
                    await self._release(group)
                    continue
                notice = await self._attempt(sender, group, summary, recorder, marker)
                if notice is not None:
                    stopped.add(notice.issue_id)
                    summary.notices.append(notice)
            except Exception as exc:  # noqa: BLE001 - handed to the pump, which raises it
                log.exception("dispatch worker failed on the %s channel", sender.channel)
                failures.append(exc)
            finally:
                queue.task_done()

    # ---- the per-channel lease ------------------------------------------------------------------------------------

    async def acquire_channel(self, channel: str) -> bool:
        """Take (or renew) the channel's lease row for ``channel_lease`` seconds; False when another live dispatcher
        holds it. Only one dispatcher sends on a channel at a time, so rate limits hold across processes."""
        now = self.clock()
        expires = now + timedelta(seconds=self.policy.channel_lease)
        # One atomic upsert, not read-then-write: on PostgreSQL two dispatchers reading "no lease" (or "expired") at
        # once would both take the channel, or one would fail on the primary key. ON CONFLICT locks the row, and the
        # WHERE re-evaluates on the latest version (https://www.postgresql.org/docs/current/sql-insert.html).
        insert = postgresql.insert if self.db.is_postgresql else sqlite.insert
        statement = insert(ChannelLease).values(channel=channel, owner=self.owner, expires_at=expires)
        statement = statement.on_conflict_do_update(
            index_elements=["channel"],
            set_={"owner": statement.excluded.owner, "expires_at": statement.excluded.expires_at},
            where=(ChannelLease.owner == self.owner) | (ChannelLease.expires_at <= now),  # type: ignore[arg-type,operator]
        ).returning(ChannelLease.owner)
        async with self.db.write() as session:
            taken = (await session.exec(statement)).first()  # type: ignore[call-overload]
        return taken is not None

    async def release_channel(self, channel: str) -> None:
        """Give the channel's lease back (only if we hold it)."""
        async with self.db.write() as session:
            await session.exec(  # type: ignore[call-overload]
                delete(ChannelLease).where(ChannelLease.channel == channel, ChannelLease.owner == self.owner)
            )

    async def _keep_channel(self, channel: str) -> None:
        """Renew the channel lease every quarter of its length while this dispatcher sends."""
        while True:
            await asyncio.sleep(self.policy.channel_lease / 4)
            if not await self.acquire_channel(channel):
                log.error("lost the %s channel lease to another dispatcher", channel)
                return

    def _group(self, sender: ChannelSender, rows: list[Claimed]) -> list[list[Claimed]]:
        """Rows -> requests: rows sharing a retry key form their original request again; the rest are chunked."""
        by_key: dict[str, list[Claimed]] = defaultdict(list)
        fresh: dict[int, list[Claimed]] = defaultdict(list)
        for row in rows:
            if row.retry_key:
                by_key[row.retry_key].append(row)
            else:
                fresh[row.issue_id].append(row)
        groups = list(by_key.values())
        size = max(1, sender.max_recipients)
        for issue_rows in fresh.values():
            groups.extend(issue_rows[i : i + size] for i in range(0, len(issue_rows), size))
        return groups

    async def _claim(
        self, channel: str, issue_id: int | None, limit: int, *, exclude: set[int] | None = None
    ) -> list[Claimed]:
        """Atomically take up to ``limit`` due rows of ``channel`` (oldest issue first; not of ``exclude`` issues)."""
        now = self.clock()
        async with self.db.write() as session:
            due = (
                select(Delivery.id)
                .where(
                    Delivery.channel == channel,
                    Delivery.status == DeliveryStatus.PENDING.value,
                    (Delivery.next_attempt_at.is_(None)) | (Delivery.next_attempt_at <= now),  # type: ignore[union-attr,operator]
                )
                # (issue_id, id) follows ix_delivery_pending (channel, status, issue_id, id): the database walks the
                # pending rows in order instead of skipping every row already sent (quadratic over a broadcast).
                .order_by(Delivery.issue_id, Delivery.id)  # type: ignore[arg-type]
                .limit(limit)
            )
            if issue_id is not None:
                due = due.where(Delivery.issue_id == issue_id)
            if exclude:
                due = due.where(Delivery.issue_id.not_in(exclude))  # type: ignore[attr-defined]
            if self.db.is_postgresql:
                due = due.with_for_update(skip_locked=True)
            statement = (
                update(Delivery)
                .where(Delivery.id.in_(due.scalar_subquery()))  # type: ignore[union-attr]
                .values(
                    status=DeliveryStatus.SENDING.value,
                    claimed_by=self.owner,
                    lease_expires_at=now + timedelta(seconds=self.policy.lease),
                    updated_at=now,
                )
                .returning(*_CLAIMED_COLUMNS)
            )
            connection = await session.connection()
            rows = [Claimed(*item) for item in await connection.execute(statement)]
            # A LINE retry repeats the identical request, recipients included: claim the rest of every retry-key
            # group with it, or a partial group would repeat the key for fewer recipients (409 = "sent" for people
            # who never got it).
            keys = {row.retry_key for row in rows if row.retry_key}
            if keys:
                siblings = (
                    update(Delivery)
                    .where(Delivery.channel == channel, Delivery.status == DeliveryStatus.PENDING.value,
                           Delivery.retry_key.in_(keys))  # type: ignore[union-attr]
                    .values(status=DeliveryStatus.SENDING.value, claimed_by=self.owner,
                            lease_expires_at=now + timedelta(seconds=self.policy.lease), updated_at=now)
                    .returning(*_CLAIMED_COLUMNS)
                )
                rows.extend(Claimed(*item) for item in await connection.execute(siblings))
        rows.sort(key=lambda row: row.id)
        return rows

    async def _release(self, group: list[Claimed]) -> None:
        async with self.db.write() as session:
            await session.exec(  # type: ignore[call-overload]
                update(Delivery)
                .where(Delivery.id.in_([row.id for row in group]), Delivery.status == DeliveryStatus.SENDING.value)  # type: ignore[union-attr]
                .values(status=DeliveryStatus.DEFERRED.value, claimed_by=None, lease_expires_at=None,
                        reason="channel stopped for this broadcast", updated_at=self.clock())
            )

    async def _seconds_until_next_due(self, channel: str, issue_id: int | None) -> float | None:
        """Seconds until the earliest pending row of ``channel`` is due (0 when one is due now); None when none."""
        async with self.db.read() as session:
            query = select(func.min(Delivery.next_attempt_at), func.count()).where(
                Delivery.channel == channel, Delivery.status == DeliveryStatus.PENDING.value
            )
            if issue_id is not None:
                query = query.where(Delivery.issue_id == issue_id)
            earliest, count = (await session.exec(query)).one()  # type: ignore[call-overload]
        if not count:
            return None
        if earliest is None:
            return 0.0
        return (earliest - self.clock()).total_seconds()  # min() keeps the column type: aware UTC

    async def _open_issue_ids(self, issue_id: int | None) -> list[int]:
        if issue_id is not None:
            return [issue_id]
        async with self.db.read() as session:
            rows = await session.exec(select(Issue.id).where(Issue.status == "sending"))  # type: ignore[call-overload]
            return [row[0] for row in rows.all()]

    # ---- one request ------------------------------------------------------------------------------------------

    async def _attempt(
        self, sender: ChannelSender, group: list[Claimed], summary: DispatchSummary,
        recorder: _Recorder | None = None, marker: _Marker | None = None,
    ) -> ChannelNotice | None:
        """Rate-limit turn, attempt mark (consent re-check in the same write transaction), the request, its outcome.

        The sender's turn is taken first (``take_turn``, when the sender has one), so the request starts as soon as
        its mark commits: no wait for the rate limit between the consent re-check and the request. The mark is made
        by ``marker`` (shared with other workers' requests in one transaction: group commit) or on its own; see
        :meth:`_mark_many`. The outcome is handed to ``recorder`` (recorded in a shared transaction with other
        requests' outcomes) or, without one, or when the channel must stop, recorded before returning.
        """
        channel = sender.channel
        issue_id = group[0].issue_id
        take_turn = getattr(sender, "take_turn", None)
        if take_turn is not None:
            await take_turn()
        if marker is not None:
            live, addresses, retry_key, held = await marker.mark(group)
        else:
            live, addresses, retry_key, held = (await self._mark_many(channel, summary, [group]))[0]
        if not live:
            if held:
                # Everyone left in a repeated LINE request withdrew: there is nobody to repeat it to, so LINE cannot
                # be asked whether the first attempt arrived.
                await self._settle_held(channel, held, summary, None)
            return None
        parts, plain, title, body = await self._render(issue_id, channel)
        message = OutboundMessage(
            issue_id=issue_id,
            parts=parts,
            plain_parts=plain,
            recipients=tuple(addresses[row.endpoint_id] for row in live),
            retry_key=retry_key,
            endpoint_ids=tuple(row.endpoint_id for row in live),
            title=title,
            body_markdown=body,
            turn_taken=take_turn is not None,
            image=await self._image(issue_id),
            still_wanted=self._still_wanted(live[0]) if channel == "telegram" else None,
        )
        try:
            result = await sender.send(message)
        except Exception as exc:  # a worker never dies on one bad message (Mailman): record and go on
            log.exception("sender %s raised for issue %s", channel, issue_id)
            result = SendResult(Outcome(OutcomeKind.TEMPORARY, reason=f"sender error: {type(exc).__name__}"))
        if held:
            await self._settle_held(channel, held, summary, result.overall)
        stops_channel = result.overall.kind is OutcomeKind.CHANNEL_WIDE or any(
            outcome.kind is OutcomeKind.CHANNEL_WIDE for outcome in result.per_recipient.values())
        if recorder is not None and not stops_channel:
            recorder.submit(live, addresses, result)
            return None
        notices = await self._record_many(channel, [(live, addresses, result)], summary)
        return notices[0] if notices else None

    async def _mark_many(
        self, channel: str, summary: DispatchSummary, groups: list[list[Claimed]]
    ) -> list[tuple[list[Claimed], dict[int, str], str | None, list[Claimed]]]:
        """Attempt marks for several requests in one write transaction (committed before any of them starts).

        ``groups``: each request's claimed rows. Returns per group ``(live rows, {endpoint_id: address}, retry key,
        held rows)``: the rows to send now; ``held``: rows of a repeated LINE request (attempted before, same retry
        key) whose consent is gone — they are left out of the repeat, and whether they count as sent depends on
        LINE's answer (:meth:`_settle_held`); the group's other rows became ``skipped``. One ``UPDATE … RETURNING``
        per LINE request (each has its own retry key) and one for all other requests.
        """
        now = self.clock()
        results: list[tuple[list[Claimed], dict[int, str], str | None, list[Claimed]]] = []
        by_id: dict[int, Claimed] = {}
        keys: list[str | None] = []
        for group in groups:
            retry_key = next((row.retry_key for row in group if row.retry_key), None)
            if channel == "line" and retry_key is None:
                retry_key = str(uuid.uuid4())
            keys.append(retry_key if channel == "line" else None)
            by_id.update((row.id, row) for row in group)  # type: ignore[misc]
        batches: dict[str | None, list[int]] = defaultdict(list)
        for group, key in zip(groups, keys):
            batches[key].extend(row.id for row in group)  # type: ignore[misc]
        marked: dict[int, tuple[datetime | None, int, str]] = {}
        async with self.db.write() as session:
            connection = await session.connection()
            for key, ids in batches.items():
                for start in range(0, len(ids), _IDS_PER_STATEMENT):
                    answered = await connection.execute(self._mark_statement, {
                        "ids": ids[start : start + _IDS_PER_STATEMENT], "owner": self.owner, "now": now, "key": key})
                    marked.update((item.id, (item.first_attempted_at, item.attempts, item.address or ""))
                                  for item in answered)
            # A row of a repeated LINE request (attempted before under its retry key) that lost its consent is not
            # skipped yet: if LINE had accepted the earlier attempt, the person has the issue (sent before they
            # withdrew); if not, they must not get it. The repeat leaves them out; its answer decides.
            held_ids = {row_id for row_id, row in by_id.items()
                        if row_id not in marked and channel == "line" and row.retry_key and row.attempted_at}
            rest = [row_id for row_id in by_id if row_id not in marked and row_id not in held_ids]
            for start in range(0, len(rest), _IDS_PER_STATEMENT):
                # What is still ours lost its consent (or its endpoint) since the broadcast: skipped.
                skipped = await connection.execute(
                    update(Delivery)
                    .where(Delivery.id.in_(rest[start : start + _IDS_PER_STATEMENT]),  # type: ignore[union-attr]
                           Delivery.status == DeliveryStatus.SENDING.value, Delivery.claimed_by == self.owner)
                    .values(status=DeliveryStatus.SKIPPED.value, claimed_by=None, lease_expires_at=None,
                            updated_at=now,
                            reason="consent withdrawn or endpoint not active when the attempt was about to start")
                    .returning(Delivery.id)
                )
                for (row_id,) in skipped:
                    by_id[row_id].status = DeliveryStatus.SKIPPED.value
                    summary.finished[channel][DeliveryStatus.SKIPPED.value] += 1
        for group, key in zip(groups, keys):
            live: list[Claimed] = []
            addresses: dict[int, str] = {}
            for row in sorted(group, key=lambda item: item.id):  # type: ignore[arg-type,return-value]
                if row.id not in marked:
                    continue
                # Mirror the mark on the claimed object (what the outcome's recording and the retry policy read).
                row.attempted_at = now
                row.first_attempted_at, row.attempts, addresses[row.endpoint_id] = marked[row.id]  # type: ignore[index]
                row.retry_key = key
                live.append(row)
            results.append((live, addresses, key, [row for row in group if row.id in held_ids]))
        return results

    async def _settle_held(
        self, channel: str, held: list[Claimed], summary: DispatchSummary, answer: Outcome | None
    ) -> None:
        """Settle the held rows of a repeated LINE request (see :meth:`_mark_many`) by LINE's ``answer`` to the repeat.

        409 "already accepted" (``answer.already_accepted``): the earlier attempt had reached LINE, with these people
        in it, before they withdrew -> ``sent``. A fresh 200: the earlier attempt had not been accepted, and the repeat
        left them out -> ``skipped``. A temporary failure: back to ``pending`` with the group (decided at the next
        repeat). Anything else, or no repeat at all (``answer`` None: nobody left to send to) -> ``uncertain``.
        """
        now = self.clock()
        if answer is not None and answer.kind is OutcomeKind.SENT:
            status = DeliveryStatus.SENT if answer.already_accepted else DeliveryStatus.SKIPPED
            reason = (None if answer.already_accepted else
                      "consent withdrawn before the repeat; LINE had not accepted the earlier attempt")
        elif answer is not None and answer.kind is OutcomeKind.TEMPORARY:
            status, reason = DeliveryStatus.PENDING, "withdrew while the request was being retried; decided by the repeat"
        else:
            status = DeliveryStatus.UNCERTAIN
            reason = "withdrew while the request was being retried; LINE's answer cannot tell whether it arrived"
        values: dict[str, object] = {"status": status.value, "reason": reason, "claimed_by": None,
                                     "lease_expires_at": None, "updated_at": now}
        if status is DeliveryStatus.SENT:
            values["sent_at"] = now
        if status is DeliveryStatus.PENDING:
            values["next_attempt_at"] = now + timedelta(seconds=self.policy.backoff_base)
        async with self.db.write() as session:
            await session.exec(  # type: ignore[call-overload]
                update(Delivery)
                .where(Delivery.id.in_([row.id for row in held]),  # type: ignore[union-attr]
                       Delivery.status == DeliveryStatus.SENDING.value, Delivery.claimed_by == self.owner)
                .values(**values)
            )
        if status is not DeliveryStatus.PENDING:
            summary.finished[channel][status.value] += len(held)

    def _still_wanted(self, row: Claimed) -> Callable[[], Awaitable[bool]]:
        """For a Telegram issue sent in several parts: a check, before each later part, that the reader's consent
        still holds (the broadcast's own rule, :func:`core.eligibility.consented_clause`)."""

        async def check() -> bool:
            async with self.db.read() as session:
                found = (await session.exec(  # type: ignore[call-overload]
                    select(Delivery.id).where(
                        Delivery.id == row.id,
                        select(Endpoint.id).where(Endpoint.id == Delivery.endpoint_id,
                                                  consented_clause(delivery_topic())).exists())
                )).first()
            return found is not None

        return check

    async def _image(self, issue_id: int) -> ImageRef | None:
        """The issue's picture (None for text only), looked up once per issue: one ImageRef per issue, so its file
        is read at most once per broadcast (core.media.ImageRef.data)."""
        if issue_id not in self._images:
            self._images[issue_id] = asyncio.ensure_future(self._load_image(issue_id))
        try:
            return await asyncio.shield(self._images[issue_id])
        except Exception:
            self._images.pop(issue_id, None)  # a failed read is not cached: the next request tries again
            raise

    async def _load_image(self, issue_id: int) -> ImageRef | None:
        async with self.db.read() as session:
            issue = await session.get(Issue, issue_id)
        assert issue is not None
        return await issue_image(self.db, self.subscriptions.settings, issue)

    async def _render(self, issue_id: int, channel: str) -> tuple[tuple[str, ...], tuple[str, ...], str, str]:
        """Chat parts, plain-text fallback parts, title and Markdown body of an issue (cached per issue+channel)."""
        key = (issue_id, channel)
        if key not in self._rendered:
            self._rendered[key] = asyncio.ensure_future(self._load_render(issue_id, channel))
        try:
            return await asyncio.shield(self._rendered[key])
        except Exception:
            self._rendered.pop(key, None)  # a failed read is not cached: the next request tries again
            raise

    async def _load_render(self, issue_id: int, channel: str) -> tuple[tuple[str, ...], tuple[str, ...], str, str]:
        async with self.db.read() as session:
            issue = await session.get(Issue, issue_id)
        assert issue is not None
        footer = texts.text("issue_footer", "ja")
        if channel == "email":
            parts, plain = (), ()  # rendered per recipient by the email sender (core.mail)
        elif channel == "telegram":
            parts = tuple(render.issue_parts("telegram", issue.title, issue.body_md, footer))
            plain = tuple(render.split_line_text(
                "\n\n".join(render.issue_parts("line", issue.title, issue.body_md, footer)), 4096))
        else:
            parts = tuple(render.issue_parts("line", issue.title, issue.body_md, footer))
            plain = parts
        return parts, plain, issue.title, issue.body_md

    async def _record_many(
        self,
        channel: str,
        batch: list[tuple[list[Claimed], dict[int, str], SendResult]],
        summary: DispatchSummary,
    ) -> list[ChannelNotice]:
        """Record the outcomes of several requests in one write transaction; the notices of channel-wide stops.

        ``batch``: ``[(attempted rows, {endpoint_id: address}, result), …]``. Rows sent go to ``sent`` in bulk
        ``UPDATE`` statements; the others are loaded (one query for the rows, one for their endpoints) and moved one
        by one (retry/backoff, failed + endpoint unreachable or blocked, deferred, uncertain). Recording later than
        the request never weakens consent: the attempt mark was committed before the request started.
        """
        now = self.clock()
        notices: list[ChannelNotice] = []
        sent_ids: list[int] = []
        others: list[tuple[Claimed, Outcome]] = []
        for live, addresses, result in batch:
            for row in live:
                outcome = result.outcome_for(addresses[row.endpoint_id])
                if outcome.kind is OutcomeKind.SENT:
                    sent_ids.append(row.id)  # type: ignore[arg-type]
                else:
                    others.append((row, outcome))
        async with self.db.write() as session:
            connection = await session.connection()
            for start in range(0, len(sent_ids), _IDS_PER_STATEMENT):
                done = await connection.execute(
                    self._sent_statement, {"ids": sent_ids[start : start + _IDS_PER_STATEMENT], "now": now})
                summary.finished[channel][DeliveryStatus.SENT.value] += int(done.rowcount or 0)
            if others:
                fresh_rows = {
                    fresh.id: fresh for fresh in (await session.exec(
                        select(Delivery).where(Delivery.id.in_([row.id for row, _ in others]))  # type: ignore[union-attr]
                    )).scalars().all()
                }
                endpoints = {
                    endpoint.id: endpoint for endpoint in (await session.exec(
                        select(Endpoint).where(Endpoint.id.in_({row.endpoint_id for row, _ in others}))  # type: ignore[union-attr]
                    )).scalars().all()
                }
                for row, outcome in others:
                    fresh = fresh_rows.get(row.id)
                    if fresh is not None:
                        await self._record_one(session, fresh, endpoints.get(row.endpoint_id), outcome, now)
                        session.add(fresh)
                        if fresh.status != DeliveryStatus.PENDING.value:
                            summary.finished[channel][fresh.status] += 1
            for live, _, result in batch:
                if result.overall.kind is not OutcomeKind.CHANNEL_WIDE:
                    continue
                issue_id = live[0].issue_id
                deferred = await session.exec(  # type: ignore[call-overload]
                    update(Delivery)
                    .where(
                        Delivery.issue_id == issue_id,
                        Delivery.channel == channel,
                        (Delivery.status == DeliveryStatus.PENDING.value)
                        # rows of this claim not yet attempted: stop them too
                        | ((Delivery.status == DeliveryStatus.SENDING.value) & (Delivery.claimed_by == self.owner)
                           & Delivery.attempted_at.is_(None)),  # type: ignore[union-attr]
                    )
                    .values(status=DeliveryStatus.DEFERRED.value, reason=result.overall.reason, updated_at=now,
                            claimed_by=None, lease_expires_at=None)
                )
                notices.append(ChannelNotice(channel, issue_id, result.overall.reason or "channel stopped",
                                             len(live) + (deferred.rowcount or 0)))
        return notices

    async def _record_one(
        self, session: AsyncSession, fresh: Delivery, endpoint: Endpoint | None, outcome: Outcome, now: datetime
    ) -> None:
        """Move one attempted row that was not simply sent, by its outcome (see :mod:`core.channels`)."""
        fresh.claimed_by = None
        fresh.lease_expires_at = None
        fresh.updated_at = now
        if outcome.kind is OutcomeKind.SENT:
            fresh.status = DeliveryStatus.SENT.value
            fresh.sent_at = now
            fresh.reason = None
        elif outcome.kind is OutcomeKind.TEMPORARY:
            await self._retry_or_fail(fresh, outcome, now)
        elif outcome.kind is OutcomeKind.PERMANENT:
            fresh.status = DeliveryStatus.FAILED.value
            fresh.reason = outcome.reason
            if outcome.new_address and endpoint is not None:
                await self._move_endpoint(session, endpoint, outcome.new_address, fresh, now)
            elif endpoint is not None:
                if outcome.blocked:
                    await self.subscriptions.mark_blocked(
                        session, endpoint, evidence={"delivery_id": fresh.id, "reason": outcome.reason}
                    )
                else:
                    endpoint.state = EndpointState.UNREACHABLE.value
                    endpoint.updated_at = now
                    session.add(endpoint)
        elif outcome.kind is OutcomeKind.REJECTED:
            fresh.status = DeliveryStatus.FAILED.value
            fresh.reason = outcome.reason
        elif outcome.kind is OutcomeKind.CHANNEL_WIDE:
            fresh.status = DeliveryStatus.DEFERRED.value
            fresh.reason = outcome.reason
            fresh.attempted_at = None
            fresh.retry_key = None
        else:
            fresh.status = DeliveryStatus.UNCERTAIN.value
            fresh.reason = outcome.reason

    async def _retry_or_fail(self, row: Delivery, outcome: Outcome, now: datetime) -> None:
        age = (now - row.first_attempted_at).total_seconds() if row.first_attempted_at else 0.0
        # A platform's "slow down" (429 with retry_after) is not this reader's fault: it does not use up their
        # attempts; the age limit still bounds how long we keep trying.
        rate_limited = outcome.retry_after is not None
        if (row.attempts >= self.policy.max_attempts and not rate_limited) or age > self.policy.max_age:
            row.status = DeliveryStatus.FAILED.value
            row.reason = f"gave up after {row.attempts} attempts: {outcome.reason or 'temporary failure'}"
            return
        wait = outcome.retry_after
        if wait is None:
            wait = min(self.policy.backoff_base * (2 ** max(row.attempts - 1, 0)), self.policy.backoff_max)
        row.status = DeliveryStatus.PENDING.value
        row.next_attempt_at = now + timedelta(seconds=wait)
        row.reason = outcome.reason

    async def _move_endpoint(
        self, session: AsyncSession, endpoint: Endpoint, new_address: str, row: Delivery, now: datetime
    ) -> None:
        """Telegram ``ChatMigrated``: store the new chat id and send again there (reference/telegram.md)."""
        clash = (
            await session.exec(
                select(Endpoint).where(Endpoint.channel == endpoint.channel, Endpoint.address == new_address)
            )
        ).scalars().first()
        if clash is None:
            endpoint.address = new_address
            endpoint.updated_at = now
            session.add(endpoint)
            row.status = DeliveryStatus.PENDING.value
            row.retry_key = None
            row.reason = "chat migrated; re-sending to the new chat id"
            row.next_attempt_at = None


def _mark_statement():  # type: ignore[no-untyped-def]
    """The attempt mark with the consent re-check: ``UPDATE delivery … RETURNING id, first_attempted_at, attempts,
    address``; parameters ``ids`` (list), ``owner``, ``now`` (aware UTC) and ``key`` (LINE retry key or None).

    It marks only rows that are still ours (a recovery after our lease ran out may have taken them: on PostgreSQL the
    UPDATE waits for such a transaction and re-checks this WHERE on the committed row) and whose endpoint passes the
    broadcast's own consent rule (:func:`core.eligibility.consented_clause`) — a repeat of a LINE request included:
    whoever withdrew is left out of it (see ``Dispatcher._settle_held``). RETURNING gives each row's address as it
    is now. The consent test
    is correlated (EXISTS per row, a primary-key look-up), not "endpoint_id IN (every consented endpoint)", which
    SQLite would compute over the whole audience for every request.
    """
    consented = select(Endpoint.id).where(Endpoint.id == Delivery.endpoint_id,
                                         consented_clause(delivery_topic())).exists()
    address = select(Endpoint.address).where(Endpoint.id == Delivery.endpoint_id).scalar_subquery()
    now = bindparam("now", type_=UTCDateTime())
    return (
        update(Delivery)
        .where(Delivery.id.in_(bindparam("ids", expanding=True)),  # type: ignore[union-attr]
               Delivery.status == DeliveryStatus.SENDING.value, Delivery.claimed_by == bindparam("owner"),
               consented)  # type: ignore[union-attr]
        .values(attempted_at=now, attempts=Delivery.attempts + 1, updated_at=now,
                first_attempted_at=func.coalesce(Delivery.first_attempted_at, now),
                retry_key=bindparam("key", type_=Delivery.__table__.c.retry_key.type))  # type: ignore[attr-defined]
        .returning(Delivery.id, Delivery.first_attempted_at, Delivery.attempts, address.label("address"))
    )


def _sent_statement():  # type: ignore[no-untyped-def]
    """``UPDATE delivery SET status='sent' …`` for the rows ``ids`` (list), at ``now`` (aware UTC)."""
    now = bindparam("now", type_=UTCDateTime())
    return (
        update(Delivery).where(Delivery.id.in_(bindparam("ids", expanding=True)))  # type: ignore[union-attr]
        .values(status=DeliveryStatus.SENT.value, sent_at=now, reason=None, claimed_by=None, lease_expires_at=None,
                updated_at=now)
    )


class _Marker:
    """Attempt marks of concurrent requests committed together (group commit).

    ``mark`` queues one request's rows and waits; one background task marks everything queued so far in one write
    transaction (:meth:`Dispatcher._mark_many`), then whatever arrived meanwhile. Each request still starts only
    after the transaction holding its own mark (and consent re-check) committed. A failed transaction fails the
    requests it held.
    """

    def __init__(self, dispatcher: Dispatcher, channel: str, summary: DispatchSummary) -> None:
        self.dispatcher = dispatcher
        self.channel = channel
        self.summary = summary
        self._pending: list[tuple[list[Claimed], asyncio.Future[tuple[list[Claimed], dict[int, str], str | None, list[Claimed]]]]] = []
        self._task: asyncio.Task[None] | None = None

    async def mark(self, group: list[Claimed]) -> tuple[list[Claimed], dict[int, str], str | None, list[Claimed]]:
        """``(live rows, {endpoint_id: address}, retry key, held rows)`` once the mark is committed; see
        ``_mark_many``."""
        future: asyncio.Future[tuple[list[Claimed], dict[int, str], str | None, list[Claimed]]] = (
            asyncio.get_running_loop().create_future())
        self._pending.append((group, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:  # bounded: each pass takes everything queued; at most `concurrency` wait at a time
            batch, self._pending = self._pending, []
            try:
                results = await self.dispatcher._mark_many(self.channel, self.summary, [group for group, _ in batch])
            except Exception as exc:  # noqa: BLE001 - each waiting request raises it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)


class _Recorder:
    """Records the outcomes of one channel's requests in shared write transactions (group commit).

    ``submit`` queues a request's outcome and returns at once; one background task records everything queued so far
    in one transaction, then whatever arrived meanwhile, until nothing is left. ``close`` waits for it and re-raises
    a recording error (it may be called again later: it is a flush). Recording later than the request never weakens
    consent: the attempt mark was committed before the request started.
    """

    def __init__(self, dispatcher: Dispatcher, channel: str, summary: DispatchSummary) -> None:
        self.dispatcher = dispatcher
        self.channel = channel
        self.summary = summary
        self._pending: list[tuple[list[Claimed], dict[int, str], SendResult]] = []
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None

    def submit(self, live: list[Claimed], addresses: dict[int, str], result: SendResult) -> None:
        self._pending.append((live, addresses, result))
        if self._task is None or self._task.done():
            self._collect(self._task)
            self._task = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        while self._pending:  # bounded: each pass takes everything queued; submits end with the round
            batch, self._pending = self._pending, []
            await self.dispatcher._record_many(self.channel, batch, self.summary)

    def _collect(self, task: asyncio.Task[None] | None) -> None:
        if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
            self._error = self._error or task.exception()

    async def close(self) -> None:
        """Wait until every submitted outcome is recorded; raise the first recording error."""
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
            self._collect(self._task)
        if self._pending and self._error is None:
            await self._drain()
        if self._error is not None:
            raise self._error
