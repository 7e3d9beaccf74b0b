"""Composing emails (core.mail, core.mail_headers, core.render.render_email_html): headers valid under RFC 2047 and
decoding back exactly, header injection impossible, the law's display items in both parts, RFC 8058 fields.

Every message is parsed back as a reader would (``email.message_from_bytes(raw, policy=email.policy.default)``).
"""

from __future__ import annotations

import base64
import email
import email.policy
import random
import re
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markupsafe import escape

from core.mail import (
    ONE_CLICK,
    SenderIdentity,
    build_confirmation,
    build_newsletter,
    confirmation_subject,
    header_problems,
)
from core.mail_headers import (
    MAX_ENCODED_LINE,
    MAX_ENCODED_WORD,
    HeaderEncodingError,
    Unstructured,
    check_address,
    clean_header_text,
    encode_mailbox,
    encode_unstructured,
    repair_headers,
    split_header_section,
)
from core.render import render_email_html, render_plain_text
from core.settings import ConfigError, Settings

UNSUB = "https://news.example.jp/unsubscribe/tok_ABCdef-123.xyz"
PRIVACY = "https://news.example.jp/privacy"
CONFIRM = "https://news.example.jp/email/confirm/ctok_456"
DATE = datetime(2026, 12, 1, 9, 30, 15, tzinfo=timezone.utc)
HARD = "①㈱髙😀ｶﾞ"  # circled digit, squared ㈱, 髙 (IBM extension), astral emoji, half-width kana + voiced mark
EW_RE = re.compile(r"=\?[^?\s]*\?[^?\s]*\?[^?\s]*\?=")


def sender(**overrides: object) -> SenderIdentity:
    values: dict[str, object] = {
        "name": "山田IT事務所",
        "mail_from": "news@example.jp",
        "postal_address": "〒100-0001 東京都千代田区千代田1-1 髙橋ビル3F",
        "contact": "info@example.jp",
    }
    values.update(overrides)
    return SenderIdentity(**values)  # type: ignore[arg-type]


def newsletter(**overrides: object) -> bytes:
    values: dict[str, object] = {
        "sender": sender(),
        "to": "reader@example.com",
        "title": "今月のお知らせ",
        "body_markdown": "こんにちは。\n\n**大事な**お知らせです。",
        "unsubscribe_url": UNSUB,
        "privacy_url": PRIVACY,
        "date": DATE,
    }
    values.update(overrides)
    return build_newsletter(**values)  # type: ignore[arg-type]


def confirmation(**overrides: object) -> bytes:
    values: dict[str, object] = {
        "sender": sender(),
        "to": "new@example.com",
        "confirm_url": CONFIRM,
        "code": "042917",
        "expires_hours": 48,
        "privacy_url": PRIVACY,
        "purpose_of_use": "ニュースレターの配信にのみ利用します。",
        "newsletter_description": "IT活用のヒントを月に2回お届けします。",
        "date": DATE,
    }
    values.update(overrides)
    return build_confirmation(**values)  # type: ignore[arg-type]


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def parts(raw: bytes) -> tuple[str, str]:
    """(text/plain, text/html) contents with line ends as LF."""
    message = parse(raw)
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None and html is not None
    return plain.get_content().replace("\r\n", "\n"), html.get_content().replace("\r\n", "\n")


def field_lines(raw: bytes, name: str) -> list[str]:
    """The physical lines of the one top-level field called ``name``."""
    head, _ = split_header_section(raw)
    lines = head.decode("ascii").split("\r\n")
    found: list[list[str]] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            if found and found[-1][0].lower().startswith(name.lower() + ":"):
                found[-1].append(line)
        else:
            found.append([line])
    matching = [group for group in found if group[0].lower().startswith(name.lower() + ":")]
    assert len(matching) == 1, f"{name}: {len(matching)} fields"
    return matching[0]


def assert_encoded_words_valid(raw: bytes, name: str) -> None:
    """Independent of header_problems: each encoded-word <= 75 characters, non-empty, decodes alone as UTF-8; lines
    holding one <= 76 characters."""
    for line in field_lines(raw, name):
        words = EW_RE.findall(line)
        if words:
            assert len(line) <= MAX_ENCODED_LINE, line
        for word in words:
            assert len(word) <= MAX_ENCODED_WORD, word
            _, charset, kind, text, _ = word.split("?")
            assert charset.lower() == "utf-8"
            assert text, f"empty encoded-word {word}"
            if kind.lower() == "b":
                data = base64.b64decode(text, validate=True)
            else:
                data = re.sub(
                    rb"=([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), text.replace("_", " ").encode()
                )
            data.decode("utf-8")  # raises on a character split between words


