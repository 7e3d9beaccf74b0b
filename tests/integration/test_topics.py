"""Topics end to end (issue 5 item 7): the トピック command and its buttons, ``topics`` ledger events, and the topic
filter inside the broadcast's INSERT … SELECT and the dispatcher's re-check just before each attempt.

Runs on a SQLite file and, through ``any_db``, on PostgreSQL (skipped with the reason when no server is configured):
the topic rule is dialect-specific SQL over a JSON list. The sender is a recording fake at the outermost edge.
"""

from __future__ import annotations

from sqlmodel import select

from core.audit import audit
from core.broadcast import IssueDraft, create_issue, enqueue, recipient_counts
from core.channels import OutboundMessage, Outcome, SendResult
from core.dispatcher import Dispatcher
from core.subscriptions import ChatContext, SubscriptionService
from storage.models import ConsentEvent, Delivery, Endpoint, Subscriber

DRAFT = IssueDraft("12月のIT通信", "**パスワード管理**のコツ。")


class RecordingSender:
    """One Telegram chat per request; records recipients; always sent."""

    channel = "telegram"
    max_recipients = 1

    def __init__(self) -> None:
        self.recipients: list[str] = []

    async def send(self, message: OutboundMessage) -> SendResult:
        self.recipients.extend(message.recipients)
        return SendResult(Outcome.sent())


def chat(address: str, chat_type: str = "private", **evidence: object) -> ChatContext:
    return ChatContext(channel="telegram", address=address, chat_type=chat_type, evidence=dict(evidence))  # type: ignore[arg-type]


async def subscribe(service: SubscriptionService, address: str) -> None:
    terms = await service.handle_text(chat(address), "登録")
    assert (await service.handle_button(chat(address), terms[0].buttons[0].data))[0].kind == "subscribed"


async def press(service: SubscriptionService, address: str, data: str) -> list[str]:
    """Press a topic button; return the labels of the buttons in the answer (the chosen ones marked ✅)."""
    replies = await service.handle_button(chat(address, callback_query_id=f"cq-{data}"), data)
    assert len(replies) == 1, replies
    return [button.label for button in replies[0].buttons]


async def statuses(db, issue_id: int) -> dict[str, str]:
    async with db.read() as session:
        rows = (await session.exec(select(Delivery, Endpoint).join(Endpoint, Endpoint.id == Delivery.endpoint_id)
                                   .where(Delivery.issue_id == issue_id))).all()
    return {endpoint.address: delivery.status for delivery, endpoint in rows}


async def topics_of(db, address: str) -> list[str] | None:
    async with db.read() as session:
        endpoint = (await session.exec(select(Endpoint).where(Endpoint.address == address))).one()
        return (await session.get(Subscriber, endpoint.subscriber_id)).topics


