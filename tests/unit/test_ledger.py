"""The consent ledger over a real SQLite file: the hash rule recomputed here from the export, tampering, erasure,
concurrent appends, and the audit's consent-at-first-attempt rule (DESIGN.md "Consent export")."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
from datetime import timedelta

from sqlalchemy import text, update
from sqlmodel import select

from core import consent
from core.audit import audit, export_consents
from core.broadcast import IssueDraft, create_issue, enqueue
from core.campaigns import add_campaign
from core.consent import verify_chain
from core.subscriptions import ChatContext, SubscriptionService
from storage.database import Database
from storage.models import ConsentEvent, Delivery, Endpoint

EXPORT_FIELDS = {
    "event_id", "occurred_at", "subscriber_id", "endpoint_id", "channel", "address", "action", "basis", "source",
    "campaign", "topics", "wording_version", "wording_sha256", "evidence", "address_hmac", "prev_hash", "hash",
}
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def ctx(address: str, key: str | None = None, channel: str = "telegram", **evidence: object) -> ChatContext:
    return ChatContext(channel=channel, address=address, event_key=key, evidence=dict(evidence))


async def subscribe(service: SubscriptionService, address: str, channel: str = "telegram", text_: str = "登録",
                    **evidence: object) -> None:
    replies = await service.handle_text(ctx(address, channel=channel, **evidence), text_)
    assert replies[0].kind == "terms", replies
    replies = await service.handle_button(ctx(address, channel=channel, **evidence), replies[0].buttons[0].data)
    assert replies[0].kind == "subscribed", replies


async def withdraw(service: SubscriptionService, address: str, channel: str = "telegram") -> None:
    replies = await service.handle_text(ctx(address, channel=channel, message_id="m-stop"), "解除")
    assert replies[0].kind == "withdrawn", replies


async def exported(db: Database) -> list[dict]:
    out = io.StringIO()
    count = await export_consents(db, out, "jsonl")
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(records) == count
    return records


async def execute(db: Database, sql: str, **params: object) -> None:
    """Raw SQL, as someone with the database file would run it."""
    async with db.write() as session:
        await session.exec(text(sql).bindparams(**params))  # type: ignore[call-overload]


async def ledger(db: Database) -> list[ConsentEvent]:
    async with db.read() as session:
        return list((await session.exec(select(ConsentEvent).order_by(ConsentEvent.id))).all())  # type: ignore[arg-type]


def independent_hash(record: dict) -> str:
    """DESIGN.md: sha256(prev_hash hex + canonical JSON of every export field but address and hash)."""
    hashed = {k: v for k, v in record.items() if k not in ("address", "hash")}
    canonical = json.dumps(hashed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((record["prev_hash"] + canonical).encode("utf-8")).hexdigest()


async def busy_ledger(db, settings, clock) -> SubscriptionService:
    """A ledger with campaigns, Japanese evidence, a withdrawal and both chat channels (five events)."""
    service = SubscriptionService(db, settings, clock)
    await add_campaign(db, "seminar-2026-12", "12月 東京セミナー")
    await subscribe(service, "1001", text_="登録 ＳＥＭＩＮＡＲ-2026-12", update_id=501, note="東京セミナー😀")
    clock.advance(1.5)
    await subscribe(service, "U" + "a" * 32, channel="line", text_="登録　セミナー", webhookEventId="01HX")
    clock.advance(0.000123)
    await subscribe(service, "1002", update_id=502)
    clock.advance(60)
    await withdraw(service, "1001")
    clock.advance(1)
    await subscribe(service, "1001", update_id=503)  # a fresh consent after the withdrawal
    return service


async def test_export_hash_rule_recomputed_independently(db, settings, clock):
    await busy_ledger(db, settings, clock)
    records = await exported(db)
    assert [r["action"] for r in records] == ["grant", "grant", "grant", "withdraw", "grant"]
    previous = "0" * 64
    for record in records:
        assert set(record) == EXPORT_FIELDS
        assert TIMESTAMP.match(record["occurred_at"]), record["occurred_at"]
        assert record["prev_hash"] == previous
        assert HEX64.match(record["hash"]) and record["hash"] == independent_hash(record)
        assert isinstance(record["evidence"], dict)
        previous = record["hash"]
    first, line_grant = records[0], records[1]
    assert first["campaign"] == "seminar-2026-12" and first["evidence"]["note"] == "東京セミナー😀"
    assert first["source"] == "chat" and first["basis"] == "opt_in" and first["channel"] == "telegram"
    assert first["address"] == "1001" and first["occurred_at"] == "2026-12-01T00:00:00.000000Z"
    assert line_grant["campaign"] is None and line_grant["evidence"]["campaign_raw"] == "セミナー"
    assert records[2]["occurred_at"] == "2026-12-01T00:00:01.500123Z"  # microseconds kept
    assert all(r["wording_version"].startswith("terms-ja-") for r in records if r["action"] == "grant")
    # the Japanese in the evidence is hashed as UTF-8, not \u escapes: an ASCII-escaped hash would differ
    escaped = json.dumps({k: v for k, v in first.items() if k not in ("address", "hash")},
                         sort_keys=True, separators=(",", ":"))
    assert hashlib.sha256((first["prev_hash"] + escaped).encode()).hexdigest() != first["hash"]


async def test_wording_hash_is_the_sha256_of_the_stored_text(db, settings, clock):
    await busy_ledger(db, settings, clock)
    async with db.read() as session:
        rows = (await session.exec(text("SELECT version, sha256, text FROM consentwording"))).all()  # type: ignore[call-overload]
    wordings = {version: (sha, body) for version, sha, body in rows}
    for record in await exported(db):
        if record["action"] != "grant":
            continue
        sha, body = wordings[record["wording_version"]]
        assert record["wording_sha256"] == sha == hashlib.sha256(body.encode("utf-8")).hexdigest()
        assert settings.sender_name in body


async def test_address_hmac_is_not_the_address_and_is_stable(db, settings, clock):
    await busy_ledger(db, settings, clock)
    records = await exported(db)
    by_address: dict[str, set[str]] = {}
    for record in records:
        assert HEX64.match(record["address_hmac"])
        assert record["address"] not in record["address_hmac"]
        by_address.setdefault(record["address"], set()).add(record["address_hmac"])
    assert all(len(hmacs) == 1 for hmacs in by_address.values()), by_address  # 1001: grant, withdraw, grant
    assert len({next(iter(h)) for h in by_address.values()}) == len(by_address)  # different addresses differ
    # the key is kept in the database: a new process (a new engine) computes the same value
    other = Database(settings.database_url)
    try:
        service = SubscriptionService(other, settings, clock)
        await withdraw(service, "1002")
    finally:
        await other.dispose()
    last = (await exported(db))[-1]
    assert last["address"] == "1002" and last["address_hmac"] in by_address["1002"]
    # email addresses are compared case-insensitively
    key = b"k" * 32
    assert consent.address_hmac(key, "email", "Taro@Example.JP ") == consent.address_hmac(key, "email", "taro@example.jp")
    assert consent.address_hmac(key, "telegram", "1001") != consent.address_hmac(key, "line", "1001")


async def test_intact_ledger_passes_verify_and_audit(db, settings, clock):
    await busy_ledger(db, settings, clock)
    assert verify_chain(await ledger(db)) == []
    report = await audit(db)
    assert report.ok and report.events == 5 and report.chain_problems == []


async def assert_tampered(db: Database, event_id: int) -> None:
    problems = verify_chain(await ledger(db))
    assert problems and {p.event_id for p in problems} == {event_id}, problems
    report = await audit(db)
    assert not report.ok
    assert [p.event_id for p in report.chain_problems] == [p.event_id for p in problems]


async def test_tampered_source_is_detected(db, settings, clock):
    await busy_ledger(db, settings, clock)
    await execute(db, "UPDATE consent_event SET source = 'web' WHERE id = 2")
    await assert_tampered(db, 2)


async def test_tampered_evidence_is_detected(db, settings, clock):
    await busy_ledger(db, settings, clock)
    async with db.read() as session:
        stored = (await session.exec(text("SELECT evidence FROM consent_event WHERE id = 3"))).one()[0]  # type: ignore[call-overload]
    forged = json.loads(stored)
    forged["update_id"] = 999
    await execute(db, "UPDATE consent_event SET evidence = :e WHERE id = 3", e=json.dumps(forged))
    await assert_tampered(db, 3)


async def test_tampered_occurred_at_is_detected(db, settings, clock):
    await busy_ledger(db, settings, clock)
    # Back-date the withdrawal by a day, keeping the stored text format.
    await execute(db, "UPDATE consent_event SET occurred_at = replace(occurred_at, '2026-12-01', '2026-11-30') "
                      "WHERE id = 4")
    assert (await ledger(db))[3].occurred_at.day == 30
    await assert_tampered(db, 4)


async def test_rewritten_hash_breaks_the_next_link(db, settings, clock):
    await busy_ledger(db, settings, clock)
    # A careful forger recomputes the altered row's hash; the next row's prev_hash then gives it away.
    await execute(db, "UPDATE consent_event SET source = 'web' WHERE id = 2")
    event = (await ledger(db))[1]
    forged = consent.chain_hash(event.prev_hash, consent.hashed_record(event))
    await execute(db, "UPDATE consent_event SET hash = :h WHERE id = 2", h=forged)
    await assert_tampered(db, 3)


async def test_deleted_middle_row_is_detected(db, settings, clock):
    await busy_ledger(db, settings, clock)
    await execute(db, "DELETE FROM consent_event WHERE id = 3")
    await assert_tampered(db, 4)


async def test_erasing_an_address_keeps_the_chain_valid(db, settings, clock):
    await busy_ledger(db, settings, clock)
    before = await exported(db)
    await execute(db, "UPDATE endpoint SET address = NULL WHERE channel = 'telegram' AND address = '1001'")
    after = await exported(db)
    erased = [r for r in after if r["event_id"] in {1, 4, 5}]
    assert [r["address"] for r in erased] == [None, None, None]
    assert [r["address"] for r in after if r["event_id"] not in {1, 4, 5}] == ["U" + "a" * 32, "1002"]
    for old, new in zip(before, after, strict=True):
        assert new["hash"] == old["hash"] == independent_hash(new)
        assert new["address_hmac"] == old["address_hmac"]
    assert verify_chain(await ledger(db)) == []
    assert (await audit(db)).ok


async def test_concurrent_appends_never_fork_the_chain(db, settings, clock):
    service = SubscriptionService(db, settings, clock)
    people = [str(2000 + i) for i in range(50)]
    offers = await asyncio.gather(*(service.handle_text(ctx(p, key=f"ask-{p}"), "登録") for p in people))
    grants = await asyncio.gather(*(
        service.handle_button(ctx(p, key=f"ok-{p}", update_id=i), reply[0].buttons[0].data)
        for i, (p, reply) in enumerate(zip(people, offers, strict=True))
    ))
    assert all(g[0].kind == "subscribed" for g in grants)
    events = await ledger(db)
    assert len(events) == 50
    assert len({e.prev_hash for e in events}) == 50
    assert [e.id for e in events] == list(range(1, 51))
    assert verify_chain(events) == []
    records = await exported(db)
    assert sorted(r["address"] for r in records) == sorted(people)
    assert all(r["hash"] == independent_hash(r) for r in records)


async def attempted(db: Database, delivery_id: int, moment) -> None:  # type: ignore[no-untyped-def]
    async with db.write() as session:
        await session.exec(update(Delivery).where(Delivery.id == delivery_id)  # type: ignore[call-overload]
                           .values(first_attempted_at=moment, attempted_at=moment, status="sent", sent_at=moment))


async def test_audit_flags_a_delivery_attempted_after_withdrawal(db, settings, clock):
    service = SubscriptionService(db, settings, clock)
    await subscribe(service, "3001")
    await subscribe(service, "3002")
    await subscribe(service, "3003")
    issue = await create_issue(db, IssueDraft("12月のIT通信", "本文"))
    assert await enqueue(db, issue.id, ["telegram"]) == {"telegram": 3}
    async with db.read() as session:
        rows = (await session.exec(select(Delivery, Endpoint.address).join(Endpoint))).all()  # type: ignore[call-overload]
    delivery_of = {address: delivery.id for delivery, address in rows}
    clock.advance(10)
    granted_window = clock.now
    clock.advance(10)
    await withdraw(service, "3001")
    withdrawn_at = clock.now
    # 3002 was attempted while consented; 3003's delivery was created but never attempted (not checked).
    await attempted(db, delivery_of["3002"], granted_window)
    report = await audit(db)
    assert report.ok and report.deliveries == 1
    # 3001 was attempted one second after the withdrawal was committed: a violation.
    await attempted(db, delivery_of["3001"], withdrawn_at + timedelta(seconds=1))
    report = await audit(db)
    assert not report.ok and report.chain_problems == []
    assert [(v.delivery_id, v.latest_action, v.channel) for v in report.delivery_violations] == [
        (delivery_of["3001"], "withdraw", "telegram")
    ]
    assert report.deliveries == 2


async def test_audit_accepts_an_attempt_just_before_the_withdrawal(db, settings, clock):
    service = SubscriptionService(db, settings, clock)
    await subscribe(service, "4001")
    issue = await create_issue(db, IssueDraft("号外", "本文"))
    await enqueue(db, issue.id, ["telegram"])
    clock.advance(5)
    await withdraw(service, "4001")
    async with db.read() as session:
        delivery = (await session.exec(select(Delivery))).one()
    await attempted(db, delivery.id, clock.now - timedelta(microseconds=1))
    assert (await audit(db)).ok


async def test_audit_flags_an_attempt_before_any_consent(db, settings, clock):
    service = SubscriptionService(db, settings, clock)
    await subscribe(service, "5001")
    issue = await create_issue(db, IssueDraft("号外", "本文"))
    await enqueue(db, issue.id, ["telegram"])
    async with db.read() as session:
        delivery = (await session.exec(select(Delivery))).one()
    await attempted(db, delivery.id, clock.now - timedelta(days=1))
    report = await audit(db)
    assert [v.latest_action for v in report.delivery_violations] == [None]
