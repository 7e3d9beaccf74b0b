"""Email double opt-in use cases over a real SQLite file; the mailer is a fake at the outermost edge."""

from __future__ import annotations

from sqlmodel import select

from core.consent import verify_chain
from core.double_opt_in import EmailSubscriptions, normalise_email
from core.optout import OptOuts
from core.subscriptions import ChatContext, SubscriptionService
from storage.models import ConsentEvent, EmailConfirmation, Endpoint


class FakeMailer:
    """Captures confirmation mails instead of sending them."""

    def __init__(self, accept: bool = True) -> None:
        self.sent: list[dict] = []
        self.accept = accept

    async def send_confirmation(self, *, to, confirm_url, code, expires_hours):
        self.sent.append({"to": to, "url": confirm_url, "code": code, "hours": expires_hours})
        return self.accept


def token_of(mail: dict) -> str:
    return mail["url"].rsplit("/", 1)[1]


async def setup(db, settings, clock, mailer=None):
    service = SubscriptionService(db, settings, clock)
    email = EmailSubscriptions(db, settings, mailer or FakeMailer(), clock)
    service.email = email
    return service, email


async def chat_subscribe(service, address="1001"):
    ctx = ChatContext(channel="telegram", address=address)
    await service.handle_text(ctx, "登録")
    await service.handle_text(ctx, "同意")
    return ctx


async def events(db):
    async with db.read() as s:
        return list((await s.exec(select(ConsentEvent).order_by(ConsentEvent.id))).all())


async def email_endpoints(db):
    async with db.read() as s:
        return list((await s.exec(select(Endpoint).where(Endpoint.channel == "email").order_by(Endpoint.id))).all())


def test_normalise_email_lowercases_and_rejects_bad_addresses():
    assert normalise_email(" Taro.Yamada@Example.JP ") == "taro.yamada@example.jp"
    for bad in ["no-at", "a b@example.jp", "x" * 300 + "@example.jp", "taro@example.jp\r\nBcc: x@y.jp", ""]:
        try:
            normalise_email(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad!r}")


async def test_chat_code_confirms_and_writes_confirm_event(db, settings, clock):
    mailer = FakeMailer()
    service, _ = await setup(db, settings, clock, mailer)
    ctx = await chat_subscribe(service)
    replies = await service.handle_text(ctx, "メール　Ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ")
    assert replies[0].kind == "email_sent" and "taro@example.jp" in replies[0].text
    assert mailer.sent[0]["to"] == "taro@example.jp" and len(mailer.sent[0]["code"]) == 6
    assert [e.state for e in await email_endpoints(db)] == ["pending"]
    async with db.read() as s:
        row = (await s.exec(select(EmailConfirmation))).one()
        assert mailer.sent[0]["code"] not in row.code_hash  # stored hashed
    wrong = "000000" if mailer.sent[0]["code"] != "000000" else "111111"
    replies = await service.handle_text(ctx, wrong)
    assert replies[0].kind == "email_confirm_wrong_code"
    code = "".join(chr(ord(c) + 0xFEE0) for c in mailer.sent[0]["code"])  # typed in full-width digits
    replies = await service.handle_text(ctx, code)
    assert replies[0].kind == "email_confirm_confirmed"
    assert [e.state for e in await email_endpoints(db)] == ["active"]
    ledger = await events(db)
    assert [(e.action, e.channel, e.source) for e in ledger][-1] == ("confirm", "email", "chat")
    assert ledger[-1].wording_version.startswith("terms-ja-") and verify_chain(ledger) == []
    # the code is single-use: typing it again is ordinary text (help)
    replies = await service.handle_text(ctx, mailer.sent[0]["code"])
    assert replies[0].kind == "help"


async def test_link_confirms_once_get_changes_nothing(db, settings, clock):
    mailer = FakeMailer()
    _, email = await setup(db, settings, clock, mailer)
    result = await email.request("hanako@example.jp", via="web", requester_id=None, campaign=None,
                                 evidence={"ip": "127.0.0.1", "user_agent": "pytest"})
    assert result.kind == "sent"
    token = token_of(mailer.sent[0])
    inspected, _ = await email.inspect_token(token)
    assert inspected.kind == "confirmed"  # what a POST would do
    assert [e.state for e in await email_endpoints(db)] == ["pending"]  # GET-like inspection changed nothing
    assert (await email.confirm_token(token, {"ip": "127.0.0.1", "user_agent": "ua"})).kind == "confirmed"
    assert (await email.confirm_token(token, {})).kind == "used"
    confirm = (await events(db))[-1]
    assert confirm.action == "confirm" and confirm.source == "web" and confirm.evidence["confirm_ip"] == "127.0.0.1"


async def test_forged_and_expired_tokens_change_nothing(db, settings, clock):
    mailer = FakeMailer()
    _, email = await setup(db, settings, clock, mailer)
    await email.request("a@example.jp", via="web", requester_id=None, campaign=None, evidence={})
    token = token_of(mailer.sent[0])
    assert (await email.confirm_token(token[:-2] + "xx", {})).kind == "invalid"
    assert (await email.confirm_token("nonsense", {})).kind == "invalid"
    clock.advance(settings.confirm_ttl_seconds + 1)
    result = await email.confirm_token(token, {})
    assert result.kind == "expired"
    assert [e.state for e in await email_endpoints(db)] == ["pending"]
    assert await events(db) == []


