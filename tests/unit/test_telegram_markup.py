"""The emulator's Bot API formatting rules, checked against tdlib's own expectations (td/test/message_entities.cpp)."""

from __future__ import annotations

import pytest

from bots.sandbox.telegram_markup import (
    EntityParseError,
    bot_command_entities,
    parse_text,
    strip_outer_whitespace,
    utf16_len,
)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("🏟 🏟_abacaba", "Can't find end of Italic entity at byte offset 9"),
        ("🏟 🏟_abac * asd ", "Can't find end of Bold entity at byte offset 15"),
        ("🏟 🏟`", "Can't find end of Code entity at byte offset 9"),
        ("🏟 🏟```a", "Can't find end of Pre entity at byte offset 9"),
        ("🏟 🏟```a ", "Can't find end of PreCode entity at byte offset 9"),
        ("Version 1.0", "Character '.' is reserved and must be escaped with the preceding '\\'"),
        ("残り-1", "Character '-' is reserved and must be escaped with the preceding '\\'"),
    ],
)
def test_markdown_v2_errors_match_tdlib(text: str, error: str) -> None:
    with pytest.raises(EntityParseError) as caught:
        parse_text(text, "MarkdownV2")
    assert str(caught.value) == error


def test_markdown_v2_entities_and_escapes() -> None:
    text, entities = parse_text("*太字* _斜体_ __下線__ ~取消~ ||秘密|| `x` [リンク](https://example.com/a\\)b) 1\\.0", "MarkdownV2")
    assert text == "太字 斜体 下線 取消 秘密 x リンク 1.0"
    assert [(e["type"], e["offset"], e["length"]) for e in entities] == [
        ("bold", 0, 2), ("italic", 3, 2), ("underline", 6, 2), ("strikethrough", 9, 2), ("spoiler", 12, 2),
        ("code", 15, 1), ("text_link", 17, 3),
    ]
    assert entities[-1]["url"] == "https://example.com/a)b"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("<b>x", 'Can\'t find end tag corresponding to start tag "b"'),
        ("a < b", 'Unsupported start tag "" at byte offset 2'),
        ("太郎<br>", 'Unsupported start tag "br" at byte offset 6'),
        ("</b>", "Unexpected end tag at byte offset 0"),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
        ("<a href>x</a>", 'Expected equal sign in declaration of an attribute of the tag "a" at byte offset 0'),
        ("<b", "Unclosed start tag at byte offset 0"),
    ],
)
def test_html_errors_match_tdlib(text: str, error: str) -> None:
    with pytest.raises(EntityParseError) as caught:
        parse_text(text, "HTML")
    assert str(caught.value) == error


def test_html_entities_tags_and_utf16_offsets() -> None:
    text, entities = parse_text(
        "🙂<B>太郎</B> &lt;3 AT&T &amp; &#12354; <a href='https://example.com'>リンク</a>"
        '<pre><code class="language-python">x = 1</code></pre><code class="language-x">c</code>'
        '<span class="tg-spoiler">秘</span><blockquote expandable>引用</blockquote>',
        "HTML",
    )
    assert text == "🙂太郎 <3 AT&T & あ リンクx = 1c秘引用"
    assert [(e["type"], e["offset"], e["length"]) for e in entities] == [
        ("bold", 2, 2), ("text_link", 17, 3), ("pre", 20, 5), ("code", 25, 1), ("spoiler", 26, 1),
        ("expandable_blockquote", 27, 2),
    ]
    assert entities[2]["language"] == "python" and "language" not in entities[3]


def test_links_with_unusable_targets_are_dropped_not_refused() -> None:
    assert parse_text('<a href="javascript:alert(1)">x</a>', "HTML") == ("x", [])


def test_legacy_markdown_and_unknown_mode() -> None:
    assert parse_text("*b* _i_", "Markdown") == ("b i", [
        {"type": "bold", "offset": 0, "length": 1}, {"type": "italic", "offset": 2, "length": 1}])
    with pytest.raises(EntityParseError, match="Can't find end of the entity starting at byte offset 0"):
        parse_text("*unclosed", "markdown")
    with pytest.raises(ValueError, match="unsupported parse_mode"):
        parse_text("x", "XML")


def test_outer_whitespace_is_trimmed_and_entities_follow() -> None:
    assert strip_outer_whitespace("\n  太郎 \n", [{"type": "bold", "offset": 1, "length": 4}]) == (
        "太郎", [{"type": "bold", "offset": 0, "length": 2}])


def test_bot_commands_in_user_text() -> None:
    assert bot_command_entities("/start seminar1") == [{"type": "bot_command", "offset": 0, "length": 6}]
    assert bot_command_entities("🙂 /help@otayori_bot") == [{"type": "bot_command", "offset": 3, "length": 17}]
    assert bot_command_entities("/start登録") == []  # a command must not run into letters
    assert bot_command_entities("a/b and /x@ab") == []
    assert utf16_len("👍🏽あ") == 5
