"""Issue Markdown -> Telegram HTML / LINE plain text, and splitting to each channel's limit (core.render)."""

from __future__ import annotations

import random
import re
from html.parser import HTMLParser

import pytest

from core.render import (
    LINE_TEXT_LIMIT_UTF16,
    TELEGRAM_TEXT_LIMIT,
    issue_parts,
    render_plain_text,
    render_telegram_html,
    split_line_text,
    split_telegram_html,
    utf16_length,
)

TELEGRAM_TAGS = {"b", "i", "code", "pre", "a", "blockquote"}
# What may legitimately start with '<' or '&' in our output: a whole tag, or one of the entities Telegram accepts.
_WHOLE_TAG_OR_ENTITY = re.compile(
    r'<(?:b|i|code|pre|blockquote)>|<code class="language-[A-Za-z0-9_+#.-]+">|<a href="[^"<>]*">'
    r"|</(?:b|i|code|pre|a|blockquote)>|&(?:lt|gt|amp|quot|#[0-9]+|#x[0-9a-fA-F]+);"
)


class _TelegramHtmlChecker(HTMLParser):
    """Parses one message as Telegram would: collects the visible text and checks the tags are balanced."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.text: list[str] = []
        self.errors: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in TELEGRAM_TAGS:
            self.errors.append(f"unsupported tag <{tag}>")
        if tag == "a":
            self.hrefs.append(dict(attrs).get("href") or "")
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unbalanced </{tag}> with open {self.stack}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def check_telegram_html(message: str) -> str:
    """Assert ``message`` is well-formed Telegram HTML; return its visible text (tags removed, entities decoded)."""
    checker = _TelegramHtmlChecker()
    checker.feed(message)
    checker.close()
    assert checker.errors == [], (checker.errors, message[:200])
    assert checker.stack == [], ("unclosed tags", checker.stack, message[-200:])
    # Nothing is cut inside a tag or an entity: with every whole tag/entity removed, no '<', '>' or '&' is left.
    leftovers = _WHOLE_TAG_OR_ENTITY.sub("", message)
    assert not set("<>&") & set(leftovers), leftovers[:200]
    return "".join(checker.text)


def visible(message: str) -> str:
    return check_telegram_html(message)


def squeeze(text: str) -> str:
    """Text without whitespace: what must survive splitting unchanged and in order."""
    return re.sub(r"\s+", "", text)


# --- render_telegram_html ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("AT&T & co", "AT&amp;T &amp; co"),
        ("<b>not bold</b>", "&lt;b&gt;not bold&lt;/b&gt;"),
        ("1 < 2 > 0", "1 &lt; 2 &gt; 0"),
        ("&lt;b&gt;", "&lt;b&gt;"),  # a Markdown entity is decoded, then escaped again: shown as <b>
        ("&amp;amp;", "&amp;amp;"),
        ('He said "hi" & \'bye\'', "He said \"hi\" &amp; 'bye'"),  # quotes need no escaping outside attributes
        ("**<i>x</i>**", "<b>&lt;i&gt;x&lt;/i&gt;</b>"),
        ("`<b>`", "<code>&lt;b&gt;</code>"),
        ("```\n<script>\n```", "<pre>&lt;script&gt;</pre>"),
        ("<div>\n**x**\n</div>", "&lt;div&gt;\n<b>x</b>\n&lt;/div&gt;"),  # HTML blocks are text too
    ],
)
def test_author_text_is_escaped(markdown: str, expected: str) -> None:
    rendered = render_telegram_html(markdown)
    assert rendered == expected
    check_telegram_html(rendered)


@pytest.mark.parametrize(
    "markdown",
    [
        "[click](javascript:alert(1))",
        "[click](JAVASCRIPT:alert(1))",
        "[click](javascript&#58;alert(1))",
        "<javascript:alert(1)>",
        "[click](vbscript:msgbox(1))",
        "[click](data:text/html;base64,PHNjcmlwdD4=)",
        "![img](data:image/png;base64,AAAA)",
        "[click](file:///etc/passwd)",
        "[click](ftp://example.com/x)",
        "[click](/relative/path)",
        "[click](#anchor)",
    ],
)
def test_unsafe_or_unsupported_links_are_not_linked(markdown: str) -> None:
    rendered = render_telegram_html(markdown)
    assert "<a" not in rendered
    assert 'href="' not in rendered
    check_telegram_html(rendered)


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("[site](https://example.com)", '<a href="https://example.com">site</a>'),
        ("[site](http://example.com/a?b=1&c=2)", '<a href="http://example.com/a?b=1&amp;c=2">site</a>'),
        ("[me](mailto:taro@example.jp)", '<a href="mailto:taro@example.jp">me</a>'),
        ("[ch](tg://resolve?domain=otayori)", '<a href="tg://resolve?domain=otayori">ch</a>'),
        ("<https://example.com>", '<a href="https://example.com">https://example.com</a>'),
        ("[](https://example.com)", '<a href="https://example.com">https://example.com</a>'),
        ('[q](https://e.com/"x")', '<a href="https://e.com/%22x%22">q</a>'),
        ("[**b** *i*](https://e.com)", '<a href="https://e.com"><b>b</b> <i>i</i></a>'),
        ("[`code`](https://e.com)", '<a href="https://e.com">code</a>'),  # a link cannot contain code
        ("![図 1](https://e.com/a.png)", '<a href="https://e.com/a.png">図 1</a>'),
        ("![](https://e.com/a.png)", '<a href="https://e.com/a.png">https://e.com/a.png</a>'),
    ],
)
def test_links(markdown: str, expected: str) -> None:
    rendered = render_telegram_html(markdown)
    assert rendered == expected
    check_telegram_html(rendered)


def test_link_with_japanese_url_is_percent_encoded_in_href() -> None:
    rendered = render_telegram_html("[案内](https://example.jp/セミナー)")
    assert rendered == '<a href="https://example.jp/%E3%82%BB%E3%83%9F%E3%83%8A%E3%83%BC">案内</a>'


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("# 見出し", "<b>見出し</b>"),
        ("### 小見出し *強調*", "<b>小見出し <i>強調</i></b>"),
        ("# 見出し\n本文", "<b>見出し</b>\n\n本文"),
        ("**太字**と*斜体*", "<b>太字</b>と<i>斜体</i>"),
        ("_斜体_ です", "<i>斜体</i> です"),
        ("`x = 1`", "<code>x = 1</code>"),
        ("```python\nprint('<x>')\n```", '<pre><code class="language-python">print(\'&lt;x&gt;\')</code></pre>'),
        ("```\na\n\nb\n```", "<pre>a\n\nb</pre>"),
        ("    indented code", "<pre>indented code</pre>"),
        ("段落1\n\n段落2", "段落1\n\n段落2"),
        ("行1\n行2", "行1\n行2"),  # soft break: a line break in chat
        ("行1  \n行2", "行1\n行2"),  # hard break
        ("- a\n- b", "• a\n• b"),
        ("* a\n* **b**", "• a\n• <b>b</b>"),
        ("1. a\n2. b", "1. a\n2. b"),
        ("3. a\n4. b", "3. a\n4. b"),
        ("- a\n  - b\n- c", "• a\n  • b\n• c"),
        ("> 引用", "<blockquote>引用</blockquote>"),
        ("> 外\n>\n> > 内", "<blockquote>外\n\n内</blockquote>"),  # quotes cannot nest: flattened
        ("> ```\n> code\n> ```", "<blockquote>code</blockquote>"),  # pre cannot sit inside a quote
        ("a\n\n---\n\nb", "a\n\n――――――――\n\nb"),
        ("", ""),
        ("   \n\n  ", ""),
    ],
)
def test_telegram_formatting(markdown: str, expected: str) -> None:
    rendered = render_telegram_html(markdown)
    assert rendered == expected
    check_telegram_html(rendered)


def test_code_inside_a_list_item_keeps_its_indentation() -> None:
    markdown = "- item\n\n  ```\n  code\n    indented\n  ```\n\n  after\n- two\n  - nested\n\n    ```\n    x\n     y\n    ```"
    rendered = render_telegram_html(markdown)
    assert rendered == "• item\n  <pre>code\n  indented</pre>\n  after\n• two\n  • nested\n    <pre>x\n y</pre>"
    check_telegram_html(rendered)
    assert render_plain_text(markdown) == "・ item\n  code\n    indented\n  after\n・ two\n  ・ nested\n    x\n     y"


def test_paragraphs_are_separated_by_exactly_one_blank_line() -> None:
    rendered = render_telegram_html("# T\n\n\n\npara one\n\n\n\n- item\n\n> quote\n\nend")
    assert rendered == "<b>T</b>\n\npara one\n\n• item\n\n<blockquote>quote</blockquote>\n\nend"


# --- render_plain_text ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("# 見出し\n\n本文", "■ 見出し\n\n本文"),
        ("**太字**と*斜体*と`code`", "太字と斜体とcode"),
        ("[案内](https://example.jp/a)", "案内 (https://example.jp/a)"),
        ("[https://example.jp/a](https://example.jp/a)", "https://example.jp/a"),
        ("<https://example.jp/a>", "https://example.jp/a"),
        ("[案内](https://example.jp/セミナー)", "案内 (https://example.jp/セミナー)"),  # shown decoded
        ("[連絡](mailto:taro@example.jp)", "連絡 (taro@example.jp)"),
        ("<taro@example.jp>", "taro@example.jp"),
        ("[x](javascript:alert(1))", "[x](javascript:alert(1))"),
        ("[x](ftp://h/x)", "x"),
        ("[x](tg://resolve?domain=a)", "x"),
        ("![図](https://e.com/a.png)", "図 (https://e.com/a.png)"),
        ("- a\n- b", "・ a\n・ b"),
        ("1. a\n2. b", "1. a\n2. b"),
        ("- a\n  - b", "・ a\n  ・ b"),
        ("> 引用\n> 二行目", "> 引用\n> 二行目"),
        ("<b>そのまま</b> & <script>", "<b>そのまま</b> & <script>"),  # nothing is markup on LINE
        ("```\ncode  <x>\n```", "code  <x>"),
        ("", ""),
    ],
)
def test_plain_text(markdown: str, expected: str) -> None:
    assert render_plain_text(markdown) == expected


# --- split_telegram_html --------------------------------------------------------------------------------------


def _japanese_paragraph(length: int, seed: int) -> str:
    rng = random.Random(seed)
    sentences = ["本日はセミナーにご参加いただきありがとうございました。", "資料は後日お送りします。",
                 "ご質問があればお気軽にどうぞ！", "次回は十二月に開催予定です。", "AT&Tと<タグ>も文字です。"]
    text = ""
    while len(text) < length:
        text += rng.choice(sentences)
    return text[:length]


def _assert_telegram_parts(parts: list[str], source_html: str, limit: int) -> None:
    assert parts, "no parts"
    for part in parts:
        shown = visible(part)  # balanced, supported tags only, nothing cut inside a tag or entity
        assert 0 < len(shown) <= limit, len(shown)
        assert shown.strip()
    assert squeeze("".join(visible(part) for part in parts)) == squeeze(visible(source_html))


def test_short_message_is_one_unchanged_part() -> None:
    html = render_telegram_html("# T\n\n**b** & <x>")
    assert split_telegram_html(html) == [html]


def test_ten_thousand_character_japanese_body_splits_within_the_limit() -> None:
    paragraphs = []
    for index in range(40):
        para = _japanese_paragraph(230, index)
        if index % 3 == 0:
            para = f"**{para[:40]}**{para[40:]}"
        if index % 5 == 0:
            para = f"## 第{index}章\n\n{para} [詳細](https://example.jp/{index}?a=1&b=2)"
        if index % 7 == 0:
            para = f"> {para}"
        paragraphs.append(para)
    markdown = "\n\n".join(paragraphs)
    html = render_telegram_html(markdown)
    assert len(visible(html)) > 9_000

    parts = split_telegram_html(html)

    assert len(parts) >= 3
    _assert_telegram_parts(parts, html, TELEGRAM_TEXT_LIMIT)
    # Short paragraphs: every cut falls on a paragraph boundary, so each part is whole paragraphs of the source.
    assert "\n\n".join(parts) == html


def test_single_giant_paragraph_keeps_bold_on_both_sides_of_the_cut() -> None:
    paragraph = _japanese_paragraph(9_000, 1)
    markdown = paragraph[:3_000] + "**" + paragraph[3_000:5_000] + "**" + paragraph[5_000:]
    html = render_telegram_html(markdown)

    parts = split_telegram_html(html)

    assert len(parts) == 3
    _assert_telegram_parts(parts, html, TELEGRAM_TEXT_LIMIT)
    assert parts[0].endswith("</b>") and "<b>" in parts[0]
    assert parts[1].startswith("<b>") and "</b>" in parts[1]
    # The bold text is exactly the source's bold text, split across two messages.
    bold = "".join(re.findall(r"<b>(.*?)</b>", parts[0] + parts[1], re.DOTALL))
    assert visible(bold) == visible(render_telegram_html(paragraph[3_000:5_000]))
    # No sentence is cut: the first two parts end after a sentence end.
    assert visible(parts[0]).endswith(("。", "！"))
    assert visible(parts[1]).endswith(("。", "！"))


def test_a_cut_without_any_break_never_lands_inside_an_entity() -> None:
    html = render_telegram_html("&<>" * 3_000)  # 9,000 visible characters, every one an entity
    parts = split_telegram_html(html)
    assert [len(visible(part)) for part in parts] == [4096, 4096, 808]
    _assert_telegram_parts(parts, html, TELEGRAM_TEXT_LIMIT)


def test_link_spanning_a_cut_is_reopened_with_its_href() -> None:
    html = render_telegram_html(f"[{'あ' * 5_000}](https://example.jp/?a=1&b=2)")
    parts = split_telegram_html(html)
    assert len(parts) == 2
    _assert_telegram_parts(parts, html, TELEGRAM_TEXT_LIMIT)
    for part in parts:
        assert part.startswith('<a href="https://example.jp/?a=1&amp;b=2">') and part.endswith("</a>")


def test_pre_with_language_spanning_a_cut_is_reopened_whole() -> None:
    code = "\n".join(f"print({n})  # {'x' * 30}" for n in range(300))
    html = render_telegram_html(f"```python\n{code}\n```")
    parts = split_telegram_html(html, limit=2_000)
    assert len(parts) >= 5
    _assert_telegram_parts(parts, html, 2_000)
    for part in parts:
        assert part.startswith('<pre><code class="language-python">print(')
        assert part.endswith("</code></pre>")


def test_lines_are_preferred_to_characters_in_a_long_paragraph() -> None:
    lines = [f"{n:04d}行目です" + "あ" * 40 for n in range(200)]  # one paragraph of soft-broken lines
    html = render_telegram_html("\n".join(lines))
    parts = split_telegram_html(html, limit=1_000)
    _assert_telegram_parts(parts, html, 1_000)
    assert "\n".join(parts) == html  # whole lines only


def test_spaces_are_preferred_to_characters_in_english() -> None:
    words = [f"word{n}" for n in range(2_000)]
    html = render_telegram_html(" ".join(words))
    parts = split_telegram_html(html, limit=500)
    _assert_telegram_parts(parts, html, 500)
    assert " ".join(parts) == html  # whole words only
    assert all(len(part) > 250 for part in parts[:-1])  # and no slivers


def test_short_first_paragraph_is_packed_with_the_next() -> None:
    html = render_telegram_html("はじめに\n\n" + _japanese_paragraph(6_000, 2))
    parts = split_telegram_html(html)
    assert len(parts) == 2
    assert parts[0].startswith("はじめに\n\n")


def test_emoji_clusters_are_not_split_by_a_hard_cut() -> None:
    family = "👨\u200d👩\u200d👧"
    html = render_telegram_html("xy" + family * 1_000)  # 5 code points per family: 2 + 5 * 818 = 4092, so a cut
    parts = split_telegram_html(html)  # at exactly 4096 would fall inside the 819th family
    _assert_telegram_parts(parts, html, TELEGRAM_TEXT_LIMIT)
    assert parts[0].startswith("xy")
    assert parts[0][2:].replace(family, "") == ""
    assert parts[1].replace(family, "") == ""


@pytest.mark.parametrize("limit", [0, -1])
def test_limit_below_one_is_rejected(limit: int) -> None:
    with pytest.raises(ValueError):
        split_telegram_html("abc", limit=limit)
    with pytest.raises(ValueError):
        split_line_text("abc", limit_utf16=limit)


def test_random_documents_split_into_valid_parts_at_many_limits() -> None:
    rng = random.Random(20261201)
    pieces = ["あ", "い", "。", " ", "\n", "\n\n", "**太字**", "*斜体*", "`コード`", "&", "<", ">",
              "[リンク](https://e.jp/?a=1&b=2)", "😀", "👍🏽", "🇯🇵", "が", "\n- 項目", "\n> 引用", "\n\n# 見出し\n\n"]
    for _ in range(60):  # bounded
        markdown = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 400)))
        html = render_telegram_html(markdown)
        if not visible(html).strip():
            continue
        limit = rng.choice([1, 2, 3, 7, 16, 50, 200])
        parts = split_telegram_html(html, limit=limit)
        _assert_telegram_parts(parts, html, limit)


# --- split_line_text ------------------------------------------------------------------------------------------


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def test_utf16_length_counts_astral_characters_twice() -> None:
    assert utf16_length("aあ😀") == 4
    assert utf16_length("👨\u200d👩\u200d👧") == 8


def test_line_split_with_emoji_never_splits_a_pair_and_stays_within_5000_units() -> None:
    text = "a" + "😀" * 3_000  # 6,001 UTF-16 units; a cut at exactly 5,000 would fall inside an emoji
    parts = split_line_text(text)
    assert [_utf16(part) for part in parts] == [4_999, 1_002]
    assert "".join(parts) == text
    for part in parts:
        part.encode("utf-16-le")  # raises on a lone surrogate


def test_line_split_never_splits_a_surrogate_pair_held_as_code_points() -> None:
    # Text decoded with 'surrogatepass' can hold a pair as two code points; they still travel together.
    pair = "\ud83d\ude00"
    text = "a" + pair * 3_000
    parts = split_line_text(text)
    assert "".join(parts) == text
    for part in parts:
        assert _utf16(part) <= LINE_TEXT_LIMIT_UTF16
        assert not part.endswith("\ud83d") and not part.startswith("\ude00")


def test_line_split_keeps_zwj_sequences_and_flags_whole() -> None:
    for cluster in ["👨\u200d👩\u200d👧", "🇯🇵", "👍🏽", "❤\ufe0f"]:
        text = "a" + cluster * 2_500
        parts = split_line_text(text)
        assert "".join(parts) == text
        assert len(parts) >= 2
        assert parts[0][1:].replace(cluster, "") == ""
        for part in parts[1:]:
            assert part.replace(cluster, "") == "", cluster
        assert all(_utf16(part) <= LINE_TEXT_LIMIT_UTF16 for part in parts)


def test_line_split_prefers_paragraphs_then_lines() -> None:
    paragraphs = [_japanese_paragraph(900, n) for n in range(20)]
    text = "\n\n".join(paragraphs)
    parts = split_line_text(text)
    assert all(_utf16(part) <= LINE_TEXT_LIMIT_UTF16 for part in parts)
    assert "\n\n".join(parts) == text  # cut only at blank lines

    lines = "\n".join(f"{n}行目" + "い" * 60 for n in range(300))
    parts = split_line_text(lines, limit_utf16=1_000)
    assert "\n".join(parts) == lines


def test_line_split_short_text_is_one_part() -> None:
    assert split_line_text("こんにちは 😀") == ["こんにちは 😀"]
    assert split_line_text("") == []
    assert split_line_text(" \n\n ") == []


def test_line_split_random_texts() -> None:
    rng = random.Random(5000)
    pieces = ["あ", "a", " ", "\n", "\n\n", "。", "😀", "👨\u200d👩\u200d👧", "🇯🇵", "が", "ｶﾞ", "\u3000"]
    for _ in range(60):  # bounded
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 500)))
        limit = rng.choice([2, 3, 8, 20, 100])
        parts = split_line_text(text, limit_utf16=limit)
        assert all(0 < _utf16(part) <= limit for part in parts)
        assert squeeze("".join(parts)) == squeeze(text)


# --- issue_parts ----------------------------------------------------------------------------------------------

FOOTER = "配信停止は「解除」と送ってください。"


def test_telegram_issue_has_bold_title_body_and_footer_last() -> None:
    parts = issue_parts("telegram", "12月号 <特集>", "本文 **重要** & [案内](https://e.jp)", FOOTER)
    assert parts == [
        "<b>12月号 &lt;特集&gt;</b>\n\n本文 <b>重要</b> &amp; <a href=\"https://e.jp\">案内</a>\n\n" + FOOTER
    ]
    check_telegram_html(parts[0])


def test_line_issue_has_bracketed_title_body_and_footer_last() -> None:
    parts = issue_parts("line", "12月号", "# 見出し\n\n本文 **重要**", FOOTER)
    assert parts == ["【12月号】\n\n■ 見出し\n\n本文 重要\n\n" + FOOTER]


def test_footer_is_escaped_for_telegram() -> None:
    parts = issue_parts("telegram", "T", "body", "stop: send <解除> & done")
    assert parts[-1].endswith("stop: send &lt;解除&gt; &amp; done")


@pytest.mark.parametrize("channel", ["telegram", "line"])
def test_long_issue_is_split_with_footer_as_last_line_of_last_part(channel: str) -> None:
    body = "\n\n".join(_japanese_paragraph(700, n) for n in range(40))  # ~28,000 characters
    parts = issue_parts(channel, "特別号", body, FOOTER)  # type: ignore[arg-type]
    if channel == "telegram":
        assert len(parts) >= 7
        assert parts[0].startswith("<b>特別号</b>\n\n")
        shown = [visible(part) for part in parts]
        assert all(len(text) <= TELEGRAM_TEXT_LIMIT for text in shown)
    else:
        assert len(parts) >= 6  # more than one LINE request's worth: all are returned, in order
        assert parts[0].startswith("【特別号】\n\n")
        shown = parts
        assert all(_utf16(text) <= LINE_TEXT_LIMIT_UTF16 for text in shown)
    assert shown[-1].split("\n")[-1] == FOOTER
    assert FOOTER not in "".join(shown[:-1])
    title = "特別号" if channel == "telegram" else "【特別号】"
    assert squeeze("".join(shown)) == squeeze(title + body + FOOTER)


@pytest.mark.parametrize("channel", ["telegram", "line"])
def test_empty_body_gives_title_and_footer(channel: str) -> None:
    parts = issue_parts(channel, "お知らせ", "", FOOTER)  # type: ignore[arg-type]
    assert len(parts) == 1
    assert parts[0].endswith("\n\n" + FOOTER)


def test_unknown_channel_is_rejected() -> None:
    with pytest.raises(ValueError):
        issue_parts("email", "T", "b", "f")  # type: ignore[arg-type]


def test_emphasis_next_to_japanese_punctuation_is_bold():
    # CommonMark alone leaves these as literal asterisks; Japanese authors write them all the time.
    assert render_telegram_html("これは**「重要」**です") == "これは<b>「重要」</b>です"
    assert render_plain_text("これは**「重要」**です") == "これは「重要」です"
