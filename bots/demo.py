"""``otayori demo``: a seminar rehearsal end to end on the embedded default, checked against what the emulators got.

What happens (issue 2, item 9):

1. ``directory`` (default ``var/demo``) is wiped and recreated; a fresh SQLite file is migrated there before any
   event loop starts (Alembic's ``env.py`` calls ``asyncio.run``: :mod:`storage.migrate`). ``.env`` is ignored.
2. The whole stack starts on 127.0.0.1 (:func:`bots.sandbox.stack.running_stack`): the Telegram and LINE emulators,
   our web app, the real python-telegram-bot polling and the real line-bot-sdk client. Nothing external is contacted.
3. The campaign ``seminar-2026-12`` is registered. ``attendees`` people, about half on each platform, arrive through
   it and type realistic Japanese — Telegram deep links (``/start seminar-2026-12``), ``登録 seminar-2026-12`` with a
   U+3000, full-width letters, trailing spaces or a zero-width space, ``とうろく`` without the code — some ask a
   question first (and get help), then consent with the button or by typing ``同意``. They act concurrently in small
   bounded groups; every choice comes from a seeded :class:`random.Random`, so the script is the same on every run.
4. Two withdraw (``解除`` on Telegram, ``かいじょ`` + U+3000 on LINE), one blocks the bot on LINE (``unfollow``), and
   one who stays asks ``解除ってどうやるんですか？`` (a sentence, so help, not a withdrawal: DESIGN.md grammar).
5. The author broadcasts the sample issue in ``examples/`` with :func:`bots.broadcasting.broadcast_with`.
6. A report is printed, then :func:`verify` compares the script's expectation with what the **emulators received**
   (plus the delivery rows, the ledger, ``otayori audit`` and the consent export). Exit code 0 only when every check
   agrees.

The checks are a pure function (:func:`verify` over :class:`Expectation` and :class:`Observation`) so a test can feed
it a deliberately wrong observation and see it fail.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import random
import shutil
import time
import unicodedata
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy import func
from sqlmodel import select

from bots.broadcasting import BroadcastResult, broadcast_with
from bots.sandbox.line_api import LineEmulator
from bots.sandbox.stack import Stack, running_stack, sandbox_settings
from bots.sandbox.telegram_api import SentMessage, TelegramEmulator
from core import texts
from core.audit import AuditReport, audit, export_consents
from core.broadcast import IssueDraft, IssueFileError, parse_issue_markdown
from core.campaigns import add_campaign
from core.settings import Settings
from storage.database import Database
from storage.migrate import upgrade
from storage.models import ConsentEvent, Endpoint

Channel = Literal["telegram", "line"]
CHANNELS: tuple[Channel, ...] = ("telegram", "line")

CAMPAIGN_CODE = "seminar-2026-12"
CAMPAIGN_LABEL = "12月 東京セミナー"
CAMPAIGN_DATE = "2026-12-05"
#: The issue the author broadcasts (first ``# heading`` = title). Lives in the source tree (``make demo`` installs it
#: editable); ``run_demo(issue_file=...)`` takes another.
SAMPLE_ISSUE = Path(__file__).resolve().parent.parent / "examples" / "2026-12-newsletter.md"
#: The seminar's date; any fixed number would do: it only makes the rehearsal the same on every run.
DEFAULT_SEED = 20261205
#: At most this many attendees act at the same moment (people in a seminar room do not all tap at once).
GROUP_SIZE = 6
#: Seconds one step may take (a reply to arrive, a block to be processed) before the demo reports it as failed.
STEP_TIMEOUT = 15.0
#: Seconds the whole rehearsal may take with up to :data:`DEFAULT_ATTENDEES` people, start-up and shut-down included
#: (the issue asks for < 1 minute; it takes about 7 s on a 2-core machine). Bigger rooms get
#: :data:`TIMEOUT_PER_EXTRA_ATTENDEE` more seconds per person (measured: ~0.2 s each).
DEMO_TIMEOUT = 55.0
DEFAULT_ATTENDEES = 30
TIMEOUT_PER_EXTRA_ATTENDEE = 0.5
#: Attendees needed so that both platforms have someone who leaves and someone who stays.
MIN_ATTENDEES = 4
#: LINE multicast takes at most 500 user ids per request (reference/line.md "Sending").
LINE_MULTICAST_MAX = 500
#: File names a demo directory may contain; anything else means it is not ours to wipe.
_DEMO_FILES = frozenset({"otayori.sqlite3", "otayori.sqlite3-wal", "otayori.sqlite3-shm", "otayori.sqlite3-journal",
                         "secret_key", ".otayori-demo"})
_MARKER = ".otayori-demo"

# The loggers that would otherwise fill the screen (uvicorn start/stop, every httpx request, PTB's polling).
_NOISY_LOGGERS = ("httpx", "httpcore", "uvicorn", "uvicorn.error", "uvicorn.access", "telegram", "telegram.ext",
                  "aiosqlite", "alembic", "linebot", "apscheduler")

# ---- the script ---------------------------------------------------------------------------------------------------

# (text as typed, carries the campaign code). Weighted by repetition: most Telegram users arrive through the QR
# code's deep link (t.me/<bot>?start=seminar-2026-12 makes the client send "/start seminar-2026-12").
TELEGRAM_SUBSCRIBE: tuple[tuple[str, bool], ...] = (
    ("/start seminar-2026-12", True),
    ("/start seminar-2026-12", True),
    ("/start seminar-2026-12", True),
    ("登録 seminar-2026-12", True),
    ("登録\u3000ＳＥＭＩＮＡＲ-2026-12", True),   # IME left in full-width mode, ideographic space
    ("登録 Seminar-2026-12  ", True),              # capitalised by the phone, trailing spaces
    ("\u200b登録 seminar-2026-12", True),          # a zero-width space pasted from the slide's PDF
    ("とうろく", False),                            # typed from memory, without the code
)
LINE_SUBSCRIBE: tuple[tuple[str, bool], ...] = (
    ("登録 seminar-2026-12", True),
    ("登録 seminar-2026-12", True),
    ("登録\u3000seminar-2026-12", True),
    ("登録\u3000ＳＥＭＩＮＡＲ－２０２６－１２", True),   # everything full-width, hyphens too
    ("登録 seminar-2026-12 \u3000", True),                # a stray U+3000 after a space
    ("登録 seminar\u200b-2026-12", True),                 # zero-width space inside the code
    ("トウロク\u3000seminar-2026-12", True),              # katakana
    ("とうろく ", False),
)
#: Typed consents (only words the grammar accepts); ``None`` in a plan means the consent button was pressed.
CONSENT_TEXTS: tuple[str, ...] = ("同意", "同意 ", "同意\u3000", "\u200b同意", "同意  ")
QUESTIONS: tuple[str, ...] = (
    "セミナーの資料はどこですか？",
    "今日のスライドはもらえますか？",
    "こんにちは😀",
    "次回の勉強会はいつですか",
    "録画はありますか？",
)
CURIOUS_QUESTION = "解除ってどうやるんですか？"
WITHDRAW_TEXTS: dict[Channel, str] = {"telegram": "解除", "line": "かいじょ\u3000"}

_FAMILY = ("佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤",
           "吉田", "山田", "佐々木", "山口", "松本", "井上", "木村", "林", "清水", "森")
_GIVEN = ("花子", "太郎", "陽菜", "蓮", "結衣", "悠真", "美咲", "大輝", "さくら", "翔太",
          "葵", "健", "真央", "拓海", "優子", "誠", "愛", "亮", "千尋", "航")

Leave = Literal["withdraw", "block"]


@dataclass(frozen=True)
class Attendee:
    """One person in the rehearsal and everything they will do.

    ``address``: the endpoint address the bot will see (Telegram chat id as text, LINE userId). ``arrival``: seconds
    they wait before starting (spread over the room). ``question``: asked before subscribing, or None.
    ``subscribe_text``: what they type to subscribe; ``with_campaign``: whether it carries the campaign code.
    ``consent_text``: typed consent, or None for the consent button. ``leaves``: None, ``withdraw`` (types
    ``leave_text``) or ``block``. ``curious``: asks :data:`CURIOUS_QUESTION` after subscribing (and stays).
    """

    number: int
    channel: Channel
    address: str
    name: str
    arrival: float
    question: str | None
    subscribe_text: str
    with_campaign: bool
    consent_text: str | None
    leaves: Leave | None = None
    leave_text: str | None = None
    curious: bool = False

    @property
    def label(self) -> str:
        return f"#{self.number} {self.name} ({self.channel})"


def plan_rehearsal(attendees: int, seed: int = DEFAULT_SEED) -> list[Attendee]:
    """The rehearsal script: ``attendees`` people alternating Telegram / LINE (Telegram gets the odd one).

    Every choice comes from ``random.Random(seed)``: the same arguments give the same script. Subscribe texts cycle
    through :data:`TELEGRAM_SUBSCRIBE` / :data:`LINE_SUBSCRIBE` from a random offset (so a room of 15 sees every
    variant), about a quarter ask a question first, about 40 % type their consent. One Telegram attendee withdraws
    with ``解除``, one LINE attendee with ``かいじょ``+U+3000, another LINE attendee blocks the account; one who stays
    asks :data:`CURIOUS_QUESTION`. Raises ``ValueError`` for fewer than :data:`MIN_ATTENDEES`.
    """
    if attendees < MIN_ATTENDEES:
        raise ValueError(f"the rehearsal needs at least {MIN_ATTENDEES} attendees (got {attendees})")
    rng = random.Random(seed)
    channels: list[Channel] = ["telegram" if i % 2 == 0 else "line" for i in range(attendees)]
    variants = {"telegram": TELEGRAM_SUBSCRIBE, "line": LINE_SUBSCRIBE}
    offsets = {c: rng.randrange(len(variants[c])) for c in CHANNELS}
    used = {c: 0 for c in CHANNELS}
    names = [f"{family} {given}" for family in _FAMILY for given in _GIVEN]
    rng.shuffle(names)
    people: list[Attendee] = []
    for index, channel in enumerate(channels):
        number = index + 1
        table = variants[channel]
        text, with_campaign = table[(offsets[channel] + used[channel]) % len(table)]
        used[channel] += 1
        address = str(5_100_000_000 + number) if channel == "telegram" else f"U{rng.getrandbits(128):032x}"
        people.append(Attendee(
            number=number,
            channel=channel,
            address=address,
            name=names[index % len(names)],
            arrival=round(rng.uniform(0.0, 0.2), 3),
            question=rng.choice(QUESTIONS) if rng.random() < 0.25 else None,
            subscribe_text=text,
            with_campaign=with_campaign,
            consent_text=rng.choice(CONSENT_TEXTS) if rng.random() < 0.4 else None,
        ))
    telegram_people = [p for p in people if p.channel == "telegram"]
    line_people = [p for p in people if p.channel == "line"]
    withdraw_tg = rng.choice(telegram_people)
    withdraw_line, block_line = rng.sample(line_people, 2)
    leaving = {withdraw_tg.number: ("withdraw", WITHDRAW_TEXTS["telegram"]),
               withdraw_line.number: ("withdraw", WITHDRAW_TEXTS["line"]),
               block_line.number: ("block", None)}
    staying = [p for p in people if p.number not in leaving]
    curious = rng.choice(staying).number
    planned: list[Attendee] = []
    for person in people:
        leave, leave_text = leaving.get(person.number, (None, None))
        planned.append(replace(person, leaves=leave, leave_text=leave_text, curious=person.number == curious))
    return planned


# ---- expectation, observation, verification (pure) ----------------------------------------------------------------

@dataclass(frozen=True)
class Expectation:
    """What the script implies, decided before looking at anything.

    ``recipients[channel]``: addresses that must receive the issue exactly once. ``excluded[channel]``: addresses that
    must receive nothing of it (withdrew or blocked). ``grants``: consent grants (one per attendee);
    ``campaign_grants``: grants attributed to the campaign; ``withdrawals[source]``: withdraw events per source.
    """

    title: str
    attendees: int
    recipients: Mapping[str, frozenset[str]]
    excluded: Mapping[str, frozenset[str]]
    grants: int
    campaign_grants: int
    withdrawals: Mapping[str, int]

    @property
    def recipient_count(self) -> int:
        return sum(len(v) for v in self.recipients.values())


def expectation_for(plan: list[Attendee], title: str) -> Expectation:
    """The :class:`Expectation` of a rehearsal ``plan`` broadcasting an issue titled ``title``."""
    recipients = {c: frozenset(p.address for p in plan if p.channel == c and p.leaves is None) for c in CHANNELS}
    excluded = {c: frozenset(p.address for p in plan if p.channel == c and p.leaves is not None) for c in CHANNELS}
    withdrawals = Counter("chat" if p.leaves == "withdraw" else "blocked" for p in plan if p.leaves)
    return Expectation(
        title=title,
        attendees=len(plan),
        recipients=recipients,
        excluded=excluded,
        grants=len(plan),
        campaign_grants=sum(1 for p in plan if p.with_campaign),
        withdrawals=dict(withdrawals),
    )


@dataclass(frozen=True)
class Observation:
    """What was observed after the broadcast.

    From the emulators: ``issue_copies[channel][address]`` (messages carrying the issue title that reached that
    address) and ``line_multicast_requests`` (multicast requests the LINE emulator accepted). From the database:
    ``sent[channel]`` (deliveries with status ``sent``), ``active[channel]`` (active endpoints), ``consent_counts``
    (``(action, source) -> events``), ``campaign_grants``, ``ledger_events``. From ``otayori audit``: ``audit_ok`` and a
    one-line ``audit_summary``. From the consent export: ``export_lines``.
    """

    issue_copies: Mapping[str, Mapping[str, int]]
    line_multicast_requests: int
    sent: Mapping[str, int]
    active: Mapping[str, int]
    consent_counts: Mapping[tuple[str, str], int]
    campaign_grants: int
    ledger_events: int
    audit_ok: bool
    audit_summary: str
    export_lines: int


@dataclass(frozen=True)
class Check:
    """One verification: ``ok``, a bilingual ``label``, and ``detail`` (the numbers, or what disagreed)."""

    ok: bool
    label: str
    detail: str


def _sample(items: list[str], limit: int = 3) -> str:
    """The first ``limit`` items, comma-separated, and how many more there are."""
    listed = ", ".join(items[:limit])
    return listed + (f" … (+{len(items) - limit})" if len(items) > limit else "")


def verify(expected: Expectation, observed: Observation) -> list[Check]:
    """Compare the script's expectation with the observation; one :class:`Check` per rule (pure, no I/O).

    Rules: every expected recipient got the issue exactly once on their platform; the people who left got nothing of
    it; nobody else got it; LINE multicast requests = ⌈LINE recipients / 500⌉; the expected number of recipients
    (attendees − leavers) = the recipients the emulators saw; delivery rows ``sent`` per channel = recipients the
    emulator saw on that channel; active endpoints per channel = the script's; the ledger's grants (and those
    attributed to the campaign) and withdrawals per source = the script's; the audit is OK; the consent export has
    one line per ledger event.
    """
    checks: list[Check] = []
    copies = {c: dict(observed.issue_copies.get(c, {})) for c in CHANNELS}

    missing = [f"{c}:{a}" for c in CHANNELS for a in sorted(expected.recipients[c]) if copies[c].get(a, 0) == 0]
    doubled = [f"{c}:{a}×{copies[c][a]}" for c in CHANNELS for a in sorted(expected.recipients[c])
               if copies[c].get(a, 0) > 1]
    got_once = sum(1 for c in CHANNELS for a in expected.recipients[c] if copies[c].get(a, 0) == 1)
    per_channel = ", ".join(f"{c} {len(expected.recipients[c])}" for c in CHANNELS)
    detail = f"{got_once}/{expected.recipient_count} ({per_channel})"
    if missing:
        detail += f"; missing: {_sample(missing)}"
    if doubled:
        detail += f"; more than once: {_sample(doubled)}"
    checks.append(Check(not missing and not doubled, "購読中の全員に1通ずつ届いた / each active subscriber got the "
                        "issue exactly once", detail))

    leaked = [f"{c}:{a}" for c in CHANNELS for a in sorted(expected.excluded[c]) if copies[c].get(a, 0) > 0]
    left = sum(len(v) for v in expected.excluded.values())
    checks.append(Check(not leaked, f"解除・ブロックした{left}人には届いていない / nothing reached the {left} who left",
                        f"leaked to: {_sample(leaked)}" if leaked else f"0 copies to {left} people"))

    strangers = [f"{c}:{a}" for c in CHANNELS for a, n in sorted(copies[c].items())
                 if n > 0 and a not in expected.recipients[c] and a not in expected.excluded[c]]
    checks.append(Check(not strangers, "ほかの宛先には届いていない / no copy went anywhere else",
                        f"unexpected: {_sample(strangers)}" if strangers else "none"))

    line_recipients = len(expected.recipients["line"])
    want_requests = math.ceil(line_recipients / LINE_MULTICAST_MAX)
    checks.append(Check(observed.line_multicast_requests == want_requests,
                        "LINE multicast の回数 = ⌈LINE宛先/500⌉ / multicast requests",
                        f"{observed.line_multicast_requests} sent, expected ⌈{line_recipients}/500⌉ = {want_requests}"))

    seen = {c: sorted(a for a, n in copies[c].items() if n > 0) for c in CHANNELS}
    seen_total = sum(len(v) for v in seen.values())
    left_count = sum(len(v) for v in expected.excluded.values())
    checks.append(Check(seen_total == expected.recipient_count,
                        f"想定人数 (参加者−{left_count}) = エミュレーターが見た宛先 / expected = recipients seen",
                        f"{expected.attendees}−{left_count} = {expected.recipient_count} expected, "
                        f"{seen_total} seen"))

    sent_vs_seen = [f"{c} sent {observed.sent.get(c, 0)} ≠ seen {len(seen[c])}" for c in CHANNELS
                    if observed.sent.get(c, 0) != len(seen[c])]
    checks.append(Check(not sent_vs_seen, "配信記録の送信済み = エミュレーターの受信 / deliveries sent = received",
                        "; ".join(sent_vs_seen) if sent_vs_seen else
                        ", ".join(f"{c} {observed.sent.get(c, 0)}" for c in CHANNELS)))

    active_diff = [f"{c} {observed.active.get(c, 0)} ≠ {len(expected.recipients[c])}" for c in CHANNELS
                   if observed.active.get(c, 0) != len(expected.recipients[c])]
    checks.append(Check(not active_diff, "配信中の購読者数 = 台本 / active subscribers match the script",
                        "; ".join(active_diff) if active_diff else
                        ", ".join(f"{c} {observed.active.get(c, 0)}" for c in CHANNELS)))

    grants = sum(n for (action, _source), n in observed.consent_counts.items() if action == "grant")
    ledger_diff: list[str] = []
    if grants != expected.grants:
        ledger_diff.append(f"grant {grants} ≠ {expected.grants}")
    if observed.campaign_grants != expected.campaign_grants:
        ledger_diff.append(f"via campaign {observed.campaign_grants} ≠ {expected.campaign_grants}")
    for source, want in sorted(expected.withdrawals.items()):
        got = observed.consent_counts.get(("withdraw", source), 0)
        if got != want:
            ledger_diff.append(f"withdraw/{source} {got} ≠ {want}")
    other_withdrawals = sum(n for (action, source), n in observed.consent_counts.items()
                            if action == "withdraw" and source not in expected.withdrawals)
    if other_withdrawals:
        ledger_diff.append(f"{other_withdrawals} unexpected withdrawals")
    withdrawn = ", ".join(f"withdraw/{s} {n}" for s, n in sorted(expected.withdrawals.items()))
    checks.append(Check(not ledger_diff, "同意の記録 = 台本 / consent ledger matches the script",
                        "; ".join(ledger_diff) if ledger_diff else
                        f"grant {grants} (campaign {observed.campaign_grants}), {withdrawn}"))

    checks.append(Check(observed.audit_ok, "監査 (otayori audit) / audit OK", observed.audit_summary))

    checks.append(Check(observed.export_lines == observed.ledger_events,
                        "同意エクスポート = 台帳の件数 / consent export: one line per ledger event",
                        f"{observed.export_lines} lines, {observed.ledger_events} events"))
    return checks


# ---- reading what the emulators received -------------------------------------------------------------------------

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


# ---- driving the simulated people ---------------------------------------------------------------------------------

class RehearsalError(Exception):
    """A step of the rehearsal did not get the answer it waited for (a reply, a processed block)."""


@dataclass(frozen=True)
class Replies:
    """The exact texts the bots answer with (from :mod:`core.texts`), to recognise each reply."""

    help: str
    subscribed: str
    withdrawn: str

    @classmethod
    def for_sender(cls, sender: str) -> Replies:
        """The replies of a bot whose settings name ``sender``."""
        return cls(texts.text("help"), texts.text("subscribed", sender=sender), texts.text("withdrawn"))


def _is_terms(text: str) -> bool:
    return "プライバシーポリシー" in text and "同意" in text


async def _telegram_reply(tg: TelegramEmulator, person: Attendee, count: int, what: str,
                          accept: Callable[[SentMessage], bool]) -> SentMessage:
    """Wait for the ``count``-th message to ``person`` and check it with ``accept(message) -> bool``."""
    chat_id = int(person.address)
    try:
        messages = await tg.wait_for_messages(chat_id, count, timeout=STEP_TIMEOUT)
    except TimeoutError as exc:
        raise RehearsalError(f"{person.label}: no {what} ({str(exc)[:300]})") from None
    message = messages[count - 1]
    if not accept(message):
        raise RehearsalError(f"{person.label}: expected {what}, got {(message.text or '')[:80]!r}")
    return message


async def _line_reply(line: LineEmulator, person: Attendee, count: int, what: str,
                      accept: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Wait for the ``count``-th message to ``person`` on LINE and check it with ``accept(message) -> bool``."""
    try:
        messages = await line.wait_for_messages(person.address, count, timeout=STEP_TIMEOUT)
    except TimeoutError as exc:
        raise RehearsalError(f"{person.label}: no {what} ({str(exc)[:300]})") from None
    message = messages[count - 1]
    if not accept(message):
        raise RehearsalError(f"{person.label}: expected {what}, got {str(message.get('text'))[:80]!r}")
    return message