def header_names(raw: bytes) -> list[str]:
    return [name.lower() for name in parse(raw).keys()]


# --- round trips -------------------------------------------------------------------------------------------------


def test_hard_characters_arrive_intact_in_subject_from_and_both_parts() -> None:
    title = f"{HARD}のお知らせ {HARD}"
    name = f"㈱髙橋{HARD}"
    body = f"{HARD} **太字{HARD}**\n\n- 項目{HARD}"
    raw = newsletter(sender=sender(name=name), title=title, body_markdown=body)

    raw.decode("ascii")  # 7-bit throughout: headers encoded, bodies base64
    message = parse(raw)
    assert message["Subject"] == title
    assert message["From"].addresses[0].display_name == name
    assert message["From"].addresses[0].addr_spec == "news@example.jp"
    assert message["To"].addresses[0].addr_spec == "reader@example.com"
    assert message.get_content_type() == "multipart/alternative"
    subtypes = [part.get_content_type() for part in message.iter_parts()]
    assert subtypes == ["text/plain", "text/html"]
    for part in message.iter_parts():
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] in ("base64", "quoted-printable")

    plain, html = parts(raw)
    assert plain.startswith(title + "\n\n" + render_plain_text(body) + "\n\n")
    assert render_email_html(body) in html
    assert f"<strong>太字{HARD}</strong>" in html
    assert f"<h1 style=\"font-size:1.4em;line-height:1.4\">{title}</h1>" in html
    assert header_problems(raw) == []
    for name_ in ("Subject", "From"):
        assert_encoded_words_valid(raw, name_)


def test_html_part_is_autoescaped_and_markdown_html_is_escaped() -> None:
    title = "<b>件名</b> & \"quote\""
    raw = newsletter(
        title=title,
        sender=sender(name="A&B <商事>", postal_address="<script>alert(1)</script>"),
        body_markdown="<script>alert('x')</script>\n\n[危険](javascript:alert(1)) [安全](https://example.jp/a?b=1&c=2)",
    )
    message = parse(raw)
    assert message["Subject"] == title
    assert message["From"].addresses[0].display_name == "A&B <商事>"
    _, html = parts(raw)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert re.search(r"&lt;b&gt;件名&lt;/b&gt; &amp; (&#34;|&quot;)quote(&#34;|&quot;)", html)
    assert 'href="javascript' not in html
    assert '<a href="https://example.jp/a?b=1&amp;c=2">安全</a>' in html


# --- RFC 2047 under stress -----------------------------------------------------------------------------------------

_KANA = [chr(c) for c in range(0x3041, 0x3097)] + [chr(c) for c in range(0x30A1, 0x30FB)]
_KANJI = list("日本語漢字新聞配信停止髙﨑会議情報案内登録確認東京大阪神奈川勉強会開催")
_ODD = ["①", "㈱", "髙", "😀", "👍🏽", "👨\u200d👩\u200d👧", "🇯🇵", "ｶﾞ", "ﾊﾟｿｺﾝ", "\u3000", "…", "〜", "™", "é"]
_ASCII = ["Python", "newsletter", "IT", "Vol.", "2026", "update", "AI", "a", "the", "release", "=?", "?=", "_",
          "(x)", '"q"', ",", ";", "<tag>", "\\", "=?utf-8?q?x?=", "100%", "Q&A", "x" * 40]


def random_subject(rng: random.Random) -> str:
    """A subject of 60-200 characters mixing ASCII words, kana, kanji, emoji, ①㈱髙 and half-width kana."""
    target = rng.randint(60, 200)
    pieces: list[str] = []
    if rng.random() < 0.35:
        # A long ASCII run then Japanese: the shape that makes CPython emit an empty encoded-word.
        pieces.append(" ".join(rng.choice(_ASCII[:10]) for _ in range(rng.randint(6, 16))))
    while sum(len(piece) for piece in pieces) < target:
        roll = rng.random()
        if roll < 0.3:
            pieces.append(rng.choice(_ASCII))
        elif roll < 0.55:
            pieces.append("".join(rng.choice(_KANA) for _ in range(rng.randint(1, 8))))
        elif roll < 0.7:
            pieces.append("".join(rng.choice(_KANJI) for _ in range(rng.randint(1, 5))))
        elif roll < 0.82:
            pieces.append(rng.choice(_ODD))
        else:
            pieces.append(" " * rng.randint(1, 3))
    glue = "" if rng.random() < 0.4 else " "
    return glue.join(pieces)[:target].strip(" \u3000") or "件名"


def cpython_subject_field(subject: str) -> bytes:
    """What CPython alone writes for this subject (policy SMTP, 78-character lines)."""
    message = EmailMessage(policy=email.policy.SMTP)
    message["Subject"] = subject
    return message.as_bytes()


