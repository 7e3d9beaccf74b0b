"""Who does what in the seminar rehearsal: the attendees, what they type, and who adds an email address.

Pure: no I/O. :func:`plan_rehearsal` turns a number of attendees and a seed into a list of :class:`Attendee`; every
choice comes from one :class:`random.Random`, so the same arguments always give the same script.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

Channel = Literal["telegram", "line"]
#: The chat platforms attendees subscribe on (email is added on top, never instead).
CHANNELS: tuple[Channel, ...] = ("telegram", "line")
#: Every endpoint channel the report and the checks count.
ENDPOINT_CHANNELS: tuple[str, ...] = ("telegram", "line", "email")

CAMPAIGN_CODE = "seminar-2026-12"
CAMPAIGN_LABEL = "12月 東京セミナー"
CAMPAIGN_DATE = "2026-12-05"
#: The landing page the seminar's QR code points at (DESIGN.md "Outside contract" -> HTTP).
JOIN_PATH = f"/join/{CAMPAIGN_CODE}"
#: The issue the author broadcasts (first ``# heading`` = title). Lives in the source tree (``make demo`` installs it
#: editable); ``run_demo(issue_file=...)`` takes another.
SAMPLE_ISSUE = Path(__file__).resolve().parent.parent.parent / "examples" / "2026-12-newsletter.md"
#: The seminar's date; any fixed number would do: it only makes the rehearsal the same on every run.
DEFAULT_SEED = 20261205
DEFAULT_ATTENDEES = 30
#: Attendees needed so that both platforms have someone who leaves and someone who stays.
MIN_ATTENDEES = 4
#: Email subscribers who confirm, per :data:`DEFAULT_ATTENDEES` attendees (scaled for other rooms).
CONFIRMING_PER_30 = 4
#: At most this many confirm through the web form (the rest add their address from the chat).
MAX_WEB_FORM = 2

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

# Family and given names with the romanisation people use in their mail addresses.
_FAMILY: tuple[tuple[str, str], ...] = (
    ("佐藤", "sato"), ("鈴木", "suzuki"), ("高橋", "takahashi"), ("田中", "tanaka"), ("伊藤", "ito"),
    ("渡辺", "watanabe"), ("山本", "yamamoto"), ("中村", "nakamura"), ("小林", "kobayashi"), ("加藤", "kato"),
    ("吉田", "yoshida"), ("山田", "yamada"), ("佐々木", "sasaki"), ("山口", "yamaguchi"), ("松本", "matsumoto"),
    ("井上", "inoue"), ("木村", "kimura"), ("林", "hayashi"), ("清水", "shimizu"), ("森", "mori"),
)
_GIVEN: tuple[tuple[str, str], ...] = (
    ("花子", "hanako"), ("太郎", "taro"), ("陽菜", "hina"), ("蓮", "ren"), ("結衣", "yui"), ("悠真", "yuma"),
    ("美咲", "misaki"), ("大輝", "daiki"), ("さくら", "sakura"), ("翔太", "shota"), ("葵", "aoi"), ("健", "ken"),
    ("真央", "mao"), ("拓海", "takumi"), ("優子", "yuko"), ("誠", "makoto"), ("愛", "ai"), ("亮", "ryo"),
    ("千尋", "chihiro"), ("航", "wataru"),
)
#: Only documentation domains (RFC 2606 / JPRS's example.jp): nothing could ever be delivered anywhere real.
EMAIL_DOMAINS = ("example.jp", "example.com")

Leave = Literal["withdraw", "block"]
EmailVia = Literal["chat", "web"]


@dataclass(frozen=True)
class EmailPlan:
    """How one attendee adds an email address (issue 3: double opt-in from the chat or the web form).

    ``via``: ``chat`` (types ``typed`` in the chat, e.g. ``メール　ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ``) or ``web`` (opens
    :data:`JOIN_PATH`, posts ``typed`` as the form's ``address``, opens the mailed link with a GET, then presses the
    page's button: a POST). ``address``: the stored form the bot must arrive at (ASCII, lower-case).
    ``confirms``: False for the one who asks and never confirms (stays ``pending``, gets no newsletter).
    ``full_width_code``: a chat confirmer types the 6-digit code in full-width digits (``１２３４５６``).
    """

    via: EmailVia
    typed: str
    address: str
    confirms: bool = True
    full_width_code: bool = False

    @property
    def how(self) -> str:
        """How the address gets confirmed, for the report: ``code``, ``code 全角``, ``GET→POST`` (the link) or
        ``never``."""
        if not self.confirms:
            return "never"
        if self.via == "web":
            return "GET→POST"
        return "code 全角" if self.full_width_code else "code"


@dataclass(frozen=True)
class Attendee:
    """One person in the rehearsal and everything they will do.

    ``address``: the endpoint address the bot will see (Telegram chat id as text, LINE userId). ``arrival``: seconds
    they wait before starting (spread over the room). ``question``: asked before subscribing, or None.
    ``subscribe_text``: what they type to subscribe; ``with_campaign``: whether it carries the campaign code.
    ``consent_text``: typed consent, or None for the consent button. ``leaves``: None, ``withdraw`` (types
    ``leave_text``) or ``block``. ``curious``: asks :data:`CURIOUS_QUESTION` after subscribing (and stays).
    ``email``: how they also add an email address afterwards, or None. ``romaji``: their name as used in addresses.
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
    email: EmailPlan | None = None
    romaji: str = ""

    @property
    def label(self) -> str:
        return f"#{self.number} {self.name} ({self.channel})"

    @property
    def has_second_act(self) -> bool:
        """True when they do something after subscribing (leave, ask how to leave, add an email address)."""
        return self.leaves is not None or self.curious or self.email is not None


def full_width(text: str) -> str:
    """``text`` with printable ASCII (``!``..``~``) as full-width forms (U+FF01..U+FF5E): what an IME left in
    full-width mode types (``taro@example.jp`` -> ``ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ``). NFKC maps them back."""
    return "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in text)


def email_counts(attendees: int) -> tuple[int, int]:
    """``(confirming, pending)`` email subscribers for a room of ``attendees`` before capping by who stays.

    :data:`CONFIRMING_PER_30` per 30 attendees, rounded; at least 2 from 10 attendees on (a chat and a web-form
    confirmation), at least 1 below; and always one who asks and never confirms.
    """
    confirming = max(round(attendees * CONFIRMING_PER_30 / DEFAULT_ATTENDEES), 2 if attendees >= 10 else 1)
    return confirming, 1


def _chat_email_text(index: int, address: str) -> str:
    """The ``index``-th chat way of typing ``メール <address>`` (cycling through realistic variants)."""
    local, _, domain = address.partition("@")
    variants = (
        f"メール\u3000{full_width(address)}",               # IME in full-width mode, ideographic space
        f"メール {address}\u3000",                          # a trailing U+3000 from the IME
        f"email {local.capitalize()}@{domain.upper()}",     # English keyword; the phone capitalised the address
        f"メール {address}",
    )
    return variants[index % len(variants)]


def _email_plans(stayers: list[Attendee], confirming: int, pending: int, rng: random.Random) -> dict[int, EmailPlan]:
    """``{attendee number: EmailPlan}`` for ``confirming`` + ``pending`` people drawn from ``stayers``.

    Confirmers in order: chat (full-width address, and the only one to type the code in full-width digits), web
    form, chat (trailing U+3000), web form, then chat variants (``email`` + capitalised address, plain); the web
    form takes at most :data:`MAX_WEB_FORM`. The one who never confirms types ``メール <address>`` and stops there.
    Addresses are ``given.family@example.jp|com`` (the attendee's number appended if taken).
    """
    confirming = min(confirming, len(stayers))
    pending = min(pending, len(stayers) - confirming)
    chosen = rng.sample(stayers, confirming + pending)
    plans: dict[int, EmailPlan] = {}
    taken: set[str] = set()
    web = chat = 0
    for index, person in enumerate(chosen):
        address = f"{person.romaji}@{EMAIL_DOMAINS[index % len(EMAIL_DOMAINS)]}"
        if address in taken:
            address = address.replace("@", f"{person.number}@", 1)
        taken.add(address)
        if index >= confirming:
            plans[person.number] = EmailPlan("chat", f"メール {address}", address, confirms=False)
        elif index % 2 == 1 and web < MAX_WEB_FORM:
            web += 1
            local, _, domain = address.partition("@")
            # Typed on a phone: capitalised first letter; stored lower-case.
            plans[person.number] = EmailPlan("web", f"{local.capitalize()}@{domain}", address)
        else:
            # Only the first chat confirmer types the code in full-width digits (once is enough to show it works).
            plans[person.number] = EmailPlan("chat", _chat_email_text(chat, address), address,
                                             full_width_code=chat == 0)
            chat += 1
    return plans


def plan_rehearsal(attendees: int, seed: int = DEFAULT_SEED) -> list[Attendee]:
    """The rehearsal script: ``attendees`` people alternating Telegram / LINE (Telegram gets the odd one).

    Every choice comes from ``random.Random(seed)``: the same arguments give the same script. Subscribe texts cycle
    through :data:`TELEGRAM_SUBSCRIBE` / :data:`LINE_SUBSCRIBE` from a random offset (so a room of 15 sees every
    variant), about a quarter ask a question first, about 40 % type their consent. One Telegram attendee withdraws
    with ``解除``, one LINE attendee with ``かいじょ``+U+3000, another LINE attendee blocks the account; one who stays
    asks :data:`CURIOUS_QUESTION`. Some who stay also add an email address (:func:`email_counts`, capped by the
    number who stay; :class:`EmailPlan`). Raises ``ValueError`` for fewer than :data:`MIN_ATTENDEES`.
    """
    if attendees < MIN_ATTENDEES:
        raise ValueError(f"the rehearsal needs at least {MIN_ATTENDEES} attendees (got {attendees})")
    rng = random.Random(seed)
    channels: list[Channel] = ["telegram" if i % 2 == 0 else "line" for i in range(attendees)]
    variants = {"telegram": TELEGRAM_SUBSCRIBE, "line": LINE_SUBSCRIBE}
    offsets = {c: rng.randrange(len(variants[c])) for c in CHANNELS}
    used = {c: 0 for c in CHANNELS}
    names = [(f"{family} {given}", f"{given_r}.{family_r}")
             for family, family_r in _FAMILY for given, given_r in _GIVEN]
    rng.shuffle(names)
    people: list[Attendee] = []
    for index, channel in enumerate(channels):
        number = index + 1
        table = variants[channel]
        text, with_campaign = table[(offsets[channel] + used[channel]) % len(table)]
        used[channel] += 1
        address = str(5_100_000_000 + number) if channel == "telegram" else f"U{rng.getrandbits(128):032x}"
        name, romaji = names[index % len(names)]
        people.append(Attendee(
            number=number,
            channel=channel,
            address=address,
            name=name,
            arrival=round(rng.uniform(0.0, 0.2), 3),
            question=rng.choice(QUESTIONS) if rng.random() < 0.25 else None,
            subscribe_text=text,
            with_campaign=with_campaign,
            consent_text=rng.choice(CONSENT_TEXTS) if rng.random() < 0.4 else None,
            romaji=romaji,
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
    # Drawn last, so adding email left every earlier choice (and the chat part of the script) as it was.
    emails = _email_plans(staying, *email_counts(attendees), rng)
    planned: list[Attendee] = []
    for person in people:
        leave, leave_text = leaving.get(person.number, (None, None))
        planned.append(replace(person, leaves=leave, leave_text=leave_text, curious=person.number == curious,
                               email=emails.get(person.number)))
    return planned