async def _line_event(person: Attendee, sending: Awaitable[tuple[int, dict[str, Any]]]) -> None:
    """Await a LINE emulator injection; our webhook must have answered 200."""
    status, _event = await sending
    if status != 200:
        raise RehearsalError(f"{person.label}: our webhook answered {status}")


async def attend_on_telegram(stack: Stack, person: Attendee, replies: Replies) -> None:
    """(question -> help), subscribe text -> terms with a button, button or 同意 -> subscribed."""
    tg = stack.telegram
    chat_id = int(person.address)
    count = 0
    if person.question:
        tg.send_text(chat_id, person.question)
        count += 1
        await _telegram_reply(tg, person, count, "help", lambda m: m.text == replies.help)
    tg.send_text(chat_id, person.subscribe_text)
    count += 1
    terms = await _telegram_reply(tg, person, count, "terms with a consent button",
                                  lambda m: _is_terms(m.text or "") and bool(m.buttons))
    if person.consent_text is None:
        update_id = tg.press_button(chat_id, terms.message_id, terms.buttons[0]["callback_data"])
        if update_id is not None:
            try:
                await tg.wait_for_callback_answer(update_id, timeout=STEP_TIMEOUT)
            except TimeoutError:
                raise RehearsalError(f"{person.label}: the consent button was never answered") from None
    else:
        tg.send_text(chat_id, person.consent_text)
    count += 1
    await _telegram_reply(tg, person, count, "the subscription confirmation", lambda m: m.text == replies.subscribed)


