"""Stats on a known data set (issue 5 item 8): every number worked out by hand below, checked through the core use
case and through ``otayori stats --json`` in a separate process; the chart is a real PNG with a Japanese font.

The data set is anchored at the real current time (the CLI counts windows from its own clock), with every event
hours away from a window's edge so that the few seconds between the two readings cannot move a number.

    day -40  T1 subscribes (telegram, no campaign)                      <- outside 30 days
    day -20  T2 subscribes with campaign seminar-2026-12, chooses topic "it"; L1 (LINE) subscribes with the campaign
    day -10  issue A (every topic, telegram + LINE): T1 sent, T2 sent, L1 failed (rejected)
    day -10  +1 h: T1 withdraws                                         <- within 48 h of A
    day  -5  T3 subscribes with the campaign; L2 (LINE) subscribes, chooses "events"; T2 confirms an email address
    day  -3  issue B (topic "it", telegram + LINE + email): L1 withdraws 10 min later (skipped); T2, T3, T2's email sent
    day  -3  +24 h: T2's email unsubscribes (one-click)                 <- within 48 h of B
    day  -3  +50 h: T3 withdraws                                        <- after 48 h of B
    day  -2  T4 subscribes (telegram, no campaign, no topic = every topic)
    a draft that never started, and a test send: not in the issue results
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from bots.charts import japanese_font, signup_chart_png, write_signup_chart
from core.admins import Actor
from core.broadcast import IssueDraft, create_issue
from core.campaigns import add_campaign
from core.channels import OutboundMessage, Outcome, OutcomeKind, SendResult
from core.dispatcher import Dispatcher
from core.issues import create_test_send, send_now
from core.stats import collect_stats, signups_per_day
from core.subscriptions import ChatContext, SubscriptionService
from storage.models import ConsentSource, Endpoint
from storage.types import utcnow
from tests.conftest import Clock
from tests.integration.test_cli import cli_env, otayori
from tests.integration.test_desk import add_confirmed_email

L1, L2 = "U" + "1" * 32, "U" + "2" * 32
CLI = Actor("cli", "yamada")


class Sender:
    """Records recipients; answers ``rejected`` for the addresses in ``reject``."""

    def __init__(self, channel: str, max_recipients: int = 1, reject: frozenset[str] = frozenset()) -> None:
        self.channel, self.max_recipients, self.reject = channel, max_recipients, reject
        self.recipients: list[str] = []

    async def send(self, message: OutboundMessage) -> SendResult:
        self.recipients.extend(message.recipients)
        per = {r: Outcome(OutcomeKind.REJECTED, reason="400 bad request") for r in message.recipients if r in self.reject}
        return SendResult(Outcome.sent(), per)


async def subscribe(service: SubscriptionService, channel: str, address: str, text: str = "登録") -> None:
    ctx = ChatContext(channel=channel, address=address)
    terms = await service.handle_text(ctx, text)
    assert (await service.handle_button(ctx, terms[0].buttons[0].data))[0].kind == "subscribed"


async def known_data_set(db, settings, now: datetime) -> tuple[int, int]:
    """Build the data set of the module docstring; returns the ids of issues A and B."""
    clock = Clock(now)
    service = SubscriptionService(db, settings, clock)

    def at(days: float, hours: float = 0.0) -> None:
        clock.now = now + timedelta(days=days, hours=hours)

    await add_campaign(db, "seminar-2026-12", "12月 東京セミナー")
    at(-40)
    await subscribe(service, "telegram", "6001")
    at(-20)
    await subscribe(service, "telegram", "6002", "登録 seminar-2026-12")
    await service.handle_button(ChatContext(channel="telegram", address="6002"), "topic:it")
    await subscribe(service, "line", L1, "登録 SEMINAR-2026-12")  # campaign codes match case-insensitively

    at(-10)
    issue_a = await create_issue(db, IssueDraft("11月号", "本文"))
    await send_now(db, issue_a.id, ["telegram", "line"], actor=CLI, now=clock())
    senders = {"telegram": Sender("telegram"), "line": Sender("line", 500, frozenset({L1}))}
    await Dispatcher(db, senders, service, clock=clock).dispatch(issue_a.id)
    at(-10, 1)
    await service.handle_text(ChatContext(channel="telegram", address="6001"), "解除")

    at(-5)
    await subscribe(service, "telegram", "6003", "登録 seminar-2026-12")
    await subscribe(service, "line", L2)
    await service.handle_button(ChatContext(channel="line", address=L2), "topic:events")
    await add_confirmed_email(db, "6002", "t2@example.jp", at=clock())

    at(-3)
    issue_b = await create_issue(db, IssueDraft("12月号", "本文"), topic="it")
    await send_now(db, issue_b.id, ["telegram", "line", "email"], actor=CLI, now=clock())
    at(-3, 10 / 60)
    await service.handle_text(ChatContext(channel="line", address=L1), "解除")
    at(-3, 11 / 60)
    senders = {"telegram": Sender("telegram"), "line": Sender("line", 500), "email": Sender("email")}
    await Dispatcher(db, senders, service, clock=clock).dispatch(issue_b.id)
    assert sorted(senders["telegram"].recipients) == ["6002", "6003"] and senders["email"].recipients == ["t2@example.jp"]
    assert senders["line"].recipients == []
    at(-3, 24)
    async with db.write() as session:
        email = (await session.exec(select(Endpoint).where(Endpoint.channel == "email"))).one()
        await service.withdraw_endpoint(session, email, ConsentSource.ONE_CLICK, evidence={"ip": "127.0.0.1"})
    at(-3, 50)
    await service.handle_text(ChatContext(channel="telegram", address="6003"), "解除")
    at(-2)
    await subscribe(service, "telegram", "6004")
    await create_issue(db, IssueDraft("下書き", "まだ送らない"))
    admin_settings = settings.model_copy(update={"telegram_admin_ids": [6004]})
    copy = await create_test_send(db, admin_settings, issue_b.id, ["telegram"], actor=Actor("telegram", "6004"),
                                  now=clock())
    await Dispatcher(db, {"telegram": Sender("telegram")}, service, clock=clock).dispatch(copy.issue_id)
    return issue_a.id, issue_b.id


EXPECTED_MOVEMENT = {
    7: ({"telegram": 2, "line": 1, "email": 1}, {"telegram": 1, "line": 1, "email": 1}),
    30: ({"telegram": 3, "line": 2, "email": 1}, {"telegram": 2, "line": 1, "email": 1}),
}
EXPECTED_CAMPAIGNS = {(None, "telegram"): 2, ("seminar-2026-12", "telegram"): 2, ("seminar-2026-12", "line"): 1,
                      (None, "line"): 1, (None, "email"): 1}
# Each withdrawal counts for the campaign of that endpoint's sign-up: T1 (none), L1 and T3 (the seminar), T2's email
# (confirmed without a campaign).
EXPECTED_WITHDRAWALS = {(None, "telegram"): 1, ("seminar-2026-12", "line"): 1, ("seminar-2026-12", "telegram"): 1,
                        (None, "email"): 1}


async def test_stats_numbers_on_a_known_data_set(db, settings, tmp_path: Path):
    now = utcnow()
    issue_a, issue_b = await known_data_set(db, settings, now)
    stats = await collect_stats(db, settings, now=now)

    assert stats.by_channel == {"line": 1, "telegram": 2, "email": 0}  # L2; T2, T4
    assert stats.by_channel_topic == {
        ("line", "it"): 0, ("telegram", "it"): 2, ("email", "it"): 0,  # T2 chose it, T4 chose none
        ("line", "events"): 1, ("telegram", "events"): 1, ("email", "events"): 0,  # L2 chose events; T4
    }
    assert stats.subscribers == 3 and stats.subscribers_by_topic == {"it": 2, "events": 2}
    assert {m.days: (m.new, m.withdrawn) for m in stats.movement} == EXPECTED_MOVEMENT
    assert stats.signups_by_campaign == EXPECTED_CAMPAIGNS
    assert stats.withdrawals_by_campaign == EXPECTED_WITHDRAWALS
    assert [(r.issue_id, r.topic, r.status, r.counts, r.unsubscribes_48h) for r in stats.issues] == [
        (issue_b, "it", "sent", {"sent": 3, "skipped": 1}, 1),
        (issue_a, None, "sent", {"sent": 2, "failed": 1}, 1),
    ]
    assert [r.issue_id for r in (await collect_stats(db, settings, now=now, last_issues=1)).issues] == [issue_b]

    series = await signups_per_day(db, settings.zone, days=30, now=now)
    assert {channel: sum(n for _, n in points) for channel, points in series.items()} == {
        "line": 2, "telegram": 3, "email": 1}
    assert all(len(points) == 30 for points in series.values())
    today = now.astimezone(settings.zone).date()
    assert series["telegram"][-1] == (today, 0) and series["telegram"][0][0] == today - timedelta(days=29)
    assert dict(series["line"])[(now - timedelta(days=5)).astimezone(settings.zone).date()] == 1

    chart = tmp_path / "charts" / "signups.png"
    size = write_signup_chart(chart, series)
    data = chart.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and size == len(data) > 10_000
    assert signup_chart_png(series, language="en").startswith(b"\x89PNG")


def test_the_chart_uses_a_japanese_font():
    import subprocess

    listed = subprocess.run(["fc-list"], capture_output=True, text=True, timeout=30).stdout
    if "Noto Sans CJK" not in listed:
        pytest.skip("fonts-noto-cjk is not installed (run `make fonts`)")
    assert japanese_font() == "Noto Sans CJK JP"


async def test_otayori_stats_in_a_separate_process(db, settings, tmp_path: Path):
    now = utcnow()
    issue_a, issue_b = await known_data_set(db, settings, now)
    await db.dispose()
    env = cli_env(database_url=settings.database_url)
    as_json = await otayori("stats", "--json", "--chart", "out/chart.png", cwd=tmp_path, env=env)
    assert as_json.code == 0, as_json
    report = json.loads(as_json.out)
    assert report["subscribers"] == 3 and report["by_channel"] == {"line": 1, "telegram": 2, "email": 0}
    assert report["by_topic"]["it"] == {"label": "IT関連情報", "subscribers": 2,
                                        "by_channel": {"line": 0, "telegram": 2, "email": 0}}
    assert {key: (v["new"], v["withdrawn"]) for key, v in report["movement"].items()} == {
        f"{days}d": numbers for days, numbers in EXPECTED_MOVEMENT.items()}
    assert {(row["campaign"], row["channel"]): row["signups"] for row in report["signups_by_campaign"]} == \
        EXPECTED_CAMPAIGNS
    assert {(row["campaign"], row["channel"]): row["withdrawals"] for row in report["withdrawals_by_campaign"]} == \
        EXPECTED_WITHDRAWALS
    assert [(i["id"], i["counts"], i["unsubscribes_48h"]) for i in report["issues"]] == [
        (issue_b, {"sent": 3, "skipped": 1}, 1), (issue_a, {"sent": 2, "failed": 1}, 1)]
    chart = tmp_path / "out" / "chart.png"
    assert chart.read_bytes().startswith(b"\x89PNG") and f"{chart.stat().st_size} bytes" in as_json.err

    tables = await otayori("stats", cwd=tmp_path, env=env)
    assert tables.code == 0, tables
    text = tables.out
    for expected in ("subscribers: 3 people", "IT関連情報", "イベント情報", "seminar-2026-12", "(none)", "12月号",
                     "11月号", "new 7d", "withdrawn 30d", "unsub 48h"):
        assert expected in text, (expected, text)
    assert "下書き" not in text  # never started
    # sign-ups / withdrawals per campaign: line, telegram, email, total (EXPECTED_CAMPAIGNS, EXPECTED_WITHDRAWALS)
    assert re.search(r"seminar-2026-12\s*│\s*1 / 1\s*│\s*2 / 1\s*│\s*0 / 0\s*│\s*3 / 2", text), text
    assert re.search(r"\(none\)\s*│\s*1 / 0\s*│\s*2 / 1\s*│\s*1 / 1\s*│\s*4 / 2", text), text
    assert datetime.now(UTC) - now < timedelta(minutes=5)  # the windows cannot have moved past an event