async def test_rate_limit_three_mails_per_address_per_day(db, settings, clock):
    mailer = FakeMailer()
    _, email = await setup(db, settings, clock, mailer)
    kinds = [(await email.request("a@example.jp", via="web", requester_id=None, campaign=None, evidence={})).kind
             for _ in range(4)]
    assert kinds == ["sent", "sent", "sent", "rate_limited"] and len(mailer.sent) == 3
    clock.advance(24 * 3600 + 1)
    assert (await email.request("a@example.jp", via="web", requester_id=None, campaign=None, evidence={})).kind == "sent"


async def test_five_wrong_codes_lock_the_request(db, settings, clock):
    mailer = FakeMailer()
    service, _ = await setup(db, settings, clock, mailer)
    ctx = await chat_subscribe(service)
    await service.handle_text(ctx, "メール a@example.jp")
    right = mailer.sent[0]["code"]
    wrong = "999999" if right != "999999" else "888888"
    kinds = [(await service.handle_text(ctx, wrong))[0].kind for _ in range(5)]
    assert kinds[-1] == "email_confirm_locked"
    replies = await service.handle_text(ctx, right)
    assert replies[0].kind in ("email_confirm_locked", "help")
    assert [e.state for e in await email_endpoints(db)] == ["pending"]


async def test_same_address_twice_is_one_endpoint(db, settings, clock):
    _, email = await setup(db, settings, clock)
    await email.request("Taro@Example.jp", via="web", requester_id=None, campaign=None, evidence={})
    await email.request("taro@example.jp", via="web", requester_id=None, campaign=None, evidence={})
    assert len(await email_endpoints(db)) == 1


async def test_invalid_address_stores_nothing(db, settings, clock):
    mailer = FakeMailer()
    service, _ = await setup(db, settings, clock, mailer)
    ctx = await chat_subscribe(service)
    replies = await service.handle_text(ctx, "メール taro＠")
    assert replies[0].kind == "email_invalid"
    assert mailer.sent == [] and await email_endpoints(db) == []


async def test_new_address_replaces_old_only_when_confirmed(db, settings, clock):
    mailer = FakeMailer()
    service, email = await setup(db, settings, clock, mailer)
    ctx = await chat_subscribe(service)
    await service.handle_text(ctx, "メール old@example.jp")
    await service.handle_text(ctx, mailer.sent[-1]["code"])
    await service.handle_text(ctx, "メール new@example.jp")
    states = {e.address: e.state for e in await email_endpoints(db)}
    assert states == {"old@example.jp": "active", "new@example.jp": "pending"}
    await service.handle_text(ctx, mailer.sent[-1]["code"])
    states = {e.address: e.state for e in await email_endpoints(db)}
    assert states == {"old@example.jp": "unsubscribed", "new@example.jp": "active"}
    tail = [(e.action, e.channel) for e in await events(db)][-2:]
    assert tail == [("withdraw", "email"), ("confirm", "email")]


async def test_address_of_another_subscriber_moves_to_the_confirming_requester(db, settings, clock):
    mailer = FakeMailer()
    service, email = await setup(db, settings, clock, mailer)
    await email.request("shared@example.jp", via="web", requester_id=None, campaign=None, evidence={})
    await email.confirm_token(token_of(mailer.sent[-1]), {})
    first_owner = (await email_endpoints(db))[0].subscriber_id
    ctx = await chat_subscribe(service, "2002")
    await service.handle_text(ctx, "メール shared@example.jp")
    assert (await email_endpoints(db))[0].subscriber_id == first_owner  # nothing moves before confirmation
    await service.handle_text(ctx, mailer.sent[-1]["code"])
    moved = (await email_endpoints(db))[0]
    assert moved.subscriber_id != first_owner and moved.state == "active"
    assert (await events(db))[-1].evidence["moved_from_subscriber"] == first_owner


async def test_unsubscribe_token_one_click_and_resubscribe_needs_confirmation(db, settings, clock):
    mailer = FakeMailer()
    _, email = await setup(db, settings, clock, mailer)
    await email.request("a@example.jp", via="web", requester_id=None, campaign=None, evidence={})
    await email.confirm_token(token_of(mailer.sent[-1]), {})
    optouts = OptOuts(db, settings, clock)
    endpoint = (await email_endpoints(db))[0]
    token = optouts.unsubscribe_url(endpoint.id).rsplit("/", 1)[1]
    assert (await optouts.unsubscribe(token + "x", source="one_click", scope_all=False, evidence={})).kind == "invalid"
    first = await optouts.unsubscribe(token, source="one_click", scope_all=False, evidence={})
    again = await optouts.unsubscribe(token, source="one_click", scope_all=False, evidence={})
    assert (first.withdrawn, again.withdrawn) == (1, 0)
    assert (await events(db))[-1].source == "one_click"
    result = await email.request("a@example.jp", via="web", requester_id=None, campaign=None, evidence={})
    assert result.kind == "sent"  # a fresh double opt-in, never a silent reactivation
    assert (await email_endpoints(db))[0].state == "unsubscribed"


async def test_admin_withdraw_suppresses_unknown_address(db, settings, clock):
    optouts = OptOuts(db, settings, clock)
    withdrawn, endpoints = await optouts.withdraw_by_admin("Caller@Example.jp", "email", "phone", "電話で停止希望")
    assert withdrawn == 1 and endpoints[0].state == "unsubscribed"
    event = (await events(db))[-1]
    assert (event.action, event.source, event.evidence["via"]) == ("withdraw", "admin", "phone")