async def attend_on_line(stack: Stack, person: Attendee, replies: Replies) -> None:
    """follow -> greeting with the terms, (question -> help), subscribe text -> terms, postback or 同意 -> subscribed."""
    line = stack.line
    user = person.address
    await _line_event(person, line.follow(user))
    count = 1
    await _line_reply(line, person, count, "the greeting with the terms", lambda m: _is_terms(m.get("text", "")))
    if person.question:
        await _line_event(person, line.send_text(user, person.question))
        count += 1
        await _line_reply(line, person, count, "help", lambda m: m.get("text") == replies.help)
    await _line_event(person, line.send_text(user, person.subscribe_text))
    count += 1
    terms = await _line_reply(line, person, count, "terms with a quick reply",
                              lambda m: _is_terms(m.get("text", "")) and bool(m.get("quickReply")))
    if person.consent_text is None:
        await _line_event(person, line.postback(user, terms["quickReply"]["items"][0]["action"]["data"]))
    else:
        await _line_event(person, line.send_text(user, person.consent_text))
    count += 1
    await _line_reply(line, person, count, "the subscription confirmation",
                      lambda m: m.get("text") == replies.subscribed)


async def _endpoint_state(db: Database, channel: str, address: str) -> str | None:
    async with db.read() as session:
        row = (await session.exec(select(Endpoint).where(Endpoint.channel == channel,
                                                          Endpoint.address == address))).first()
        return row.state if row else None