def test_500_random_mixed_script_subjects_encode_validly_and_decode_exactly() -> None:
    rng = random.Random(20261201)
    headers_only = BytesHeaderParser(policy=email.policy.default)
    for _ in range(500):
        subject = random_subject(rng)
        raw = newsletter(title=subject, body_markdown="")
        assert header_problems(raw) == [], subject
        assert_encoded_words_valid(raw, "Subject")
        assert headers_only.parsebytes(raw)["Subject"] == subject


def decode_word(word: str) -> str:
    _, charset, kind, text, _ = word.split("?")
    if kind.lower() == "b":
        return base64.b64decode(text, validate=True).decode(charset)
    return re.sub(
        rb"=([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), text.replace("_", " ").encode()
    ).decode(charset)


def shown_display_name(raw: bytes) -> str:
    """The From display name as a mail client shows it. A phrase made only of encoded-words is their decoded texts
    joined with nothing between (RFC 2047 §6.2: whitespace between adjacent encoded-words is ignored); CPython's
    address parser keeps a space there, so it is only the oracle for other phrases."""
    body = "".join(field_lines(raw, "From")).partition(":")[2].strip()
    phrase = body[: body.rindex("<")].strip()
    if phrase.startswith('"'):
        return parse(raw)["From"].addresses[0].display_name
    shown = ""
    previous_was_ew = False
    for index, word in enumerate(phrase.split()):
        is_ew = bool(EW_RE.fullmatch(word))
        if index and not (is_ew and previous_was_ew):
            shown += " "
        shown += decode_word(word) if is_ew else word
        previous_was_ew = is_ew
    return shown


def test_random_display_names_encode_validly_and_decode_exactly() -> None:
    rng = random.Random(7)
    for _ in range(150):
        name = random_subject(rng)[: rng.randint(1, 120)].strip(" \u3000") or "送信者"
        raw = newsletter(sender=sender(name=name), title="件名", body_markdown="")
        assert header_problems(raw) == [], name
        assert_encoded_words_valid(raw, "From")
        # In a structured field a run of spaces means one space (RFC 5322 §3.2.2): that is what readers show.
        assert shown_display_name(raw) == re.sub(" {2,}", " ", name)
        address = BytesHeaderParser(policy=email.policy.default).parsebytes(raw)["From"].addresses[0]
        assert address.addr_spec == "news@example.jp"
        # CPython's own address parser differs only in whitespace (it keeps a space between adjacent encoded-words
        # and takes U+3000 for folding whitespace); the characters themselves are all there.
        assert "".join(address.display_name.split()) == "".join(name.split())


def test_a_long_japanese_display_name_spans_several_words_and_reads_back_whole() -> None:
    name = "株式会社髙橋マーケティングコンサルティング ニュースレター配信係😀ｶﾞ"
    raw = newsletter(sender=sender(name=name))
    assert header_problems(raw) == []
    assert len(EW_RE.findall("".join(field_lines(raw, "From")))) > 1
    assert_encoded_words_valid(raw, "From")
    assert shown_display_name(raw) == name


# Subjects of this shape (a long ASCII run, then Japanese or an emoji) made CPython 3.11 write "=?utf-8?q??=".
EMPTY_EW_SUBJECTS = [
    ("word " * 30)[:n].rstrip() + " " + tail
    for n in range(40, 70)
    for tail in ("😀絵文字のお知らせ", "日本語のお知らせ", "①㈱髙", "ｶﾞｲﾄﾞ")
]


def test_cpython_alone_gets_some_random_subjects_wrong_and_header_problems_or_the_round_trip_shows_it() -> None:
    """Why the builders check CPython's output: over the same kind of subjects, CPython alone writes empty
    encoded-words or loses spaces. Reported, not asserted per subject (a fixed CPython may do better)."""
    rng = random.Random(20261201)
    empty_words = wrong_text = 0
    for _ in range(200):
        subject = random_subject(rng)
        cpython = cpython_subject_field(subject)
        if any("empty encoded-word" in problem for problem in header_problems(cpython)):
            empty_words += 1
        elif BytesHeaderParser(policy=email.policy.default).parsebytes(cpython)["Subject"] != subject:
            wrong_text += 1
        assert header_problems(newsletter(title=subject, body_markdown="")) == []
    print(f"CPython alone: {empty_words} empty encoded-words, {wrong_text} subjects decoding differently, of 200")


