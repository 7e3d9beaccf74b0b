"""Reports for the author: an issue's deliveries by channel and status, and why failures failed."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select

from storage.database import Database
from storage.models import Delivery, DeliveryStatus, Issue


@dataclass
class DeliveryReport:
    """``counts[(channel, status)]`` and ``failure_reasons[(channel, reason)]`` for one issue."""

    issue_id: int
    title: str
    status: str
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    failure_reasons: dict[tuple[str, str], int] = field(default_factory=dict)

    def by_status(self) -> dict[str, int]:
        """Totals per status over all channels."""
        totals: dict[str, int] = {}
        for (_channel, status), count in self.counts.items():
            totals[status] = totals.get(status, 0) + count
        return totals


async def delivery_report(db: Database, issue_id: int) -> DeliveryReport | None:
    """The report for ``issue_id``, or None when there is no such issue."""
    async with db.read() as session:
        issue = await session.get(Issue, issue_id)
        if issue is None:
            return None
        report = DeliveryReport(issue_id, issue.title, issue.status)
        rows = await session.exec(  # type: ignore[call-overload]
            select(Delivery.channel, Delivery.status, func.count())
            .where(Delivery.issue_id == issue_id)
            .group_by(Delivery.channel, Delivery.status)
        )
        report.counts = {(channel, status): int(count) for channel, status, count in rows.all()}
        rows = await session.exec(  # type: ignore[call-overload]
            select(Delivery.channel, Delivery.reason, func.count())
            .where(Delivery.issue_id == issue_id,
                   Delivery.status.in_([DeliveryStatus.FAILED.value, DeliveryStatus.DEFERRED.value,  # type: ignore[attr-defined]
                                        DeliveryStatus.UNCERTAIN.value, DeliveryStatus.SKIPPED.value]))
            .group_by(Delivery.channel, Delivery.reason)
        )
        report.failure_reasons = {(channel, reason or "unknown"): int(count) for channel, reason, count in rows.all()}
    return report