async def after_subscribing(stack: Stack, person: Attendee, replies: Replies) -> None:
    """The second act: withdraw by typing, block the account (LINE unfollow), or ask how to withdraw (and stay)."""
    if person.leaves is None and not person.curious:
        return
    if person.channel == "telegram":
        tg = stack.telegram
        before = len(tg.messages_to(int(person.address)))
        if person.curious:
            tg.send_text(int(person.address), CURIOUS_QUESTION)
            await _telegram_reply(tg, person, before + 1, "help", lambda m: m.text == replies.help)
        elif person.leaves == "withdraw":
            tg.send_text(int(person.address), person.leave_text or "解除")
            await _telegram_reply(tg, person, before + 1, "the withdrawal reply", lambda m: m.text == replies.withdrawn)
        else:
            tg.block(int(person.address))
            await _until_state(stack, person, "unreachable")
        return
    line = stack.line
    before = len(line.messages_to(person.address))
    if person.curious:
        await _line_event(person, line.send_text(person.address, CURIOUS_QUESTION))
        await _line_reply(line, person, before + 1, "help", lambda m: m.get("text") == replies.help)
    elif person.leaves == "withdraw":
        await _line_event(person, line.send_text(person.address, person.leave_text or "解除"))
        await _line_reply(line, person, before + 1, "the withdrawal reply",
                          lambda m: m.get("text") == replies.withdrawn)
    else:
        await _line_event(person, line.unfollow(person.address))
        await _until_state(stack, person, "unreachable")