def test_subjects_that_break_cpython_folding_are_reencoded() -> None:
    reproduced = 0
    for subject in EMPTY_EW_SUBJECTS:
        cpython = cpython_subject_field(subject)
        if b"?q??=" in cpython.lower() or b"?b??=" in cpython.lower():
            reproduced += 1
            assert any("empty encoded-word" in problem for problem in header_problems(cpython)), cpython
        raw = newsletter(title=subject)
        assert header_problems(raw) == []
        assert b"?q??=" not in raw.lower() and b"?b??=" not in raw.lower()
        assert_encoded_words_valid(raw, "Subject")
        assert parse(raw)["Subject"] == subject
    print(f"CPython wrote an empty encoded-word for {reproduced} of {len(EMPTY_EW_SUBJECTS)} subjects")


def test_repair_headers_replaces_a_bad_field_with_a_valid_encoding() -> None:
    subject = "word word word word word word word word word 😀絵文字"
    good = newsletter(title="placeholder")
    head, body = split_header_section(good)
    lines = head.decode("ascii").split("\r\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("Subject:"))
    end = start + 1
    while end < len(lines) and lines[end][:1] in (" ", "\t"):
        end += 1
    # What CPython 3.11 wrote for this subject (see test_subjects_that_break_cpython_folding_are_reencoded).
    bad_field = [
        "Subject: word word word word word word word word word =?utf-8?q??=",
        " =?utf-8?b?8J+YgOe1teaWh+Wtlw==?=",
    ]
    broken = "\r\n".join(lines[:start] + bad_field + lines[end:]).encode("ascii") + b"\r\n\r\n" + body
    assert any("empty encoded-word" in problem for problem in header_problems(broken))

    others = ["From", "To", "Date", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post", "MIME-Version",
              "Content-Type"]
    repaired = repair_headers(broken, [Unstructured("Subject", subject)], others)
    assert header_problems(repaired) == []
    assert parse(repaired)["Subject"] == subject
    assert parse(repaired).get_body(("plain",)).get_content() == parse(good).get_body(("plain",)).get_content()


def test_repair_headers_refuses_a_field_nobody_asked_for() -> None:
    raw = b"Subject: hello\r\nBcc: evil@example.com\r\n\r\nbody\r\n"
    with pytest.raises(HeaderEncodingError, match="bcc"):
        repair_headers(raw, [Unstructured("Subject", "hello")])


def test_own_encoder_keeps_words_short_whole_and_exact() -> None:
    text = ("ｶﾞ😀①㈱髙 mixed ASCII and 日本語 " * 12).strip()
    field = encode_unstructured("Subject", text)
    raw = field.encode("ascii") + b"\r\n\r\n"
    assert header_problems(raw) == []
    assert all(len(line) <= MAX_ENCODED_LINE for line in field.split("\r\n"))
    assert parse(raw)["Subject"] == text

    mailbox = encode_mailbox("From", "㈱髙橋商事, お便り係 😀", "news@example.jp")
    raw = mailbox.encode("ascii") + b"\r\n\r\n"
    assert header_problems(raw) == []
    address = parse(raw)["From"].addresses[0]
    assert (address.display_name, address.addr_spec) == ("㈱髙橋商事, お便り係 😀", "news@example.jp")

    quoted = encode_mailbox("From", 'Yamada "IT" Office, Inc.', "news@example.jp")
    assert parse(quoted.encode("ascii") + b"\r\n\r\n")["From"].addresses[0].display_name == 'Yamada "IT" Office, Inc.'


# --- header_problems on hand-made bad headers ----------------------------------------------------------------------


def b_word(data: bytes) -> str:
    return "=?utf-8?b?" + base64.b64encode(data).decode("ascii") + "?="


def problems_of(*fields: str) -> list[str]:
    return header_problems(("\r\n".join(fields) + "\r\n\r\nbody\r\n").encode("latin-1"))


def test_header_problems_accepts_a_valid_header() -> None:
    assert problems_of("Subject: " + b_word("日本語".encode()), "From: " + b_word("山田".encode()) + " <a@b.jp>") == []
    assert problems_of("Subject: plain ASCII", "Subject: =?utf-8?q?caf=C3=A9_au_lait?=") == []


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (["Subject: word =?utf-8?q??="], "empty encoded-word"),
        (["Subject: word =?utf-8?b??="], "empty encoded-word"),
        (["Subject:", " " + b_word(b"x" * 60)], "longer than 75"),
        (["Subject: " + b_word("日".encode()[:2]) + " " + b_word("日".encode()[2:] + "本".encode())], "split"),
        (["Subject: =?utf-8?b?####?="], "invalid base64"),
        (["Subject: =?utf-8?b?5pel5p?="], "multiple of 4"),
        (["Subject: abc" + b_word("日".encode())], "not separated"),
        (["Subject: " + b_word("日".encode()) + b_word("本".encode())], "not separated"),
        (['From: "' + b_word("山田".encode()) + '" <a@b.jp>'], "inside a quoted-string"),
        (["From: =?utf-8?q?a.b?= <a@b.jp>"], "not allowed in Q"),
        (["Subject: =?utf-8?q?a?b?="], ""),  # not an encoded-word at all: only checked for what it is
        (["Subject: =?no-such-charset?b?5pel?="], "unknown charset"),
        (["Subject: =?utf-8?x?5pel?="], "unknown encoding"),
        (["Subject: 日本語"], "8-bit"),
        (["Subject: " + " ".join([b_word("日本".encode())] * 4)], "longer than 76"),
        (["Subject: " + "x" * 1000], "998"),
    ],
)
def test_header_problems_finds_each_broken_rule(fields: list[str], expected: str) -> None:
    raw = ("\r\n".join(fields) + "\r\n\r\nbody\r\n").encode("utf-8")
    problems = header_problems(raw)
    if expected:
        assert any(expected in problem for problem in problems), problems
    else:
        assert problems == []


