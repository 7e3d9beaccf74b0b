"""The author's desk in the demo, decided before and judged after: who chooses which topic, who gets the answer to a
question (:func:`plan_desk`), what must arrive (:class:`DeskExpectation`), what did (:class:`DeskObservation`), and
the verdict (:func:`verify_desk`). Pure: no I/O, so a test can feed it a tampered observation and watch it fail."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from bots.demo.facts import Check, sample
from bots.demo.script import CHANNELS, CURIOUS_QUESTION, Attendee

#: The Telegram user id of the demo's author (an admin: ``OTAYORI_TELEGRAM_ADMIN_IDS``); no attendee has it.
DEMO_ADMIN_ID = 5_550_001
TOPIC_LABEL = "イベント情報"
OTHER_TOPIC_LABEL = "IT関連情報"
TOPIC_TITLE = "12月のイベント情報"
TOPIC_BODY_HTML = (f"<b>{TOPIC_TITLE}</b>\n<b>オンライン勉強会</b>を12月12日(金)19時から開きます。"
                   '<a href="https://example.jp/events/2026-12">お申し込みはこちら</a>。')
SCHEDULED_TITLE = "年末年始の営業のお知らせ"
SCHEDULED_BODY = f"{SCHEDULED_TITLE}\n12月28日(日)から1月4日(日)までお休みします。"
ANSWER = "「解除」と送るだけで、すぐに止まります。ほかのチャネルも止めるときは「全解除」です。"


@dataclass(frozen=True)
class DeskPlan:
    """``events_fans`` choose only the issue's topic, ``it_fans`` only the other topic (so they must not get it);
    ``answered``: the attendee whose question the author answers (None when nobody asked one)."""

    events_fans: tuple[Attendee, ...]
    it_fans: tuple[Attendee, ...]
    answered: Attendee | None


def plan_desk(plan: list[Attendee]) -> DeskPlan:
    """Deterministic choices among the attendees who stay: per platform the first chooses the issue's topic, the
    second the other one; the curious attendee's question is answered."""
    stayers = {c: [p for p in plan if p.channel == c and p.leaves is None] for c in CHANNELS}
    events = tuple(people[0] for people in stayers.values() if people)
    it = tuple(people[1] for people in stayers.values() if len(people) > 1)
    return DeskPlan(events, it, next((p for p in plan if p.curious), None))


@dataclass(frozen=True)
class DeskExpectation:
    """``topic_recipients`` / ``topic_excluded`` per channel (email by address) for the topic issue;
    ``all_recipients`` per channel for the scheduled issue (every active subscriber); ``curious``: how many asked
    :data:`CURIOUS_QUESTION` after subscribing (forwarded to the author); ``answered``: ``(channel, address)``."""

    topic_recipients: Mapping[str, frozenset[str]]
    topic_excluded: Mapping[str, frozenset[str]]
    all_recipients: Mapping[str, frozenset[str]]
    curious: int
    answered: tuple[str, str] | None


def desk_expectation(plan: list[Attendee], desk: DeskPlan) -> DeskExpectation:
    """What the desk act must produce for ``plan``."""
    it_fans = {p.number for p in desk.it_fans}
    stayers = [p for p in plan if p.leaves is None]
    every: dict[str, set[str]] = {c: set() for c in (*CHANNELS, "email")}
    wanted: dict[str, set[str]] = {c: set() for c in every}
    excluded: dict[str, set[str]] = {c: set() for c in every}
    for person in stayers:
        addresses = [(person.channel, person.address)]
        if person.email is not None and person.email.confirms:
            addresses.append(("email", person.email.address))
        for channel, address in addresses:
            every[channel].add(address)
            (excluded if person.number in it_fans else wanted)[channel].add(address)
    answered = (desk.answered.channel, desk.answered.address) if desk.answered is not None else None
    return DeskExpectation({c: frozenset(v) for c, v in wanted.items()},
                           {c: frozenset(v) for c, v in excluded.items()},
                           {c: frozenset(v) for c, v in every.items()},
                           sum(1 for p in plan if p.curious), answered)