async def _until_state(stack: Stack, person: Attendee, state: str) -> None:
    """Wait (bounded by :data:`STEP_TIMEOUT`) until the block was processed: it has no reply to wait for."""
    for _ in range(int(STEP_TIMEOUT / 0.05)):
        if await _endpoint_state(stack.runtime.db, person.channel, person.address) == state:
            return
        await asyncio.sleep(0.05)
    raise RehearsalError(f"{person.label}: the block was not processed within {STEP_TIMEOUT:.0f} s")


async def _in_groups(plan: list[Attendee], act: Callable[[Attendee], Awaitable[None]]) -> list[BaseException]:
    """Run ``act(person)`` for everyone, at most :data:`GROUP_SIZE` at a time; return the failures."""
    gate = asyncio.Semaphore(GROUP_SIZE)

    async def one(person: Attendee) -> None:
        async with gate:
            await asyncio.sleep(person.arrival)
            await act(person)

    results = await asyncio.gather(*(one(p) for p in plan), return_exceptions=True)
    return [r for r in results if isinstance(r, BaseException)]


# ---- the rehearsal ------------------------------------------------------------------------------------------------

@dataclass
class Rehearsal:
    """Everything the report needs, filled in as the rehearsal goes. ``failure`` is set when a step failed."""

    settings: Settings
    plan: list[Attendee]
    draft: IssueDraft
    timings: dict[str, float] = field(default_factory=dict)
    result: BroadcastResult | None = None
    endpoints: dict[tuple[str, str], int] = field(default_factory=dict)
    consents: dict[tuple[str, str], int] = field(default_factory=dict)
    campaign_grants: int = 0
    ledger_events: int = 0
    audit_report: AuditReport | None = None
    export_lines: int = 0
    emulator_messages: dict[str, dict[str, int]] = field(default_factory=dict)
    observation: Observation | None = None
    failure: str | None = None


