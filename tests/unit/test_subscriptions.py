"""Subscription use cases over a real SQLite file (no network): ask -> consent -> withdraw, idempotency, groups."""

from __future__ import annotations

from sqlmodel import select

from core.consent import verify_chain
from core.subscriptions import ChatContext, SubscriptionService
from storage.models import ConsentEvent, Endpoint, TermsOffer


def ctx(address: str = "1001", key: str | None = None, chat_type: str = "private", channel: str = "telegram") -> ChatContext:
    return ChatContext(channel=channel, address=address, chat_type=chat_type, event_key=key,  # type: ignore[arg-type]
                       evidence={"update_id": key} if key else {})


async def events(db) -> list[ConsentEvent]:
    async with db.read() as s:
        return list((await s.exec(select(ConsentEvent).order_by(ConsentEvent.id))).all())


async def endpoint(db, address: str = "1001", channel: str = "telegram") -> Endpoint | None:
    async with db.read() as s:
        return (await s.exec(select(Endpoint).where(Endpoint.address == address, Endpoint.channel == channel))).first()


async def test_subscribe_consent_withdraw_cycle(db, settings, clock):
    service = SubscriptionService(db, settings, clock)
    replies = await service.handle_text(ctx(key="u1"), "登録 ")
    assert replies[0].kind == "terms"
    assert "山田IT事務所" in replies[0].text and "/privacy" in replies[0].text and "解除" in replies[0].text
    button = replies[0].buttons[0]
    assert button.data.startswith("consent:")
    assert await endpoint(db) is None  # showing the terms subscribes nobody
    replies = await service.handle_button(ctx(key="u2"), button.data)
    assert replies[0].kind == "subscribed"
    assert (await endpoint(db)).state == "active"
    ledger = await events(db)
    assert [e.action for e in ledger] == ["grant"]
    assert ledger[0].wording_version.startswith("terms-ja-") and len(ledger[0].wording_sha256) == 64
    assert ledger[0].evidence["consent_via"] == "button"
    assert "1001" not in ledger[0].address_hmac
    # second 登録 while subscribed says so, changes nothing
    replies = await service.handle_text(ctx(key="u3"), "とうろく")
    assert replies[0].kind == "already_subscribed"
    replies = await service.handle_text(ctx(key="u4"), "　解除　")
    assert replies[0].kind == "withdrawn"
    assert (await endpoint(db)).state == "unsubscribed"
    ledger = await events(db)
    assert [e.action for e in ledger] == ["grant", "withdraw"]
    assert verify_chain(ledger) == []


async def test_repeated_event_does_nothing_twice(db, settings, clock):
    service = SubscriptionService(db, settings, clock)
    await service.handle_text(ctx(key="a"), "登録")
    first = await service.handle_text(ctx(key="b"), "同意")
    again = await service.handle_text(ctx(key="b"), "同意")
    assert first and first[0].kind == "subscribed"
    assert again == []
    assert [e.action for e in await events(db)] == ["grant"]


async def test_consent_without_terms_shows_terms(db, settings, clock):
    service = SubscriptionService(db, settings, clock)
    replies = await service.handle_text(ctx(key="x"), "同意")
    assert replies[0].kind == "terms"
    assert await events(db) == []


async def test_consent_after_24h_shows_terms_again(db, settings, clock):
    service = SubscriptionService(db, settings, clock)
    await service.handle_text(ctx(), "登録")
    clock.advance(24 * 3600 + 1)
    replies = await service.handle_text(ctx(), "同意")
    assert replies[0].kind == "terms"
    assert await events(db) == []


async def test_withdraw_when_never_subscribed_is_polite_and_silent(db, settings, clock):
    service = SubscriptionService(db, settings, clock)
    replies = await service.handle_text(ctx(), "解除")
    assert replies[0].kind == "not_subscribed"
    assert await events(db) == []


async def test_sentence_containing_withdraw_is_not_a_command(db, settings, clock):
    service = SubscriptionService(db, settings, clock)
    await service.handle_text(ctx(), "登録")
    await service.handle_text(ctx(), "同意")
    replies = await service.handle_text(ctx(), "解除の方法を教えてください")
    assert replies[0].kind == "help"
    assert (await endpoint(db)).state == "active"


async def test_group_chat_is_refused(db, settings, clock):
    service = SubscriptionService(db, settings, clock)
    replies = await service.handle_text(ctx(address="-500", chat_type="group"), "登録")
    assert replies[0].kind == "group_refused"
    async with db.read() as s:
        assert (await s.exec(select(TermsOffer))).all() == []


async def test_button_of_someone_else_does_not_subscribe_them(db, settings, clock):
    service = SubscriptionService(db, settings, clock)
    replies = await service.handle_text(ctx(address="1"), "登録")
    stolen = replies[0].buttons[0].data
    replies = await service.handle_button(ctx(address="2"), stolen)
    assert replies[0].kind == "terms"  # shown the terms, not subscribed
    assert await endpoint(db, "2") is None
    assert await events(db) == []


async def test_blocked_is_unreachable_and_withdraw(db, settings, clock):
    service = SubscriptionService(db, settings, clock)
    await service.handle_text(ctx(), "登録")
    await service.handle_text(ctx(), "同意")
    await service.handle_blocked(ctx(key="blk"))
    assert (await endpoint(db)).state == "unreachable"
    ledger = await events(db)
    assert [(e.action, e.source) for e in ledger] == [("grant", "chat"), ("withdraw", "blocked")]


async def test_status_lists_channels(db, settings, clock):
    service = SubscriptionService(db, settings, clock)
    await service.handle_text(ctx(), "登録")
    await service.handle_text(ctx(), "同意")
    replies = await service.handle_text(ctx(), "状態")
    assert "Telegram" in replies[0].text and "配信中" in replies[0].text and "2026-12-01 09:00" in replies[0].text


async def test_english_user_gets_english(db, settings, clock):
    service = SubscriptionService(db, settings, clock)
    replies = await service.handle_text(ctx(), "subscribe")
    assert "Privacy policy" in replies[0].text
    replies = await service.handle_text(ctx(), "agree")
    assert replies[0].kind == "subscribed" and "Thank you" in replies[0].text