def test_header_problems_finds_bare_line_feeds() -> None:
    problems = header_problems(b"Subject: a\nBcc: x@example.com\r\n\r\nbody")
    assert any("bare CR or LF" in problem for problem in problems)


# --- header injection ----------------------------------------------------------------------------------------------

BREAKS = ["\r\n", "\n", "\r", "\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\r\n\t"]
EXPECTED_NEWSLETTER_FIELDS = {
    "from", "to", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post", "mime-version",
    "content-type",
}


@pytest.mark.parametrize("brk", BREAKS)
def test_line_breaks_in_subject_or_display_name_never_make_a_header(brk: str) -> None:
    raw = newsletter(
        title=f"件名{brk}Bcc: victim@example.com{brk}{brk}本文",
        sender=sender(name=f"山田{brk}Bcc: victim2@example.com"),
    )
    assert header_problems(raw) == []
    assert set(header_names(raw)) == EXPECTED_NEWSLETTER_FIELDS
    message = parse(raw)
    assert message["Bcc"] is None
    assert message["Subject"] == "件名 Bcc: victim@example.com 本文"
    assert message["From"].addresses[0].display_name == "山田 Bcc: victim2@example.com"
    assert len(message["From"].addresses) == 1


@pytest.mark.parametrize(
    "address",
    ["reader@example.com\r\nBcc: victim@example.com", "reader@example.com\n", "reader@exa\u2028mple.com",
     "Reader <reader@example.com>", "a@example.com, b@example.com", "no-at-sign", "two words@example.com",
     "ユーザー@example.com", "x" * 65 + "@example.com", "a@-bad-.com", ""],
)
def test_unsafe_recipient_addresses_are_refused(address: str) -> None:
    with pytest.raises(ValueError):
        newsletter(to=address)


def test_international_domain_becomes_idna() -> None:
    assert check_address("info@例え.jp") == "info@xn--r8jz45g.jp"
    raw = newsletter(to="info@例え.jp")
    assert parse(raw)["To"].addresses[0].addr_spec == "info@xn--r8jz45g.jp"


@pytest.mark.parametrize("url", ["https://x.example/unsubscribe/a\r\nBcc: v@example.com", "javascript:alert(1)",
                                 "/unsubscribe/relative", "https://x.example/a b", "https://x.example/<a>"])
def test_unsafe_unsubscribe_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        newsletter(unsubscribe_url=url)


def test_clean_header_text() -> None:
    assert clean_header_text("  a\r\n\r\nb\u2028c\x85d\te\u3000 ") == "a b c d e"
    assert clean_header_text("\ud800x") == "\ufffdx"
    assert clean_header_text("ｶﾞ\u200b😀") == "ｶﾞ\u200b😀"


# --- the law's display items ---------------------------------------------------------------------------------------