async def rehearse(rehearsal: Rehearsal) -> None:
    """Run the stack, act the plan, broadcast, and observe (fills ``rehearsal``; raises :class:`RehearsalError`)."""
    plan = rehearsal.plan
    async with running_stack(rehearsal.settings) as stack:
        db = stack.runtime.db
        await add_campaign(db, CAMPAIGN_CODE, CAMPAIGN_LABEL, CAMPAIGN_DATE)
        replies = Replies.for_sender(stack.settings.sender_name or "")
        for person in plan:  # registered in plan order, so ids never depend on timing
            family, _, given = person.name.partition(" ")
            if person.channel == "telegram":
                stack.telegram.add_user(int(person.address), first_name=given, last_name=family)
            else:
                await stack.line.add_user(person.address, display_name=person.name)

        started = time.monotonic()

        async def arrive(person: Attendee) -> None:
            if person.channel == "telegram":
                await attend_on_telegram(stack, person, replies)
            else:
                await attend_on_line(stack, person, replies)

        failures = await _in_groups(plan, arrive)
        if failures:
            raise RehearsalError("; ".join(str(f) for f in failures[:3]))
        rehearsal.timings["subscribe"] = time.monotonic() - started

        started = time.monotonic()
        second_act = [p for p in plan if p.leaves is not None or p.curious]
        failures = await _in_groups(second_act, lambda p: after_subscribing(stack, p, replies))
        if failures:
            raise RehearsalError("; ".join(str(f) for f in failures[:3]))
        rehearsal.timings["leave"] = time.monotonic() - started

        started = time.monotonic()
        rehearsal.result = await broadcast_with(stack.runtime, rehearsal.draft, created_by="demo")
        rehearsal.timings["broadcast"] = time.monotonic() - started
        await observe(stack, rehearsal)


async def observe(stack: Stack, rehearsal: Rehearsal) -> None:
    """Read the emulators' records, the database's counts, the audit and the consent export into ``rehearsal``."""
    db = stack.runtime.db
    title = rehearsal.draft.title
    async with db.read() as session:
        rows = await session.exec(  # type: ignore[call-overload]
            select(Endpoint.channel, Endpoint.state, func.count()).group_by(Endpoint.channel, Endpoint.state))
        rehearsal.endpoints = {(c, s): int(n) for c, s, n in rows.all()}
        rows = await session.exec(  # type: ignore[call-overload]
            select(ConsentEvent.action, ConsentEvent.source, func.count())
            .group_by(ConsentEvent.action, ConsentEvent.source))
        rehearsal.consents = {(a, s): int(n) for a, s, n in rows.all()}
        rehearsal.campaign_grants = int((await session.exec(  # type: ignore[call-overload]
            select(func.count()).select_from(ConsentEvent)
            .where(ConsentEvent.action == "grant", ConsentEvent.campaign == CAMPAIGN_CODE))).one())
        rehearsal.ledger_events = int((await session.exec(  # type: ignore[call-overload]
            select(func.count()).select_from(ConsentEvent))).one())
    rehearsal.audit_report = await audit(db)
    buffer = io.StringIO()
    await export_consents(db, buffer, "jsonl")
    rehearsal.export_lines = buffer.getvalue().count("\n")

    tg, line = stack.telegram, stack.line
    copies = {"telegram": telegram_issue_copies(tg, title), "line": line_issue_copies(line, title)}
    multicasts = line_multicast_requests(line)
    by_via = Counter(d.via for d in line.delivered for _m in d.messages)
    rehearsal.emulator_messages = {
        "telegram": {"total": len(tg.sent), "issue": sum(copies["telegram"].values()),
                     "replies": len(tg.sent) - sum(copies["telegram"].values()), "requests": 0},
        "line": {"total": sum(by_via.values()), "issue": sum(copies["line"].values()),
                 "replies": by_via.get("reply", 0) + by_via.get("push", 0), "requests": multicasts},
    }
    report = rehearsal.result.report if rehearsal.result else None
    sent = {c: (report.counts.get((c, "sent"), 0) if report else 0) for c in CHANNELS}
    audit_report = rehearsal.audit_report
    summary = (f"{audit_report.events} ledger events, {audit_report.deliveries} attempted deliveries checked: "
               f"{'OK' if audit_report.ok else 'VIOLATIONS FOUND'}")
    rehearsal.observation = Observation(
        issue_copies=copies,
        line_multicast_requests=multicasts,
        sent=sent,
        active={c: rehearsal.endpoints.get((c, "active"), 0) for c in CHANNELS},
        consent_counts=rehearsal.consents,
        campaign_grants=rehearsal.campaign_grants,
        ledger_events=rehearsal.ledger_events,
        audit_ok=audit_report.ok,
        audit_summary=summary,
        export_lines=rehearsal.export_lines,
    )


# ---- printing -----------------------------------------------------------------------------------------------------

