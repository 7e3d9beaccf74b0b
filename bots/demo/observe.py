"""Reading what happened: the emulators' and the SMTP sink's records, the database's counts, the audit and the
consent export, into :class:`Readings` (the report's numbers and the :class:`Observation` the checks use)."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import select

from bots.broadcasting import BroadcastResult
from bots.demo.facts import Observation, ReceivedMail
from bots.demo.script import CAMPAIGN_CODE, ENDPOINT_CHANNELS
from bots.sandbox.line_api import LineEmulator
from bots.sandbox.stack import Stack
from bots.sandbox.telegram_api import TelegramEmulator
from core.audit import AuditReport, audit, export_consents
from storage.models import ConsentEvent, Endpoint


@dataclass(frozen=True)
class Readings:
    """Everything read after the broadcast.

    ``endpoints``: ``(channel, state) -> endpoints``. ``consents``: ``(action, source) -> ledger events``.
    ``audit_report``: ``otayori audit``'s result. ``emulator_messages[platform]``: ``total``, ``replies``, ``issue``
    (copies of the issue) and ``requests`` (LINE multicast requests) the emulators received. ``observation``: for
    :func:`bots.demo.checks.verify`.
    """

    endpoints: Mapping[tuple[str, str], int]
    consents: Mapping[tuple[str, str], int]
    audit_report: AuditReport
    emulator_messages: Mapping[str, Mapping[str, int]]
    observation: Observation


def telegram_issue_copies(emulator: TelegramEmulator, title: str) -> dict[str, int]:
    """``{chat id as text: messages whose visible text contains title}`` over everything the bot sent."""
    found: Counter[str] = Counter()
    for message in emulator.sent:
        if message.text and title in message.text:
            found[str(message.chat_id)] += 1
    return dict(found)


def line_issue_copies(emulator: LineEmulator, title: str) -> dict[str, int]:
    """``{userId: text messages containing title}`` over every reply, push and multicast the emulator delivered."""
    found: Counter[str] = Counter()
    for delivered in emulator.delivered:
        for message in delivered.messages:
            if message.get("type") == "text" and title in str(message.get("text", "")):
                found[delivered.user_id] += 1
    return dict(found)


def line_multicast_requests(emulator: LineEmulator) -> int:
    """Multicast requests the LINE emulator accepted (HTTP 200)."""
    return sum(1 for r in emulator.requests if r.path.endswith("/message/multicast") and r.status == 200)


async def _count(stack: Stack, statement: object) -> int:
    async with stack.runtime.db.read() as session:
        return int((await session.exec(statement)).one())  # type: ignore[call-overload]


async def observe(stack: Stack, title: str, result: BroadcastResult,
                  states_after_get: Mapping[str, str | None]) -> Readings:
    """Read the stack after broadcasting the issue ``title`` (``result``). ``states_after_get``: what the web-form
    attendees' email endpoints were right after they opened the confirmation link with a GET."""
    db = stack.runtime.db
    async with db.read() as session:
        rows = await session.exec(  # type: ignore[call-overload]
            select(Endpoint.channel, Endpoint.state, func.count()).group_by(Endpoint.channel, Endpoint.state))
        endpoints = {(c, s): int(n) for c, s, n in rows.all()}
        rows = await session.exec(  # type: ignore[call-overload]
            select(ConsentEvent.action, ConsentEvent.source, func.count())
            .group_by(ConsentEvent.action, ConsentEvent.source))
        consents = {(a, s): int(n) for a, s, n in rows.all()}
        rows = await session.exec(  # type: ignore[call-overload]
            select(Endpoint.address, Endpoint.state).where(Endpoint.channel == "email"))
        email_states = {str(a): str(s) for a, s in rows.all()}
    by_campaign = select(func.count()).select_from(ConsentEvent).where(ConsentEvent.campaign == CAMPAIGN_CODE)
    campaign_grants = await _count(stack, by_campaign.where(ConsentEvent.action == "grant"))
    campaign_confirms = await _count(stack, by_campaign.where(ConsentEvent.action == "confirm"))
    ledger_events = await _count(stack, select(func.count()).select_from(ConsentEvent))
    audit_report = await audit(db)
    buffer = io.StringIO()
    await export_consents(db, buffer, "jsonl")

    tg, line = stack.telegram, stack.line
    copies = {"telegram": telegram_issue_copies(tg, title), "line": line_issue_copies(line, title)}
    multicasts = line_multicast_requests(line)
    by_via = Counter(d.via for d in line.delivered for _m in d.messages)
    emulator_messages = {
        "telegram": {"total": len(tg.sent), "issue": sum(copies["telegram"].values()),
                     "replies": len(tg.sent) - sum(copies["telegram"].values()), "requests": 0},
        "line": {"total": sum(by_via.values()), "issue": sum(copies["line"].values()),
                 "replies": by_via.get("reply", 0) + by_via.get("push", 0), "requests": multicasts},
    }
    summary = (f"{audit_report.events} ledger events, {audit_report.deliveries} attempted deliveries checked: "
               f"{'OK' if audit_report.ok else 'VIOLATIONS FOUND'}")
    observation = Observation(
        issue_copies=copies,
        line_multicast_requests=multicasts,
        sent={c: result.report.counts.get((c, "sent"), 0) for c in ENDPOINT_CHANNELS},
        active={c: endpoints.get((c, "active"), 0) for c in ENDPOINT_CHANNELS},
        consent_counts=consents,
        campaign_grants=campaign_grants,
        ledger_events=ledger_events,
        audit_ok=audit_report.ok,
        audit_summary=summary,
        export_lines=buffer.getvalue().count("\n"),
        mails=tuple(ReceivedMail(tuple(m.rcpt_tos), m.data) for m in stack.smtp.messages),
        email_states=email_states,
        states_after_get=dict(states_after_get),
        campaign_confirms=campaign_confirms,
    )
    return Readings(endpoints, consents, audit_report, emulator_messages, observation)
