"""Chat text -> intent: the chat grammar shared by LINE and Telegram.

The grammar is DESIGN.md's "Chat grammar" table. A keyword is matched against the *whole* message after
:func:`normalise_keyword`, never against a substring: ``解除してください`` is free text, not a withdrawal. The two
keywords that take an argument (``登録 <campaign>``/``subscribe <campaign>`` and ``メール <address>``/``email
<address>``) are separated from it by any whitespace (including the ideographic space U+3000); the argument keeps its
NFKC form and its case, because campaign codes and mailbox local parts are the user's text, not ours.

Decisions this module makes (and the tests pin):

- ``登録seminar`` (no space) is :attr:`IntentKind.TEXT`: the first word is not the keyword.
- A keyword that takes no argument followed by more words (``解除 お願いします``, ``解除してください``) is ``TEXT``.
- Punctuation and symbols at the two ends of the whole message are ignored when matching a keyword (Unicode
  categories P*, So, Sk and variation selectors: ``解除。``, ``ＳＴＯＰ！``, ``🙅解除``, ``解除 🙏``, ``状態？``), never
  inside it (``解除して!`` is text), and a message that is nothing else (``!!``, ``🎉``) is no keyword. Arguments keep
  their trailing characters (the user's text). A leading ``/`` is not stripped: it makes a Telegram command.
- ``登録``/``subscribe`` accept any argument, even several words or a registered keyword (``登録 解除`` asks to
  subscribe with the unknown campaign ``解除``): showing the terms changes no state, and the use case records codes it
  does not know as campaign unknown with the raw text in the evidence.
- ``メール``/``email`` accept any argument (the caller validates the address and explains the syntax); with no
  argument the intent is ``EMAIL`` with ``argument=None``.
- Telegram slash commands (``/start``, ``/stop``, ``/status``, ``/topics``, ``/help``, each with an optional
  ``@botname``) follow the platform's convention that a command is its first word: text after ``/stop``,
  ``/status``, ``/topics`` or ``/help`` is ignored, text after ``/start`` is the deep-link payload (the campaign). Any other ``/word`` is ``TEXT``.
  Command names are ``[a-z0-9_]{1,32}`` (https://core.telegram.org/bots/features#commands).
- An empty message, or one made only of whitespace and invisible characters, is :attr:`IntentKind.HELP` (Japanese):
  there is nothing to forward to the author, and help is the grammar's answer to anything unrecognised.
- ``language`` is ``"en"`` when an English keyword matched, ``"ja"`` for Japanese keywords, ``?`` and slash commands
  (also ones we do not offer, such as an admin's ``/broadcast`` typed by a reader: a command carries no language);
  for other free text it is ``"en"`` when the text has ASCII letters and no kana or kanji, else ``"ja"``.

Pure module: standard library only, no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

Language = Literal["ja", "en"]

#: Campaign codes are the Telegram deep-link payload alphabet, 1..64 characters of ``A-Za-z0-9_-``: anything else
#: never reaches the bot through ``https://t.me/<bot>?start=<payload>`` (reference/telegram.md; Bot API
#: https://core.telegram.org/bots/features#deep-linking). LINE QR texts use the same codes so both channels agree.
CAMPAIGN_CODE_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")

# An e-mail confirmation code: six ASCII digits after NFKC (full-width ０-９ become 0-9). Written as [0-9], not \d,
# because \d also matches other scripts' digits (e.g. Arabic-Indic ٠١٢), which NFKC keeps and no code contains.
_CONFIRMATION_CODE_RE = re.compile(r"[0-9]{6}")

# Telegram command syntax: "/name" or "/name@botusername", then optional arguments after whitespace. Matched against
# the normalised (case-folded) text, so "/START" works too. Command names: [a-z0-9_]{1,32}; bot usernames: 5..32
# characters of [a-z0-9_] (we accept 1..64 so that an odd suffix is still recognised as a suffix, not as text).
_SLASH_COMMAND_RE = re.compile(r"/([a-z0-9_]{1,32})(?:@([a-z0-9_]{1,64}))?")

# Variation selectors (VS1-16 and the supplement VS17-256) are category Mn, not Cf, but like format characters they
# are invisible: an emoji keyboard or a copy-paste can leave one after ordinary text. U+034F COMBINING GRAPHEME
# JOINER is likewise invisible and meaningless in a keyword.
_INVISIBLE_NON_FORMAT = frozenset({0x034F, *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)})

# Katakana U+30A1 (ァ) .. U+30F6 (ヶ) sit exactly 0x60 above their hiragana counterparts U+3041 .. U+3096.
# The prolonged sound mark ー (U+30FC) has no hiragana form and stays, so メール -> めーる.
_KATAKANA_TO_HIRAGANA = {code: code - 0x60 for code in range(0x30A1, 0x30F7)}


class IntentKind(StrEnum):
    """What a chat message asks for (DESIGN.md "Chat grammar")."""

    SUBSCRIBE = "subscribe"
    """Show the terms and a consent button. ``argument``: the campaign code as typed (NFKC, case kept) or None."""
    CONSENT = "consent"
    """Give consent (``同意``/``agree``); the use case accepts it only within 24 h of the terms. ``argument``: None."""
    WITHDRAW = "withdraw"
    """Withdraw consent on this channel, at once. ``argument``: None."""
    WITHDRAW_ALL = "withdraw_all"
    """Withdraw on every channel of this subscriber. ``argument``: None."""
    EMAIL = "email"
    """Add the email channel (double opt-in). ``argument``: the address as typed, NFKC (＠ -> @), case kept; or None."""
    STATUS = "status"
    """Show my channels, topics and consent dates. ``argument``: None."""
    TOPICS = "topics"
    """Show the topics with a button each to choose them (none chosen = every topic). ``argument``: None."""
    HELP = "help"
    """Show help. ``argument``: None."""
    TEXT = "text"
    """Anything else: reply with help (later: acknowledge and forward to the author). ``argument``: the original
    text, unmodified."""


@dataclass(frozen=True)
class Intent:
    """The meaning of one chat message.

    ``kind``: what is asked. ``argument``: the campaign code (SUBSCRIBE), the address (EMAIL), the original text
    (TEXT), else None. ``language``: ``"ja"`` or ``"en"``, the language to reply in.
    """

    kind: IntentKind
    argument: str | None
    language: Language


# The keyword table. Keys are written as people type them and normalised below, so トウロク, ＳＴＯＰ or ヘルプ in any
# width match without listing every variant. Value: (kind, language of the keyword).
_WORDS: tuple[tuple[str, IntentKind, Language], ...] = (
    ("登録", IntentKind.SUBSCRIBE, "ja"),
    ("とうろく", IntentKind.SUBSCRIBE, "ja"),
    ("subscribe", IntentKind.SUBSCRIBE, "en"),
    ("同意", IntentKind.CONSENT, "ja"),
    ("agree", IntentKind.CONSENT, "en"),
    ("解除", IntentKind.WITHDRAW, "ja"),
    ("かいじょ", IntentKind.WITHDRAW, "ja"),
    ("配信停止", IntentKind.WITHDRAW, "ja"),
    # Everyday ways to say "unsubscribe" beyond DESIGN.md's table: a stop must never fall through to help.
    ("配信解除", IntentKind.WITHDRAW, "ja"),
    ("登録解除", IntentKind.WITHDRAW, "ja"),
    ("購読解除", IntentKind.WITHDRAW, "ja"),
    ("stop", IntentKind.WITHDRAW, "en"),
    ("unsubscribe", IntentKind.WITHDRAW, "en"),
    ("全解除", IntentKind.WITHDRAW_ALL, "ja"),
    ("メール", IntentKind.EMAIL, "ja"),
    ("email", IntentKind.EMAIL, "en"),
    ("状態", IntentKind.STATUS, "ja"),
    ("status", IntentKind.STATUS, "en"),
    ("トピック", IntentKind.TOPICS, "ja"),
    ("topics", IntentKind.TOPICS, "en"),
    ("topic", IntentKind.TOPICS, "en"),
    ("ヘルプ", IntentKind.HELP, "ja"),
    ("help", IntentKind.HELP, "en"),
    ("?", IntentKind.HELP, "ja"),
)

# Kinds whose keyword may be followed by an argument; every other keyword must be the whole message.
_TAKES_ARGUMENT = frozenset({IntentKind.SUBSCRIBE, IntentKind.EMAIL})

_SLASH_COMMANDS: dict[str, IntentKind] = {
    "start": IntentKind.SUBSCRIBE,
    "stop": IntentKind.WITHDRAW,
    "status": IntentKind.STATUS,
    "topics": IntentKind.TOPICS,
    "help": IntentKind.HELP,
}


def _drop_invisible(text: str) -> str:
    """Remove format characters (Unicode category Cf) and variation selectors."""
    return "".join(
        ch for ch in text if unicodedata.category(ch) != "Cf" and ord(ch) not in _INVISIBLE_NON_FORMAT
    )


def _nfkc_words(text: str) -> str:
    """Invisible characters dropped, NFKC, ends trimmed and inner whitespace runs collapsed to one space.

    This is the form arguments keep (case and kana untouched).
    """
    # Drop first, so that NFKC can compose across a removed character (ｶ + ZWSP + ﾞ -> ガ); str.split() with no
    # argument splits on every Unicode whitespace character (U+3000, U+00A0, tabs, newlines, U+2028...).
    return " ".join(unicodedata.normalize("NFKC", _drop_invisible(text)).split())


def _fold(text: str) -> str:
    """Case-fold and map katakana to hiragana (the last two normalisation steps)."""
    return text.casefold().translate(_KATAKANA_TO_HIRAGANA)


def normalise_keyword(text: str) -> str:
    """Return ``text`` in the form keywords are compared in (DESIGN.md "Chat grammar").

    Steps, in order:

    1. Drop invisible characters: every format character (Unicode category Cf: ZERO WIDTH SPACE U+200B, ZWNJ U+200C,
       ZWJ U+200D, LRM/RLM U+200E/U+200F, WORD JOINER U+2060, BOM U+FEFF, bidi embeddings...), the variation
       selectors U+FE00..U+FE0F and U+E0100..U+E01EF, and COMBINING GRAPHEME JOINER U+034F. They are invisible, so
       people cannot see (or remove) them, yet copy-paste, IMEs and emoji keyboards insert them: ``解\\u200b除`` must
       still be ``解除``. Done before NFKC so that NFKC composes across a removed character.
    2. NFKC: full-width Latin and digits become ASCII (ＳＴＯＰ -> STOP, ０ -> 0), half-width katakana becomes
       full-width with its voicing mark composed (ｶｲｼﾞｮ -> カイジョ), ＠ -> @, ？ -> ?, and U+3000 IDEOGRAPHIC SPACE
       becomes an ordinary space: Japanese keyboards produce either width, and they must mean the same.
    3. Trim both ends and collapse every inner run of whitespace (any Unicode whitespace: spaces, U+3000, tabs,
       newlines) to one ASCII space: chat apps and IMEs add trailing spaces and line breaks invisibly.
    4. Case-fold (``str.casefold``, Unicode full case folding): ``Stop``, ``STOP`` and ``stop`` are one keyword.
    5. Katakana -> hiragana (U+30A1..U+30F6 minus 0x60; the prolonged sound mark ー U+30FC is kept): people write
       the same word in either script (トウロク/とうろく), so both meet one table entry.

    ``text``: any string. Returns the normalised string (``""`` for whitespace/invisible-only input). Never raises.
    """
    return _fold(_nfkc_words(text))


_JAPANESE_RANGES = (
    (0x3005, 0x3007),  # 々 〆 〇
    (0x3040, 0x30FF),  # hiragana, katakana
    (0x31F0, 0x31FF),  # katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9F),  # half-width katakana (NFKC maps them, kept for raw input)
    (0x20000, 0x3FFFF),  # CJK extensions B.. (planes 2 and 3)
)


def _has_japanese(text: str) -> bool:
    """True when ``text`` contains a kana or kanji character."""
    return any(lo <= ord(ch) <= hi for ch in text for lo, hi in _JAPANESE_RANGES)


def _free_text_language(nfkc_text: str) -> Language:
    """``"en"`` when the text has ASCII letters and no kana/kanji, else ``"ja"`` (the service's default)."""
    if _has_japanese(nfkc_text):
        return "ja"
    return "en" if any("a" <= ch <= "z" or "A" <= ch <= "Z" for ch in nfkc_text) else "ja"


def parse(text: str, *, bot_username: str | None = None) -> Intent:
    """Map one chat message to an :class:`Intent` (DESIGN.md "Chat grammar").

    ``text``: the message text as received. ``bot_username``: this bot's Telegram username (without ``@``); when
    given, a slash command addressed to another bot (``/stop@other_bot``) is ``TEXT``. When None, any ``@suffix`` is
    accepted. Conversation states (an admin composing a draft, an email awaiting its code) override this table and
    are the caller's business; see :func:`is_confirmation_code`.

    Runs in time linear in ``len(text)``; never raises.
    """
    words = _nfkc_words(text)
    if not words:
        return Intent(IntentKind.HELP, None, "ja")

    head, _, rest = words.partition(" ")
    for candidate_head, candidate_rest in ((head, rest), *_edges_ignored(words)):
        key = _fold(candidate_head)
        if key.startswith("/"):
            intent = _parse_slash_command(key, candidate_rest, bot_username)
        else:
            intent = _parse_keyword(key, candidate_rest)
        if intent is not None:
            return intent
    # A Telegram command we do not offer (/broadcast from a reader, /settings...) carries no language of its own:
    # the reply is in the service's language, as for the commands we offer.
    language: Language = "ja" if _SLASH_COMMAND_RE.fullmatch(_fold(head)) else _free_text_language(words)
    return Intent(IntentKind.TEXT, text, language)


def _parse_keyword(key: str, rest: str) -> Intent | None:
    """The intent of keyword ``key`` (folded) followed by ``rest`` (``""``: nothing), or None when it is none."""
    for word, kind, language in _WORDS:
        # The table is tiny (24 rows): normalising a keyword per call is cheaper than a module-level cache and keeps
        # import free of work.
        if key != normalise_keyword(word):
            continue
        if not rest:
            return Intent(kind, None, language)
        if kind in _TAKES_ARGUMENT:
            return Intent(kind, rest, language)
        return None  # a keyword that takes no argument, followed by more text: free text
    return None


def _parse_slash_command(key: str, rest: str, bot_username: str | None) -> Intent | None:
    """Telegram ``/command[@bot] [args]`` (``key`` folded); None when it is not one of ours."""
    match = _SLASH_COMMAND_RE.fullmatch(key)
    kind = _SLASH_COMMANDS.get(match.group(1)) if match else None
    addressed_elsewhere = (
        match is not None
        and match.group(2) is not None
        and bot_username is not None
        and match.group(2) != _fold(bot_username.removeprefix("@"))
    )
    if kind is None or addressed_elsewhere:
        return None
    argument = (rest or None) if kind is IntentKind.SUBSCRIBE else None
    return Intent(kind, argument, "ja")


def _is_edge_decoration(ch: str) -> bool:
    """True for what may surround a command without changing it: whitespace, punctuation (Unicode categories P*),
    symbols (So: emoji, ♪, ☆; Sk: emoji skin-tone modifiers, ＾) and the invisible variation selectors."""
    category = unicodedata.category(ch)
    return ch.isspace() or category[0] == "P" or category in ("So", "Sk") or ord(ch) in _INVISIBLE_NON_FORMAT


def _edges_ignored(text: str) -> list[tuple[str, str]]:
    """``[(head, rest)]`` of ``text`` read with the decoration at its two ends ignored (:func:`_is_edge_decoration`),
    or ``[]`` when there is none or nothing else is left (``!!``, ``🎉`` are no command).

    People end a command as they end a sentence (``解除。``, ``ＳＴＯＰ！``, ``解除🙏``) or start it with an emoji
    (``🙅解除``); only the ends of the *whole* message are ignored, never a character inside it, so ``解除して!`` stays
    text. ``head`` is the first word without the leading decoration; ``rest`` keeps its trailing characters (an
    argument is the user's text: ``返信 3 ありがとう!``), and is ``""`` when the message is one word once its end is
    ignored (``解除 🙏``). A leading ``/`` is kept: it makes a Telegram command (``/登録`` is not ``登録``).
    """
    start, end = 0, len(text)
    while start < end and text[start] != "/" and _is_edge_decoration(text[start]):
        start += 1
    while end > start and _is_edge_decoration(text[end - 1]):
        end -= 1
    if end == start or (start, end) == (0, len(text)):
        return []
    head, separator, _ = _split_head(text[start:end])
    if not separator:
        return [(head, "")]
    return [(head, _split_head(text[start:])[2])]


def is_valid_campaign_code(code: str) -> bool:
    """True when ``code`` is 1..64 characters of ``A-Za-z0-9_-`` (:data:`CAMPAIGN_CODE_RE`, the Telegram deep-link
    payload alphabet: https://core.telegram.org/bots/features#deep-linking)."""
    return CAMPAIGN_CODE_RE.fullmatch(code) is not None


def is_confirmation_code(text: str) -> str | None:
    """Return the six ASCII digits when the whole message is an e-mail confirmation code, else None.

    The message is normalised first (:func:`normalise_keyword`), so full-width ``１２３４５６``, surrounding spaces
    (U+3000 included) and zero-width characters are accepted. Only ``[0-9]`` counts as a digit. Used by the caller
    while an email endpoint awaits its code (DESIGN.md: ``^\\d{6}$`` overrides the keyword table in that state).
    """
    normalised = normalise_keyword(text)
    return normalised if _CONFIRMATION_CODE_RE.fullmatch(normalised) else None


# ---- admin verbs (issue 5; DESIGN.md "Admin verbs work in any chat where the sender is an admin") -----------------


class AdminVerb(StrEnum):
    """What an admin asks of the author's desk (core.desk). From anyone else these words are ordinary text."""

    BROADCAST = "broadcast"
    """``配信`` / ``/broadcast``: start a draft; the next message is its body."""
    PREVIEW = "preview"
    """``プレビュー`` / ``/preview``: the draft as each channel will show it, and its recipients."""
    TEST = "test"
    """``テスト送信`` / ``/test``: send the draft only to the admin's own endpoints."""
    SEND = "send"
    """``送信`` / ``/send``: send the draft now."""
    SCHEDULE = "schedule"
    """``予約 <when>`` / ``/schedule <when>``: send it at ``when`` (core.schedule). ``argument``: the time text."""
    CANCEL = "cancel"
    """``キャンセル [number]`` / ``/cancel [number]``: stop a draft, a scheduled issue or a running broadcast.
    ``argument``: the issue number as typed, or None."""
    STATS = "stats"
    """``統計`` / ``/stats``: the numbers and the sign-up chart."""
    REPLY = "reply"
    """``返信 <number> <text>`` / ``/reply <number> <text>``: answer reader message ``number``. ``argument``: the
    number (ASCII digits); ``text``: the answer as typed (line breaks kept)."""


@dataclass(frozen=True)
class AdminCommand:
    """An admin verb with its argument (see :class:`AdminVerb`); ``text``: the answer of ``返信`` (else None)."""

    verb: AdminVerb
    argument: str | None = None
    text: str | None = None


_ADMIN_WORDS: tuple[tuple[str, AdminVerb], ...] = (
    ("配信", AdminVerb.BROADCAST),
    ("プレビュー", AdminVerb.PREVIEW),
    ("テスト送信", AdminVerb.TEST),
    ("送信", AdminVerb.SEND),
    ("予約", AdminVerb.SCHEDULE),
    ("キャンセル", AdminVerb.CANCEL),
    ("取消", AdminVerb.CANCEL),
    ("取り消し", AdminVerb.CANCEL),
    ("統計", AdminVerb.STATS),
    ("返信", AdminVerb.REPLY),
)
_ADMIN_SLASH: dict[str, AdminVerb] = {verb.value: verb for verb in AdminVerb}
#: Verbs that need an argument; CANCEL takes an optional one; the rest must be the whole message.
_ADMIN_NEEDS_ARGUMENT = frozenset({AdminVerb.SCHEDULE, AdminVerb.REPLY})
_DIGITS_RE = re.compile(r"[0-9]{1,12}")


def parse_admin(text: str) -> AdminCommand | None:
    """The admin verb ``text`` is, or None (then it is read with :func:`parse` like anyone's message).

    The keyword (its first word) is normalised like every keyword (:func:`normalise_keyword`: widths, case,
    katakana/hiragana, invisible characters), with punctuation and symbols at the ends of the whole message ignored
    as :func:`parse` ignores them (``送信！``, ``🙏統計``; arguments are kept as typed); Telegram's
    ``/command[@bot]`` forms are accepted too. Verbs without
    arguments must be the whole message (``送信してください`` is text). ``予約`` needs a time, ``返信`` a number and a
    text (``返信 12`` alone is not a command); ``キャンセル`` takes an optional issue number. The answer of ``返信``
    keeps its line breaks. Never raises.
    """
    visible = _drop_invisible(text).strip()
    head, _, rest = _split_head(visible)
    verb: AdminVerb | None = None
    for candidate_head, candidate_rest in ((head, rest), *_edges_ignored(visible)):
        verb = _admin_verb(normalise_keyword(candidate_head))
        if verb is not None:
            rest = candidate_rest
            break
    if verb is None:
        return None
    rest = rest.strip()
    if verb is AdminVerb.REPLY:
        number, _, answer = _split_head(rest)
        digits = unicodedata.normalize("NFKC", number)
        if not _DIGITS_RE.fullmatch(digits) or not answer.strip():
            return None
        return AdminCommand(verb, digits, answer.strip())
    argument = _nfkc_words(rest) or None
    if verb is AdminVerb.CANCEL and argument is not None:
        argument = argument.removeprefix("#")  # "キャンセル #12" as the status message shows it (＃ is # after NFKC)
        return AdminCommand(verb, argument) if _DIGITS_RE.fullmatch(argument) else None
    if (verb in _ADMIN_NEEDS_ARGUMENT) != (argument is not None):
        return None  # a time missing, or text after a verb that takes none: ordinary text
    return AdminCommand(verb, argument)


def _admin_verb(key: str) -> AdminVerb | None:
    """The admin verb whose keyword (or ``/command[@bot]``) is ``key`` (normalised), or None."""
    if key.startswith("/"):
        match = _SLASH_COMMAND_RE.fullmatch(key)
        return _ADMIN_SLASH.get(match.group(1)) if match else None
    for word, verb in _ADMIN_WORDS:
        if key == normalise_keyword(word):
            return verb
    return None


def _split_head(text: str) -> tuple[str, str, str]:
    """``text`` split at its first run of whitespace (any: U+3000, line breaks): ``(head, separator, rest)``, the
    rest as typed."""
    match = re.search(r"\s+", text)
    if match is None:
        return text, "", ""
    return text[: match.start()], match.group(), text[match.end():]