async def test_topic_command_buttons_and_ledger_events(db, settings, clock):
    service = SubscriptionService(db, settings, clock)
    await subscribe(service, "1001")
    # A stray U+3000 around the keyword does not matter; the menu has a button per topic plus "すべて".
    menu = await service.handle_text(chat("1001"), "\u3000トピック ")
    assert menu[0].kind == "topics" and "いまの設定: すべて" in menu[0].text
    assert [(b.label, b.data) for b in menu[0].buttons] == [
        ("IT関連情報", "topic:it"), ("イベント情報", "topic:events"), ("✅ すべて", "topic:*")]
    assert (await service.handle_text(chat("1001"), "ﾄﾋﾟｯｸ"))[0].kind == "topics"  # half-width katakana
    english = await service.handle_text(chat("1001"), "ＴＯＰＩＣＳ")  # full-width Latin: the English keyword
    assert english[0].kind == "topics" and "Now: all" in english[0].text and english[0].buttons[-1].label == "✅ All"

    assert await press(service, "1001", "topic:it") == ["✅ IT関連情報", "イベント情報", "すべて"]
    assert await topics_of(db, "1001") == ["it"]
    assert await press(service, "1001", "topic:events") == ["✅ IT関連情報", "✅ イベント情報", "すべて"]
    assert await topics_of(db, "1001") == ["it", "events"]  # the configured order, not the order pressed
    await press(service, "1001", "topic:it")
    assert await topics_of(db, "1001") == ["events"]
    status = await service.handle_text(chat("1001"), "状態")
    assert "トピック: イベント情報" in status[0].text
    # Pressing the last chosen topic again leaves none chosen: every topic.
    assert await press(service, "1001", "topic:events") == ["IT関連情報", "イベント情報", "✅ すべて"]
    assert await topics_of(db, "1001") is None
    # "すべて" when every topic is already chosen changes nothing and appends nothing.
    await press(service, "1001", "topic:*")

    async with db.read() as session:
        events = (await session.exec(select(ConsentEvent).order_by(ConsentEvent.id))).all()
    assert [e.action for e in events] == ["grant", "topics", "topics", "topics", "topics"]
    assert [e.topics for e in events[1:]] == [["it"], ["it", "events"], ["events"], None]
    assert [e.evidence["previous_topics"] for e in events[1:]] == [None, ["it"], ["it", "events"], ["events"]]
    assert all(e.source == "chat" and e.endpoint_id == events[0].endpoint_id for e in events[1:])
    assert (await audit(db)).ok  # the chain holds; topics events never count as consent

    # Not subscribed, a group chat, and a button of a topic that is no longer offered.
    assert (await service.handle_text(chat("2002"), "トピック"))[0].kind == "not_subscribed"
    assert (await service.handle_button(chat("2002"), "topic:it"))[0].kind == "not_subscribed"
    assert (await service.handle_text(chat("-100500", "group"), "トピック"))[0].kind == "group_refused"
    assert (await service.handle_button(chat("1001"), "topic:retired"))[0].kind == "topics"
    async with db.read() as session:
        assert len((await session.exec(select(ConsentEvent))).all()) == 5


async def test_topic_filter_at_enqueue_and_at_the_attempt(any_db, settings, clock):
    db = any_db
    service = SubscriptionService(db, settings, clock)
    for address in ("11", "12", "13", "14"):
        await subscribe(service, address)
    await press(service, "11", "topic:it")  # it
    await press(service, "12", "topic:events")  # events
    # 13 chooses nothing: every topic
    await press(service, "14", "topic:it")
    await press(service, "14", "topic:events")  # it + events

    assert await recipient_counts(db, ["telegram"], topic="it") == {"telegram": 3}
    assert await recipient_counts(db, ["telegram"], topic="events") == {"telegram": 3}
    assert await recipient_counts(db, ["telegram"]) == {"telegram": 4}

    it_issue = await create_issue(db, DRAFT, topic="it")
    assert await enqueue(db, it_issue.id, ["telegram"]) == {"telegram": 3}
    assert set(await statuses(db, it_issue.id)) == {"11", "13", "14"}  # 12 wants only events

    # After the enqueue, 11 switches from it to events: the re-check just before the attempt skips them.
    await press(service, "11", "topic:events")
    await press(service, "11", "topic:it")
    assert await topics_of(db, "11") == ["events"]
    sender = RecordingSender()
    await Dispatcher(db, {"telegram": sender}, service, clock=clock).dispatch(it_issue.id)
    assert sorted(sender.recipients) == ["13", "14"]
    assert await statuses(db, it_issue.id) == {"11": "skipped", "13": "sent", "14": "sent"}

    everyone = await create_issue(db, IssueDraft("号外", "全員へ"))
    assert await enqueue(db, everyone.id, ["telegram"]) == {"telegram": 4}
    sender = RecordingSender()
    await Dispatcher(db, {"telegram": sender}, service, clock=clock).dispatch(everyone.id)
    assert sorted(sender.recipients) == ["11", "12", "13", "14"]
    assert (await audit(db)).ok