def shown(text: str) -> str:
    """``text`` with its invisible parts made visible: ASCII space ␣, other spaces and format characters as ⟨U+XXXX⟩."""
    out = []
    for ch in text:
        if ch == " ":
            out.append("␣")
        elif unicodedata.category(ch) in ("Zs", "Cf"):
            out.append(f"⟨U+{ord(ch):04X}⟩")
        else:
            out.append(ch)
    return "".join(out)


def _actions_table(plan: list[Attendee]) -> Table:
    """What the attendees did, step by step: each distinct text (invisible characters shown) and how many typed it."""
    steps: list[tuple[str, str, str]] = []  # (step, text, channel), in script order
    for person in plan:
        if person.question:
            steps.append(("質問", shown(person.question), person.channel))
        steps.append(("登録", shown(person.subscribe_text), person.channel))
        consent = "[同意して登録] button" if person.consent_text is None else shown(person.consent_text)
        steps.append(("同意", consent, person.channel))
    for person in plan:
        if person.leaves == "withdraw":
            steps.append(("解除", shown(person.leave_text or ""), person.channel))
        elif person.leaves == "block":
            steps.append(("ブロック", "(unfollow)" if person.channel == "line" else "(block)", person.channel))
        if person.curious:
            steps.append(("質問", shown(CURIOUS_QUESTION) + " (購読後)", person.channel))
    counts = Counter(steps)
    step_order = ("質問", "登録", "同意", "解除", "ブロック")
    rows: dict[tuple[str, str], dict[str, int]] = {}
    for (step, text, channel), count in counts.items():
        rows.setdefault((step, text), {})[channel] = count
    ordered = sorted(rows.items(), key=lambda item: (step_order.index(item[0][0]), -sum(item[1].values()), item[0][1]))
    table = Table()
    table.add_column("step")
    table.add_column("入力 / typed", overflow="fold")
    table.add_column("Telegram", justify="right")
    table.add_column("LINE", justify="right")
    previous = None
    for (step, text), per_channel in ordered:
        table.add_row(step if step != previous else "", Text(text),
                      str(per_channel.get("telegram", "")), str(per_channel.get("line", "")))
        previous = step
    return table


def _say(console: Console, line: str) -> None:
    """Print ``line`` as is: no markup (attendees type brackets), no highlighting, never wrapped."""
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def _heading(console: Console, title: str) -> None:
    console.print(Text(title, style="bold"), soft_wrap=True)


def print_report(console: Console, rehearsal: Rehearsal) -> None:
    """The report: subscribers, consent events, deliveries, what the emulators received, the audit."""
    states = ("active", "unsubscribed", "unreachable", "pending")
    _heading(console, "購読者 / subscribers per channel")
    table = Table()
    table.add_column("channel")
    for state, label in zip(states, ("配信中\nactive", "停止\nunsubscribed", "不達\nunreachable", "確認待ち\npending")):
        table.add_column(label, justify="right")
    for channel in CHANNELS:
        table.add_row(channel, *(str(rehearsal.endpoints.get((channel, s), 0)) for s in states))
    console.print(table)

    _heading(console, "同意の記録 / consent events by action and source")
    table = Table()
    table.add_column("action")
    table.add_column("source")
    table.add_column("件数\nevents", justify="right")
    for (action, source), count in sorted(rehearsal.consents.items()):
        table.add_row(action, source, str(count))
    console.print(table)
    grants = sum(n for (a, _s), n in rehearsal.consents.items() if a == "grant")
    _say(console, f"  grant のうちキャンペーン {CAMPAIGN_CODE} 経由 / via the campaign: "
                  f"{rehearsal.campaign_grants} / {grants}")

    _heading(console, "配信 / deliveries by status")
    table = Table()
    table.add_column("channel")
    statuses = sorted({s for (_c, s) in (rehearsal.result.report.counts if rehearsal.result else {})} | {"sent"})
    for status in statuses:
        table.add_column(status, justify="right")
    for channel in CHANNELS:
        counts = rehearsal.result.report.counts if rehearsal.result else {}
        table.add_row(channel, *(str(counts.get((channel, s), 0)) for s in statuses))
    console.print(table)
    if rehearsal.result is not None:
        for (channel, reason), count in sorted(rehearsal.result.report.failure_reasons.items()):
            _say(console, f"  {channel}: {count} × {reason}")

    _heading(console, "エミュレーターが受け取ったメッセージ / what the emulators received")
    table = Table()
    table.add_column("platform")
    table.add_column("全メッセージ\nall messages", justify="right")
    table.add_column("返信\nbot replies", justify="right")
    table.add_column("号の配信\nissue copies", justify="right")
    table.add_column("multicast\nrequests", justify="right")
    for channel in CHANNELS:
        seen = rehearsal.emulator_messages.get(channel, {})
        table.add_row(channel, str(seen.get("total", 0)), str(seen.get("replies", 0)), str(seen.get("issue", 0)),
                      str(seen.get("requests", 0)) if channel == "line" else "—")
    console.print(table)
    if rehearsal.audit_report is not None:
        audit_report = rehearsal.audit_report
        _say(console, f"監査 / otayori audit: {audit_report.events} ledger events, {audit_report.deliveries} attempted "
                      f"deliveries checked: {'OK' if audit_report.ok else 'VIOLATIONS FOUND'}")
        for problem in audit_report.chain_problems:
            _say(console, f"  ledger event {problem.event_id}: {problem.problem}")
        for v in audit_report.delivery_violations:
            _say(console, f"  delivery {v.delivery_id} ({v.channel}): latest consent at first attempt was "
                          f"{v.latest_action or 'none'}")


def print_checks(console: Console, checks: list[Check]) -> None:
    """One line per check: ✓ or ✗, the label, the detail."""
    console.print()
    _say(console, "照合 / checks (against what the emulators received):")
    for check in checks:
        mark = Text("✓", style="bold green") if check.ok else Text("✗", style="bold red")
        console.print(Text.assemble("  ", mark, f" {check.label}: {check.detail}"), soft_wrap=True)