@dataclass(frozen=True)
class DeskObservation:
    """What arrived: ``topic_copies`` / ``scheduled_copies`` ``[channel][address]`` (email by RCPT TO);
    ``scheduled_at`` / ``started_at`` of the scheduled issue; ``final_reports``: the author's status messages that
    ended "配信完了", by title; ``notices``: forwarded copies of :data:`CURIOUS_QUESTION` in the author's chat;
    ``answers``: messages carrying :data:`ANSWER` per ``(channel, address)``."""

    topic_copies: Mapping[str, Mapping[str, int]]
    scheduled_copies: Mapping[str, Mapping[str, int]]
    scheduled_at: datetime | None
    started_at: datetime | None
    final_reports: Mapping[str, int]
    notices: int
    answers: Mapping[tuple[str, str], int]


def _once_each(wanted: Mapping[str, frozenset[str]], copies: Mapping[str, Mapping[str, int]]) -> tuple[int, list[str]]:
    """How many wanted addresses got exactly one copy, and the others as ``channel:address×n``."""
    good, bad = 0, []
    for channel, addresses in wanted.items():
        for address in sorted(addresses):
            count = copies.get(channel, {}).get(address, 0)
            if count == 1:
                good += 1
            else:
                bad.append(f"{channel}:{address}×{count}")
    return good, bad


def verify_desk(expected: DeskExpectation, observed: DeskObservation) -> list[Check]:
    """Three checks: the topic issue reached exactly who wants the topic (once each; nothing to the other topic's
    fans), the scheduled issue started after its time and reached every subscriber once, and the reader's question
    reached the author and the answer the reader (once)."""
    total = sum(len(v) for v in expected.topic_recipients.values())
    good, bad = _once_each(expected.topic_recipients, observed.topic_copies)
    leaked = [f"{c}:{a}" for c, addresses in expected.topic_excluded.items() for a in sorted(addresses)
              if observed.topic_copies.get(c, {}).get(a, 0)]
    others = [f"{c}:{a}" for c, copies in observed.topic_copies.items() for a, n in copies.items()
              if n and a not in expected.topic_recipients.get(c, frozenset())]
    left_out = sum(len(v) for v in expected.topic_excluded.values())
    per = ", ".join(f"{c} {len(expected.topic_recipients[c])}" for c in expected.topic_recipients)
    detail = f"{good}/{total} ({per}); 0 to the {left_out} who chose only {OTHER_TOPIC_LABEL}"
    if bad or leaked or others:
        detail = f"{good}/{total}; wrong: {sample(bad + leaked + others)}"
    checks = [Check(not bad and not leaked and not others and observed.final_reports.get(TOPIC_TITLE, 0) == 1,
                    f"トピック「{TOPIC_LABEL}」の号は選んだ人と未選択の人にだけ1通ずつ / the topic issue reached "
                    "exactly those who want the topic, once each", detail)]

    total = sum(len(v) for v in expected.all_recipients.values())
    good, bad = _once_each(expected.all_recipients, observed.scheduled_copies)
    on_time = (observed.scheduled_at is not None and observed.started_at is not None
               and observed.started_at >= observed.scheduled_at)
    timing = (f"scheduled {observed.scheduled_at:%H:%M:%S}, started {observed.started_at:%H:%M:%S} UTC"
              if observed.scheduled_at and observed.started_at else "never started")
    checks.append(Check(on_time and not bad and observed.final_reports.get(SCHEDULED_TITLE, 0) == 1,
                        "予約した号は時刻のあと全員に1通ずつ / the scheduled issue started after its time and "
                        "reached every subscriber once",
                        f"{timing}; {good}/{total}" + (f"; wrong: {sample(bad)}" if bad else "")))

    answered_ok = expected.answered is not None and observed.answers.get(expected.answered, 0) == 1
    stray = sum(n for key, n in observed.answers.items() if key != expected.answered)
    checks.append(Check(observed.notices == expected.curious and answered_ok and stray == 0,
                        "読者の質問が著者に届き、返事が読者に届いた / a reader's question reached the author and the "
                        "answer reached the reader",
                        f"{observed.notices}/{expected.curious} forwarded; answer to "
                        f"{expected.answered[0] if expected.answered else '—'}: "
                        f"{observed.answers.get(expected.answered, 0) if expected.answered else 0}, elsewhere: {stray}"))
    return checks


def question_forwarded(text: str) -> bool:
    """True for the author's copy of the curious attendee's question."""
    return "読者からのメッセージ" in text and CURIOUS_QUESTION in text
