"""Telegram text + entities -> our Markdown (bots/telegram_markdown.py): offsets in UTF-16 code units, nesting,
spaces at emphasis edges, links, code, quotes — checked through core.render, which reads the result."""

from __future__ import annotations

from bots.sandbox.telegram_markup import parse_text
from bots.telegram_markdown import to_markdown
from core.render import render_plain_text, render_telegram_html


def converted(html_text: str) -> str:
    """What an admin's Telegram client sends for ``html_text`` (text + entities), as our Markdown."""
    text, entities = parse_text(html_text, "HTML")
    return to_markdown(text, entities)


def test_plain_text_is_kept_as_typed():
    assert to_markdown("12月のお知らせ\n- 項目 *そのまま*", []) == "12月のお知らせ\n- 項目 *そのまま*"
    assert to_markdown("絵文字😀だけ", None) == "絵文字😀だけ"


def test_bold_italic_and_links_after_emoji_use_utf16_offsets():
    markdown = converted('😀👨‍👩‍👧 <b>太字</b>と<i>斜体</i>、<a href="https://example.jp/a?b=1">リンク</a>')
    assert markdown == "😀👨‍👩‍👧 **太字**と*斜体*、[リンク](https://example.jp/a?b=1)"
    assert render_telegram_html(markdown) == (
        '😀👨‍👩‍👧 <b>太字</b>と<i>斜体</i>、<a href="https://example.jp/a?b=1">リンク</a>')


def test_nested_entities_and_spaces_at_the_edges():
    markdown = converted("<b>太字と<i>斜体</i> </b>の後")
    assert markdown == "**太字と*斜体*** の後"
    assert render_telegram_html(markdown) == "<b>太字と<i>斜体</i></b> の後"
    assert converted("<b> </b>空白だけ") == " 空白だけ"  # an emphasis of nothing but spaces adds no markers


def test_links_with_brackets_and_parentheses_survive():
    markdown = converted('<a href="https://example.jp/a (b)">[資料] 一覧</a>')
    assert markdown == "[\\[資料\\] 一覧](https://example.jp/a%20%28b%29)"
    assert render_plain_text(markdown) == "[資料] 一覧 (https://example.jp/a (b))"  # shown decoded
    assert 'href="https://example.jp/a%20%28b%29"' in render_telegram_html(markdown)


def test_code_pre_and_quotes():
    assert converted("実行: <code>otayori run</code>") == "実行: `otayori run`"
    assert converted("<code>a`b</code>") == "`` a`b ``"
    markdown = converted('<pre><code class="language-sh">make demo\nmake test</code></pre>')
    assert markdown == "\n```sh\nmake demo\nmake test\n```\n"
    assert "<pre>" in render_telegram_html(markdown)
    assert converted("<blockquote>引用1\n引用2</blockquote>") == "> 引用1\n> 引用2"


def test_entities_without_a_counterpart_stay_plain_and_bad_offsets_are_ignored():
    text, entities = parse_text("<u>下線</u><s>取消</s><tg-spoiler>秘密</tg-spoiler>", "HTML")
    assert to_markdown(text, entities) == "下線取消秘密"
    assert to_markdown("短い", [{"type": "bold", "offset": 1, "length": 10}]) == "短い"