# ---- entry point --------------------------------------------------------------------------------------------------

@contextmanager
def _quiet_logs() -> Iterator[None]:
    """Raise the noisy libraries' loggers to WARNING for the duration (the report is the output)."""
    previous = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in previous.items():
            logging.getLogger(name).setLevel(level)


class DemoDirectoryError(Exception):
    """The demo directory holds files the demo did not create, so it is not wiped."""


def fresh_directory(directory: Path) -> None:
    """Wipe and recreate ``directory`` — only when it is missing, empty, or holds nothing but demo files.

    Raises :class:`DemoDirectoryError` otherwise (a mistyped ``--directory`` must never delete someone's files).
    """
    if directory.exists():
        if not directory.is_dir():
            raise DemoDirectoryError(f"{directory} exists and is not a directory")
        names = {p.name for p in directory.iterdir()}
        if names and _MARKER not in names and not names <= _DEMO_FILES:
            raise DemoDirectoryError(f"{directory} holds files the demo did not make; choose another --directory")
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / _MARKER).write_text("created by `otayori demo`; wiped on every run\n", encoding="utf-8")


def run_demo(
    directory: Path, attendees: int = DEFAULT_ATTENDEES, *, seed: int = DEFAULT_SEED,
    issue_file: Path | None = None, console: Console | None = None,
) -> int:
    """Rehearse a seminar in ``directory`` (wiped) with ``attendees`` people and print the report and the checks.

    Synchronous: migrates the fresh SQLite database, then ``asyncio.run`` the rehearsal (bounded by
    :data:`DEMO_TIMEOUT` seconds, more for big rooms). ``seed`` fixes every choice of the script; ``issue_file``
    defaults to :data:`SAMPLE_ISSUE`; ``console`` defaults to a rich Console on stdout. Returns the exit code: 0 when
    every check agrees, 1 on any disagreement or failed step, 2 when it cannot start (too few attendees, a directory
    that is not the demo's, an unreadable issue file).
    """
    out = console or Console(highlight=False)
    clock = time.monotonic()
    try:
        plan = plan_rehearsal(attendees, seed)
        draft = parse_issue_markdown((issue_file or SAMPLE_ISSUE).read_text(encoding="utf-8"))
        fresh_directory(directory)
    except (ValueError, OSError, IssueFileError, DemoDirectoryError) as exc:
        _say(out, f"error: {exc}")
        return 2
    settings = sandbox_settings(directory)
    tg_count = sum(1 for p in plan if p.channel == "telegram")
    _say(out, f"otayori demo — セミナーのリハーサル / seminar rehearsal: {attendees} attendees "
              f"(Telegram {tg_count}, LINE {attendees - tg_count}), seed {seed}")
    _say(out, f"作業ディレクトリ / directory: {directory} (fresh SQLite, local emulators on 127.0.0.1, .env ignored)")
    _say(out, f"キャンペーン / campaign: {CAMPAIGN_CODE} ({CAMPAIGN_LABEL})")
    out.print()
    _heading(out, "台本 / the script: what attendees will do")
    _say(out, "  質問 question, 登録 subscribe, 同意 consent, 解除 withdraw, ブロック block; (購読後) after subscribing; ␣ = space")
    out.print(_actions_table(plan))
    _say(out, "リハーサル中 / rehearsing …")
    rehearsal = Rehearsal(settings=settings, plan=plan, draft=draft)
    budget = DEMO_TIMEOUT + TIMEOUT_PER_EXTRA_ATTENDEE * max(0, attendees - DEFAULT_ATTENDEES)
    with _quiet_logs():
        upgrade(settings.database_url)  # before the event loop: Alembic's env.py calls asyncio.run
        try:
            asyncio.run(asyncio.wait_for(rehearse(rehearsal), timeout=budget))
        except RehearsalError as exc:
            rehearsal.failure = str(exc)
        except TimeoutError:
            rehearsal.failure = f"the rehearsal did not finish within {budget:.0f} s"

    timing = ", ".join(f"{k} {v:.1f} s" for k, v in rehearsal.timings.items())
    if timing:
        _say(out, f"  所要時間 / steps: {timing}")
    ok = False
    if rehearsal.failure is not None or rehearsal.observation is None:
        out.print(Text.assemble(Text("✗", style="bold red"),
                                f" リハーサル失敗 / a step failed: {rehearsal.failure or 'nothing observed'}"),
                  soft_wrap=True)
    else:
        assert rehearsal.result is not None
        enqueued = ", ".join(f"{c} {n}" for c, n in rehearsal.result.enqueued.items())
        _say(out, f"配信 / broadcast: issue {rehearsal.result.issue_id}「{draft.title}」 → {enqueued}")
        for notice in rehearsal.result.summary.notices:
            _say(out, f"  {notice.channel}: stopped ({notice.reason}); {notice.deferred} deferred")
        out.print()
        print_report(out, rehearsal)
        checks = verify(expectation_for(plan, draft.title), rehearsal.observation)
        print_checks(out, checks)
        ok = all(c.ok for c in checks)

    out.print()
    _say(out, f"データベース / database: {settings.database_url}")
    _say(out, f"  見るには / inspect: OTAYORI_DATABASE_URL={settings.database_url} otayori consents export")
    _say(out, f"                      OTAYORI_DATABASE_URL={settings.database_url} otayori audit")
    verdict = "すべて一致 / all checks agree" if ok else "不一致あり / disagreement found"
    _say(out, f"{verdict} — {time.monotonic() - clock:.1f} s")
    return 0 if ok else 1