class _Text(HTMLParser):
    """Visible text of an HTML document (tags dropped, entities decoded) and its links."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.hrefs.extend(value or "" for name, value in attrs if tag == "a" and name == "href")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def visible(html: str) -> tuple[str, list[str]]:
    parser = _Text()
    parser.feed(html)
    return "".join(parser.text), parser.hrefs


REFUSAL_STATEMENT = "今後このメールの受信を希望されない場合は、"


def test_newsletter_carries_every_display_item_in_both_parts() -> None:
    identity = sender(name=f"山田IT事務所{HARD}", contact="https://example.jp/contact")
    raw = newsletter(sender=identity)
    plain, html = parts(raw)
    text, hrefs = visible(html)
    for part in (plain, text):
        assert identity.name in part  # (1) sender's name
        assert UNSUB in part  # (2) where to refuse
        assert identity.postal_address in part  # (4)
        assert identity.contact in part  # (5)
        assert PRIVACY in part
    # (3): the statement that one can refuse sits right beside the URL (the line before it / the same paragraph).
    assert re.search(REFUSAL_STATEMENT + r"[^\n]*配信を停止できます。\n" + re.escape(UNSUB) + "\n", plain)
    assert re.search(REFUSAL_STATEMENT + r"[^<]*<br>\s*<a href=\"" + re.escape(UNSUB) + '">', html)
    # A visible unsubscribe link in the body, and the contact linked.
    assert UNSUB in hrefs and PRIVACY in hrefs and "https://example.jp/contact" in hrefs


def test_unsubscribe_mailto_is_offered_in_both_parts_when_configured() -> None:
    raw = newsletter(sender=sender(unsubscribe_mailto="unsubscribe@example.jp"))
    plain, html = parts(raw)
    assert "unsubscribe@example.jp" in plain
    assert 'href="mailto:unsubscribe@example.jp?subject=unsubscribe"' in html


def test_confirmation_mail_says_what_why_how_and_how_long() -> None:
    identity = sender(contact="03-1234-5678")
    raw = confirmation(sender=identity)
    assert header_problems(raw) == []
    message = parse(raw)
    assert message["Subject"] == confirmation_subject(identity) == "【山田IT事務所】メールアドレスのご確認"
    assert message["List-Unsubscribe"] is None and message["List-Unsubscribe-Post"] is None
    assert message["To"].addresses[0].addr_spec == "new@example.com"
    plain, html = parts(raw)
    text, hrefs = visible(html)
    for part in (plain, text):
        assert CONFIRM in part
        assert "042917" in part
        assert "48時間" in part
        assert "ニュースレターの配信にのみ利用します。" in part  # purpose of use
        assert "IT活用のヒントを月に2回お届けします。" in part  # what they will receive
        assert "お心当たりのない場合" in part and "このメールは破棄してください" in part
        assert "送られることはありません" in part  # nothing will be sent
        assert identity.name in part and identity.postal_address in part and identity.contact in part
        assert PRIVACY in part
        assert "受信を拒否される場合は、news@example.jp まで" in part  # an address for refusal, with the statement
    assert CONFIRM in hrefs and "tel:0312345678" in hrefs and "mailto:news@example.jp" in hrefs


@pytest.mark.parametrize(
    ("overrides", "error"),
    [({"code": "12345"}, "code"), ({"code": "１２３４５６"}, "code"), ({"code": "12345a"}, "code"),
     ({"expires_hours": 0}, "expires_hours"), ({"confirm_url": "ftp://x.example/c"}, "confirm_url"),
     ({"to": "bad address@example.com"}, "to")],
)
def test_confirmation_refuses_bad_arguments(overrides: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        confirmation(**overrides)


# --- RFC 8058, Reply-To, Date, Message-ID ---------------------------------------------------------------------------


def test_list_unsubscribe_fields_are_exactly_as_rfc_8058_requires() -> None:
    raw = newsletter(sender=sender(unsubscribe_mailto="unsubscribe@example.jp"))
    message = parse(raw)
    assert message.get_all("List-Unsubscribe") == [f"<{UNSUB}>, <mailto:unsubscribe@example.jp?subject=unsubscribe>"]
    assert message.get_all("List-Unsubscribe-Post") == ["List-Unsubscribe=One-Click"] == [ONE_CLICK]
    for name in ("List-Unsubscribe", "List-Unsubscribe-Post"):
        assert not any(EW_RE.search(line) for line in field_lines(raw, name))  # never encoded-words

    raw = newsletter()
    assert parse(raw).get_all("List-Unsubscribe") == [f"<{UNSUB}>"]


def test_a_long_unsubscribe_url_stays_verbatim() -> None:
    url = "https://news.example.jp/unsubscribe/" + "A1b2-C3d4_" * 20
    raw = newsletter(unsubscribe_url=url, sender=sender(unsubscribe_mailto="unsubscribe@example.jp"))
    assert header_problems(raw) == []
    lines = field_lines(raw, "List-Unsubscribe")
    assert not any(EW_RE.search(line) for line in lines)
    assert "".join(lines) == f"List-Unsubscribe: <{url}>, <mailto:unsubscribe@example.jp?subject=unsubscribe>"


def test_reply_to_only_when_set() -> None:
    assert parse(newsletter())["Reply-To"] is None
    assert parse(confirmation())["Reply-To"] is None
    raw = newsletter(sender=sender(reply_to="author@example.jp"))
    assert [a.addr_spec for a in parse(raw)["Reply-To"].addresses] == ["author@example.jp"]
    raw = confirmation(sender=sender(reply_to="author@example.jp"))
    assert [a.addr_spec for a in parse(raw)["Reply-To"].addresses] == ["author@example.jp"]


def test_date_and_message_id() -> None:
    message = parse(newsletter())
    assert message["Date"].datetime == DATE
    assert re.fullmatch(r"<[^<>@\s]+@example\.jp>", message["Message-ID"])
    other = parse(newsletter(message_id_domain="mail.example.org"))
    assert other["Message-ID"].endswith("@mail.example.org>")
    assert other["Message-ID"] != message["Message-ID"]
    jst = datetime(2026, 12, 1, 18, 0, tzinfo=timezone(timedelta(hours=9)))
    assert parse(newsletter(date=jst))["Date"].datetime == jst
    with pytest.raises(ValueError, match="timezone"):
        newsletter(date=datetime(2026, 12, 1, 9, 0))


def test_empty_title_falls_back_to_the_sender_name() -> None:
    assert parse(newsletter(title=" \r\n "))["Subject"] == "山田IT事務所"


# --- one issue, many recipients ------------------------------------------------------------------------------------

PER_RECIPIENT = {"to", "message-id", "list-unsubscribe"}
LINK = "\x00link\x00"  # stands for a recipient's unsubscribe link when comparing two recipients' parts


def test_two_recipients_messages_differ_only_in_their_own_parts() -> None:
    identity = sender(name=f"㈱髙橋{HARD}", unsubscribe_mailto="unsubscribe@example.jp", reply_to="author@example.jp")
    title = f"12月のお知らせ {HARD}　ＩＴ通信 & <b>"
    body = f"**{HARD}** の件。\n\n[案内](https://example.jp/a?b=1&c=2)\n\n- 一\n- 二"
    readers = [
        ("reader.one@example.com", "reader.one@example.com", "https://news.example.jp/unsubscribe/tokA?x=1&y='2'"),
        ("two@例え.jp", "two@xn--r8jz45g.jp", "http://127.0.0.1:8080/unsubscribe/" + "Zy9-_" * 40),
    ]
    raws = [
        newsletter(sender=identity, title=title, body_markdown=body, to=to, unsubscribe_url=url)
        for to, _, url in readers
    ]
    messages = [parse(raw) for raw in raws]
    for raw, message, (_, address, url) in zip(raws, messages, readers):
        assert header_problems(raw) == []
        raw.decode("ascii")
        assert [a.addr_spec for a in message["To"].addresses] == [address]
        assert message["List-Unsubscribe"] == f"<{url}>, <mailto:unsubscribe@example.jp?subject=unsubscribe>"
        assert message["List-Unsubscribe-Post"] == ONE_CLICK
        assert message["Subject"] == title
        assert message["From"].addresses[0].display_name == identity.name
        assert message["Date"].datetime == DATE
        assert re.fullmatch(r"<[^<>@\s]+@example\.jp>", message["Message-ID"])
        plain, html = parts(raw)
        text, hrefs = visible(html)
        assert plain.count(url) == 1 and text.count(url) == 1 and hrefs.count(url) == 2
        assert f'<a href="{escape(url)}">配信を停止する</a>' in html  # escaped as Jinja's autoescape writes it
    assert messages[0]["Message-ID"] != messages[1]["Message-ID"]

    # Everything else is the same: the other header fields (in order), the MIME structure, and both parts once each
    # recipient's link is replaced by the same stand-in.
    def shared(message: EmailMessage) -> list[tuple[str, str]]:
        return [(name, str(value)) for name, value in message.items() if name.lower() not in PER_RECIPIENT]

    assert shared(messages[0]) == shared(messages[1])
    assert [name.lower() for name in messages[0].keys()] == [name.lower() for name in messages[1].keys()]
    first, second = ([part for part in m.iter_parts()] for m in messages)
    assert [p.items() for p in first] == [p.items() for p in second]
    (plain_a, html_a), (plain_b, html_b) = (parts(raw) for raw in raws)
    url_a, url_b = readers[0][2], readers[1][2]
    assert plain_a.replace(url_a, LINK) == plain_b.replace(url_b, LINK)
    assert html_a.replace(str(escape(url_a)), LINK) == html_b.replace(url_b, LINK)
    assert LINK in plain_a.replace(url_a, LINK)


def test_an_issue_is_composed_once_for_all_its_recipients() -> None:
    """Per recipient only the varying parts are filled in; the template (rendering, From/Subject encoding, MIME
    structure) is built once per distinct issue content, and the Jinja environment once per process."""
    from core.mail import _newsletter_template, _templates

    before = _newsletter_template.cache_info()
    title = f"一度だけ組み立てる号 {random.random()}"  # content no earlier test used
    for index in range(50):
        newsletter(title=title, to=f"reader{index}@example.com", unsubscribe_url=f"{UNSUB}{index}")
    after = _newsletter_template.cache_info()
    assert after.misses - before.misses == 1 and after.hits - before.hits == 49
    newsletter(title=title + " (訂正)", to="reader0@example.com")  # an edited issue is a new template
    assert _newsletter_template.cache_info().misses - after.misses == 1
    assert _templates.cache_info().currsize == 1 and _templates() is _templates()


# --- SenderIdentity ------------------------------------------------------------------------------------------------


def mail_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'otayori.sqlite3'}",
        "sender_name": "山田IT事務所",
        "mail_from": "news@example.jp",
        "sender_postal_address": "東京都千代田区千代田1-1",
        "sender_contact": "info@example.jp",
        "reply_to": None,
        "unsubscribe_mailto": None,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def test_sender_identity_from_settings(tmp_path: Path) -> None:
    identity = SenderIdentity.from_settings(
        mail_settings(tmp_path, reply_to="author@example.jp", unsubscribe_mailto="unsub@example.jp")
    )
    assert identity == SenderIdentity(
        name="山田IT事務所",
        mail_from="news@example.jp",
        postal_address="東京都千代田区千代田1-1",
        contact="info@example.jp",
        reply_to="author@example.jp",
        unsubscribe_mailto="unsub@example.jp",
    )
    assert SenderIdentity.from_settings(mail_settings(tmp_path)).reply_to is None


@pytest.mark.parametrize(
    ("attribute", "value", "setting"),
    [
        ("sender_name", None, "OTAYORI_SENDER_NAME"),
        ("sender_name", "  ", "OTAYORI_SENDER_NAME"),
        ("mail_from", None, "OTAYORI_MAIL_FROM"),
        ("sender_postal_address", None, "OTAYORI_SENDER_POSTAL_ADDRESS"),
        ("sender_contact", None, "OTAYORI_SENDER_CONTACT"),
        ("mail_from", "news@example.jp\r\nBcc: v@example.com", "OTAYORI_MAIL_FROM"),
        ("mail_from", "not an address", "OTAYORI_MAIL_FROM"),
        ("reply_to", "Author <author@example.jp>", "OTAYORI_REPLY_TO"),
        ("unsubscribe_mailto", "unsub@@example.jp", "OTAYORI_UNSUBSCRIBE_MAILTO"),
    ],
)
def test_missing_or_bad_display_items_name_the_setting(
    tmp_path: Path, attribute: str, value: object, setting: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        SenderIdentity.from_settings(mail_settings(tmp_path, **{attribute: value}))
    assert caught.value.setting == setting
    message = str(caught.value)
    assert message.startswith(setting) and "\n" not in message


def test_missing_display_items_say_sending_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="email sending refuses to start"):
        SenderIdentity.from_settings(mail_settings(tmp_path, sender_postal_address=None))


def test_sender_identity_refuses_blank_items_when_built_directly() -> None:
    with pytest.raises(ValueError, match="postal_address"):
        sender(postal_address="")
    with pytest.raises(ValueError, match="mail_from"):
        sender(mail_from="news@example.jp\nBcc: v@example.com")


# --- the Markdown -> email HTML renderer ---------------------------------------------------------------------------


def test_render_email_html_constructs() -> None:
    html = render_email_html(
        "# 見出し\n\n**「重要」**です。*斜体*と`code`。\n\n- 一\n- 二\n\n3. 三\n4. 四\n\n> 引用\n\n"
        "```\n<pre> & code\n```\n\n[サイト](https://example.jp/パス) [メール](mailto:a@example.jp) "
        "[危険](javascript:alert(1)) [相対](/path) ![図](https://example.jp/a.png)\n\n<div>raw</div>\n\n1行目\n2行目"
    )
    assert "<h2>見出し</h2>" in html
    assert "<strong>「重要」</strong>です。<em>斜体</em>と<code>code</code>。" in html  # CJK-friendly emphasis
    assert "<ul>\n<li>一</li>\n<li>二</li>\n</ul>" in html
    assert '<ol start="3">\n<li>三</li>\n<li>四</li>\n</ol>' in html
    assert "<p>引用</p>\n</blockquote>" in html
    assert "<code>&lt;pre&gt; &amp; code</code></pre>" in html
    assert '<a href="https://example.jp/%E3%83%91%E3%82%B9">サイト</a>' in html
    assert '<a href="mailto:a@example.jp">メール</a>' in html
    assert "javascript" not in re.sub(r"\[危険\]\(javascript:alert\(1\)\)", "", html)
    assert "相対" in html and 'href="/path"' not in html
    assert '<a href="https://example.jp/a.png">図</a>' in html and "<img" not in html
    assert "&lt;div&gt;raw&lt;/div&gt;" in html
    assert "1行目<br>\n2行目" in html
    assert render_email_html("") == ""
