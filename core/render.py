"""An issue's Markdown -> the chat text each channel sends, split to the channel's size limit.

Markdown is parsed by markdown-it-py's CommonMark preset with raw HTML *disabled*, so an author's ``<b>`` or
``<script>`` reaches the renderers as literal text and is escaped, never passed through. Three renderers walk the same
syntax tree:

- :func:`render_telegram_html`: Telegram's HTML subset (Bot API "Formatting options", HTML style,
  https://core.telegram.org/bots/api#html-style). Only ``<b> <i> <code> <pre> <a href> <blockquote>`` are produced.
  Every piece of author text goes through ``html.escape(quote=False)`` (``&`` ``<`` ``>``: the API requires exactly
  these to be escaped outside tags) and attribute values through ``html.escape(quote=True)`` (``&quot;`` is one of
  the four named entities Telegram accepts; ``'`` becomes the numeric ``&#x27;``, and numeric entities are all
  accepted). Nesting follows the API's rules: "bold, italic ... can contain and can be part of any other entities,
  except pre and code", "blockquote ... can't be nested", "all other entities can't contain each other": so inline
  code inside a link and code blocks inside a quote are shown as plain text, and nested quotes are flattened into
  the outer one.
- :func:`render_plain_text`: plain text for LINE, whose text messages have no markup at all (also an email's
  text/plain part).
- :func:`render_email_html`: an HTML fragment for an email's text/html part (``core.mail`` wraps it in a template).

Only ``http``, ``https``, ``tg`` and ``mailto`` links become links (LINE: ``http``, ``https``, ``mailto``); any other
scheme or a relative link is rendered as its text. (markdown-it already refuses ``javascript:``, ``vbscript:``,
``file:`` and non-image ``data:`` destinations, leaving the source text as it was typed.)

Splitting: Telegram accepts at most 4,096 characters "after entities parsing" per message
(https://core.telegram.org/bots/api#sendmessage; TDLib checks ``utf8_length(text)``, i.e. Unicode code points, of
the text with tags removed and entities decoded). A LINE text message holds at most 5,000 characters counted in
UTF-16 code units (https://developers.line.biz/en/reference/messaging-api/#text-message; reference/line.md), and
one request carries at most 5 messages. Both splitters cut at paragraph boundaries (blank lines) first, then at line
breaks, then after a sentence end (。！？!?), then at a space, and only then between two characters, never inside
a tag, an entity, a surrogate pair or a grapheme cluster held together by a combining mark, variation selector,
ZWJ, skin-tone modifier or regional-indicator pair.

Pure module: standard library and markdown-it-py only, no I/O.
"""

from __future__ import annotations

import abc
import functools
import html
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple

from markdown_it import MarkdownIt
from mdit_py_cjk_friendly import cjk_friendly
from markdown_it.tree import SyntaxTreeNode

#: Telegram: characters (code points) of visible text per message (https://core.telegram.org/bots/api#sendmessage).
TELEGRAM_TEXT_LIMIT = 4096
#: Telegram: characters of a photo's caption after entity parsing (https://core.telegram.org/bots/api#sendphoto).
TELEGRAM_CAPTION_LIMIT = 1024
#: LINE: UTF-16 code units per text message (https://developers.line.biz/en/reference/messaging-api/#text-message).
LINE_TEXT_LIMIT_UTF16 = 5000
#: LINE: messages per reply/push/multicast request (reference/line.md). :func:`issue_parts` returns every part; the
#: caller sends them in groups of this size.
LINE_MESSAGES_PER_REQUEST = 5

_TELEGRAM_LINK_SCHEMES = frozenset({"http", "https", "tg", "mailto"})
# tg:// links mean nothing in LINE, so LINE shows only web and mail addresses.
_PLAIN_LINK_SCHEMES = frozenset({"http", "https", "mailto"})
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
# A code fence's language, passed to Telegram as <code class="language-...">; anything odder is dropped.
_LANGUAGE_RE = re.compile(r"[A-Za-z0-9_+#.-]{1,32}")
_RULE = "――――――――"


@functools.cache
def _markdown() -> MarkdownIt:
    """The shared parser, built on first use (nothing runs at import). ``html: False``: raw HTML stays text.

    ``cjk_friendly``: CommonMark's flanking rules reject emphasis next to full-width punctuation
    (``**「重要」**です``); the plugin applies the CJK-friendly amendment (github.com/tats-u/markdown-cjk-friendly).
    """
    return MarkdownIt("commonmark", {"html": False}).use(cjk_friendly)


def _scheme(url: str) -> str | None:
    """The lower-cased URL scheme, or None for a relative URL."""
    match = _SCHEME_RE.match(url)
    return match.group(1).lower() if match else None


def _plain(node: SyntaxTreeNode) -> str:
    """The text of an inline subtree without any formatting (link texts, image alt texts)."""
    if node.type in ("text", "code_inline", "html_inline"):
        return node.content
    if node.type in ("softbreak", "hardbreak"):
        return "\n"
    return "".join(_plain(child) for child in node.children)


@dataclass(frozen=True)
class _Context:
    """Where in the document a node sits, for the nesting rules."""

    in_link: bool = False
    in_quote: bool = False


class _Dialect(abc.ABC):
    """How one channel writes each construct. Subclasses: :class:`_TelegramHtml`, :class:`_PlainText`."""

    bullet = "• "
    pre_open: str | None = None  # how a preformatted block starts, when the dialect marks it up

    @abc.abstractmethod
    def escape(self, text: str) -> str:
        """Each dialect writes this construct its own way."""

    @abc.abstractmethod
    def strong(self, inner: str) -> str:
        """Each dialect writes this construct its own way."""

    @abc.abstractmethod
    def em(self, inner: str) -> str:
        """Each dialect writes this construct its own way."""

    @abc.abstractmethod
    def code_inline(self, content: str, ctx: _Context) -> str:
        """Each dialect writes this construct its own way."""

    @abc.abstractmethod
    def link(self, inner: str, text: str, href: str, ctx: _Context) -> str:
        """Each dialect writes this construct its own way."""

    @abc.abstractmethod
    def image(self, alt: str, src: str, ctx: _Context) -> str:
        """Each dialect writes this construct its own way."""

    @abc.abstractmethod
    def heading(self, inner: str) -> str:
        """Each dialect writes this construct its own way."""

    @abc.abstractmethod
    def blockquote(self, inner: str, ctx: _Context) -> str:
        """Each dialect writes this construct its own way."""

    @abc.abstractmethod
    def code_block(self, content: str, info: str, ctx: _Context) -> str:
        """Each dialect writes this construct its own way."""


class _TelegramHtml(_Dialect):
    bullet = "• "
    pre_open = "<pre"  # author text never holds it: every '<' of theirs is escaped

    def escape(self, text: str) -> str:
        return html.escape(text, quote=False)

    def strong(self, inner: str) -> str:
        return f"<b>{inner}</b>" if inner else ""

    def em(self, inner: str) -> str:
        return f"<i>{inner}</i>" if inner else ""

    def code_inline(self, content: str, ctx: _Context) -> str:
        # A link cannot contain a code entity: keep the link, show the code as text.
        if ctx.in_link or not content:
            return self.escape(content)
        return f"<code>{self.escape(content)}</code>"

    def _anchor(self, inner: str, href: str) -> str:
        return f'<a href="{html.escape(href, quote=True)}">{inner or self.escape(href)}</a>'

    def link(self, inner: str, text: str, href: str, ctx: _Context) -> str:
        if ctx.in_link or _scheme(href) not in _TELEGRAM_LINK_SCHEMES:
            return inner
        return self._anchor(inner, href)

    def image(self, alt: str, src: str, ctx: _Context) -> str:
        # Chat text cannot embed an image: link to it, titled by its alt text.
        if ctx.in_link or _scheme(src) not in _TELEGRAM_LINK_SCHEMES:
            return self.escape(alt)
        return self._anchor(self.escape(alt), src)

    def heading(self, inner: str) -> str:
        return f"<b>{inner}</b>" if inner else ""

    def blockquote(self, inner: str, ctx: _Context) -> str:
        # Quotes cannot be nested: an inner quote's text simply joins the outer one.
        if ctx.in_quote or not inner:
            return inner
        return f"<blockquote>{inner}</blockquote>"

    def code_block(self, content: str, info: str, ctx: _Context) -> str:
        if not content:
            return ""
        if ctx.in_quote:  # pre cannot be part of a blockquote
            return self.escape(content)
        language = info.split()[0] if info.split() else ""
        if _LANGUAGE_RE.fullmatch(language):
            return f'<pre><code class="language-{language}">{self.escape(content)}</code></pre>'
        return f"<pre>{self.escape(content)}</pre>"


class _PlainText(_Dialect):
    bullet = "・ "

    def escape(self, text: str) -> str:
        return text

    def strong(self, inner: str) -> str:
        return inner

    def em(self, inner: str) -> str:
        return inner

    def code_inline(self, content: str, ctx: _Context) -> str:
        return content

    def _shown(self, text: str, url: str) -> str:
        # Show addresses decoded (例え.jp, not xn--...; パス, not %E3...): LINE links them anyway.
        shown = _markdown().normalizeLinkText(url)
        if _scheme(url) == "mailto":
            shown = shown[len("mailto:") :]
        if not text or text == shown or text == url:
            return shown
        return f"{text} ({shown})"

    def link(self, inner: str, text: str, href: str, ctx: _Context) -> str:
        if ctx.in_link or _scheme(href) not in _PLAIN_LINK_SCHEMES:
            return inner
        return self._shown(inner, href)

    def image(self, alt: str, src: str, ctx: _Context) -> str:
        if ctx.in_link or _scheme(src) not in _PLAIN_LINK_SCHEMES:
            return alt
        return self._shown(alt, src)

    def heading(self, inner: str) -> str:
        return f"■ {inner}" if inner else ""

    def blockquote(self, inner: str, ctx: _Context) -> str:
        return "\n".join(f"> {line}" if line else ">" for line in inner.split("\n"))

    def code_block(self, content: str, info: str, ctx: _Context) -> str:
        return content


class _Renderer:
    """Walks markdown-it's syntax tree and asks a :class:`_Dialect` to write each node."""

    def __init__(self, dialect: _Dialect) -> None:
        self.d = dialect

    def document(self, markdown: str) -> str:
        root = SyntaxTreeNode(_markdown().parse(markdown))
        return self.blocks(root.children, _Context(), "\n\n").strip("\n")

    def blocks(self, nodes: Sequence[SyntaxTreeNode], ctx: _Context, separator: str) -> str:
        rendered = (self.block(node, ctx) for node in nodes)
        return separator.join(text for text in rendered if text)

    def block(self, node: SyntaxTreeNode, ctx: _Context) -> str:
        d = self.d
        match node.type:
            case "paragraph":
                return self.inlines(node.children, ctx)
            case "heading":
                return d.heading(self.inlines(node.children, ctx))
            case "bullet_list" | "ordered_list":
                return self.list_block(node, ctx)
            case "blockquote":
                return d.blockquote(self.blocks(node.children, replace(ctx, in_quote=True), "\n\n"), ctx)
            case "fence" | "code_block":
                return d.code_block(node.content.rstrip("\n"), node.info or "", ctx)
            case "hr":
                return _RULE
            case "html_block":  # only with html enabled; kept so raw HTML can never pass through
                return d.escape(node.content.rstrip("\n"))
            case _:
                if node.children:
                    return self.blocks(node.children, ctx, "\n\n")
                return d.escape(node.content)

    def list_block(self, node: SyntaxTreeNode, ctx: _Context) -> str:
        start = int(node.attrs.get("start", 1)) if node.type == "ordered_list" else 1
        lines: list[str] = []
        for number, item in enumerate(node.children, start):
            marker = f"{number}. " if node.type == "ordered_list" else self.d.bullet
            # Items are compact (one line each, blocks inside an item on following lines): chat is read on phones.
            body = self.blocks(item.children, ctx, "\n")
            indent = " " * len(marker) if node.type == "ordered_list" else "  "
            first, *rest = body.split("\n") if body else [""]
            lines.append(marker + first)
            lines.extend(self.indent(rest, indent))
        return "\n".join(lines)

    def indent(self, lines: Sequence[str], indent: str) -> list[str]:
        """Indent continuation lines of a list item, except empty lines and lines inside a ``<pre>`` (Telegram),
        whose text must stay as the author wrote it."""
        out: list[str] = []
        in_pre = False
        for line in lines:
            out.append(indent + line if line and not in_pre else line)
            if self.d.pre_open:
                opened, closed = line.rfind(self.d.pre_open), line.rfind("</pre>")
                in_pre = opened > closed if (opened >= 0 or closed >= 0) else in_pre
        return out

    def inlines(self, nodes: Sequence[SyntaxTreeNode], ctx: _Context) -> str:
        return "".join(self.inline(node, ctx) for node in nodes)

    def inline(self, node: SyntaxTreeNode, ctx: _Context) -> str:
        d = self.d
        match node.type:
            case "inline":
                return self.inlines(node.children, ctx)
            case "text" | "html_inline":
                return d.escape(node.content)
            case "softbreak" | "hardbreak":
                # A soft break is a line break in chat: Japanese authors break lines deliberately, and a space
                # between two Japanese lines would be wrong.
                return "\n"
            case "strong":
                return d.strong(self.inlines(node.children, ctx))
            case "em":
                return d.em(self.inlines(node.children, ctx))
            case "code_inline":
                return d.code_inline(node.content, ctx)
            case "link":
                inner = self.inlines(node.children, replace(ctx, in_link=True))
                return d.link(inner, _plain(node), str(node.attrs.get("href", "")), ctx)
            case "image":
                return d.image(_plain(node), str(node.attrs.get("src", "")), ctx)
            case _:
                if node.children:
                    return self.inlines(node.children, ctx)
                return d.escape(node.content)


def render_telegram_html(markdown: str) -> str:
    """Render an issue body (CommonMark) as Telegram HTML (``parse_mode="HTML"``).

    Mapping: headings -> ``<b>title</b>`` as their own block; ``**bold**`` -> ``<b>``; ``*em*`` -> ``<i>``;
    `` `code` `` -> ``<code>``; fenced/indented code -> ``<pre>`` (``<pre><code class="language-x">`` when the fence
    names a language); links -> ``<a href="...">`` for http/https/tg/mailto only, other schemes as their text;
    images -> a link to the image titled by its alt text; bullet lists -> lines starting ``• ``, ordered lists ->
    ``1. `` (from the list's start number), nested items indented; block quotes -> ``<blockquote>``; thematic breaks
    -> a line of ``―``; blocks separated by one blank line; soft and hard line breaks -> a newline. Raw HTML in the
    Markdown is shown as escaped text. Returns ``""`` for an empty body. Never raises.

    Source: https://core.telegram.org/bots/api#formatting-options (HTML style and nesting rules).
    """
    return _Renderer(_TelegramHtml()).document(markdown)


def render_plain_text(markdown: str) -> str:
    """Render an issue body (CommonMark) as plain text for LINE (no markup is interpreted there).

    Mapping: headings -> ``■ title`` lines; bold/italic/code -> their text; links -> ``text (url)``, or just the url
    when the text is the url (mailto: shows the address), only for http/https/mailto (others: the text); images ->
    ``alt (url)``; bullet lists -> ``・ `` lines, ordered -> ``1. ``; quotes -> lines prefixed ``> ``; code blocks ->
    their text; blocks separated by one blank line. Returns ``""`` for an empty body. Never raises.
    """
    return _Renderer(_PlainText()).document(markdown)


# ---------------------------------------------------------------------------------------------------------------
# Splitting


class _Atom(NamedTuple):
    """An indivisible piece of a message: one character (or surrogate pair), one entity, or one tag."""

    text: str
    weight: int  # how much of the limit it uses: 0 for tags
    tag: str | None = None  # tag name for tags
    closing: bool = False  # True for an end tag


_TAG_OR_ENTITY_RE = re.compile(
    r"<(/?)([A-Za-z][A-Za-z0-9-]*)[^<>]*>"  # a tag (attribute values never hold '<' or '>': they are escaped)
    r"|&(?:#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});"  # a character reference
    r"|[\ud800-\udbff][\udc00-\udfff]"  # a surrogate pair held as two code points (from surrogatepass decoding)
    r"|.",
    re.DOTALL,
)

_SENTENCE_ENDS = frozenset("。．！？!?")
# Closing marks that belong to the sentence before them: cut after them, not before.
_CLOSERS = frozenset("」』）)】〕〉》”’\"'。．！？!?…")
_SPACES = frozenset(" \u3000\t")


def _html_atoms(text: str) -> list[_Atom]:
    atoms: list[_Atom] = []
    for match in _TAG_OR_ENTITY_RE.finditer(text):
        piece = match.group(0)
        if match.group(2) is not None:
            atoms.append(_Atom(piece, 0, match.group(2).lower(), match.group(1) == "/"))
        elif piece.startswith("&") and len(piece) > 1:
            atoms.append(_Atom(piece, len(html.unescape(piece))))
        else:
            atoms.append(_Atom(piece, len(piece)))
    return atoms


def _utf16_units(piece: str) -> int:
    return sum(2 if ord(ch) > 0xFFFF else 1 for ch in piece)


def _text_atoms(text: str) -> list[_Atom]:
    pairs = re.finditer(r"[\ud800-\udbff][\udc00-\udfff]|.", text, re.DOTALL)
    return [_Atom(m.group(0), _utf16_units(m.group(0))) for m in pairs]


def _is_joining(ch: str) -> bool:
    """True for a character that attaches to the one before it (so a cut must not precede it)."""
    code = ord(ch)
    return (
        unicodedata.category(ch) in ("Mn", "Me", "Mc")  # combining marks; also VS1-16 (Mn), dakuten U+3099
        or code == 0x200D  # ZWJ
        or 0x1F3FB <= code <= 0x1F3FF  # skin-tone modifiers
        or 0xE0020 <= code <= 0xE007F  # emoji tag sequence characters
    )


def _is_regional_indicator(piece: str) -> bool:
    return len(piece) == 1 and 0x1F1E6 <= ord(piece) <= 0x1F1FF


def _inside_cluster(atoms: Sequence[_Atom], cut: int) -> bool:
    """True when cutting before ``atoms[cut]`` would separate a grapheme cluster's parts (approximation of UAX #29)."""
    before, after = atoms[cut - 1].text, atoms[cut].text
    if atoms[cut - 1].tag is not None or atoms[cut].tag is not None:
        return False
    if before == "\u200d" or (len(after) == 1 and _is_joining(after)):
        return True
    if _is_regional_indicator(before) and _is_regional_indicator(after):
        run = 0  # flags are pairs of regional indicators: cut only after an even count
        while cut - 1 - run >= 0 and _is_regional_indicator(atoms[cut - 1 - run].text):
            run += 1
        return run % 2 == 1
    return False


def _is_newline(atoms: Sequence[_Atom], index: int) -> bool:
    return 0 <= index < len(atoms) and atoms[index].text == "\n"


def _choose_cut(atoms: Sequence[_Atom], start: int, end: int, limit: int) -> tuple[int, int]:
    """Where to end the part that starts at ``start`` when ``atoms[start:end]`` is the most that fits.

    Returns ``(cut, resume)``: the part is ``atoms[start:cut]``; the next part begins at ``resume`` (the atoms in
    between are the separator, newlines or a space, and are dropped). Preference: blank line > line break > after a
    sentence end > space, taking the latest of each kind, as long as the part keeps at least half the limit (so
    that a short first paragraph does not become a message of its own while a long one is cut mid-way anyway).
    Without such a cut: the latest line break however early, else the latest boundary that does not split a
    grapheme cluster.
    """
    best: dict[str, tuple[int, int, int]] = {}  # kind -> (cut, resume, weight of the part)
    used = sum(atom.weight for atom in atoms[start:end])
    # Walk the boundaries from the right: the first hit of each kind is the latest, i.e. the fullest part.
    for cut in range(end, start, -1):
        if cut < end:
            used -= atoms[cut].weight  # ``used`` is now the weight of atoms[start:cut]
        if "paragraph" in best or (used * 2 < limit and "line" in best):
            break  # nothing better can come further left
        if _is_newline(atoms, cut) and not _is_newline(atoms, cut - 1):
            # Cut at the first newline of a run and drop the whole run: no part starts or ends with a blank line.
            resume = cut
            while _is_newline(atoms, resume):
                resume += 1
            if resume - cut >= 2:
                best.setdefault("paragraph", (cut, resume, used))
            best.setdefault("line", (cut, resume, used))
        if atoms[cut - 1].text in _SENTENCE_ENDS and atoms[cut].text not in _CLOSERS:
            best.setdefault("sentence", (cut, cut, used))
        if atoms[cut].text in _SPACES:
            best.setdefault("space", (cut, cut + 1, used))
    for kind in ("paragraph", "line", "sentence", "space"):
        if kind in best and best[kind][2] * 2 >= limit:
            return best[kind][:2]
    if "line" in best:
        return best["line"][:2]
    cut = end
    while cut > start + 1 and _inside_cluster(atoms, cut):
        cut -= 1
    if cut == start + 1 and _inside_cluster(atoms, cut):
        cut = end  # one cluster longer than the limit: cut it anyway rather than exceed the limit
    return cut, cut


def _split_atoms(atoms: Sequence[_Atom], limit: int, is_blank: Callable[[str], bool],
                 first_limit: int | None = None) -> list[str]:
    """Cut ``atoms`` into parts whose weights stay within ``limit`` (the first part within ``first_limit`` when
    given); tags open at a cut are closed at the end of the part and reopened (with their attributes) at the start
    of the next, so every part is balanced by itself. Parts whose text ``is_blank`` are dropped."""
    if limit < 1 or (first_limit is not None and first_limit < 1):
        raise ValueError(f"limits must be at least 1, got {limit} and {first_limit}")
    parts: list[str] = []
    open_tags: list[_Atom] = []

    def advance(indices: range) -> str:
        """Append ``atoms[indices]`` to the tag stack bookkeeping and return their text."""
        out = []
        for index in indices:
            atom = atoms[index]
            out.append(atom.text)
            if atom.tag is None:
                continue
            if not atom.closing:
                open_tags.append(atom)
                continue
            for depth in range(len(open_tags) - 1, -1, -1):
                if open_tags[depth].tag == atom.tag:
                    del open_tags[depth:]
                    break
        return "".join(out)

    start, total = 0, len(atoms)
    while start < total:
        part_limit = first_limit if first_limit is not None and not parts else limit
        end, used = start, 0
        while end < total and used + atoms[end].weight <= part_limit:
            used += atoms[end].weight
            end += 1
        if end == start:  # a single atom heavier than the limit (limit 1 and a surrogate pair): send it alone
            end += 1
        if end == total:
            cut, resume = total, total
        else:
            cut, resume = _choose_cut(atoms, start, end, part_limit)
            has_separator = resume > cut
            # End tags right at the cut belong to this part (they weigh nothing); start tags right before the cut
            # belong to the next one (here they would only open an empty element).
            if not has_separator:
                while cut < total and atoms[cut].tag is not None and atoms[cut].closing:
                    cut += 1
            while cut - 1 > start and atoms[cut - 1].tag is not None and not atoms[cut - 1].closing:
                cut -= 1
            if not has_separator:
                resume = cut
        prefix = "".join(tag.text for tag in open_tags)
        body = advance(range(start, cut))
        suffix = "".join(f"</{tag.tag}>" for tag in reversed(open_tags))
        part = prefix + body + suffix
        if not is_blank(part):
            parts.append(part)
        advance(range(cut, resume))  # the separator (and any start tags moved past the cut)
        start = max(resume, start + 1)
    return parts


def _visible_telegram_text(telegram_html: str) -> str:
    """The text Telegram shows for an HTML message: tags removed, entities decoded."""
    return "".join(
        html.unescape(atom.text) if atom.weight and atom.text.startswith("&") else atom.text
        for atom in _html_atoms(telegram_html)
        if atom.tag is None
    )


def split_telegram_html(
    text: str, limit: int = TELEGRAM_TEXT_LIMIT, *, first_limit: int | None = None
) -> list[str]:
    """Split Telegram HTML into messages of at most ``limit`` characters each, in order.

    ``limit`` counts what Telegram counts: characters (Unicode code points) of the text *after entity parsing*, i.e.
    with tags removed and ``&lt;``/``&#x27;``-style entities decoded (Bot API sendMessage: "1-4096 characters after
    entities parsing", https://core.telegram.org/bots/api#sendmessage; TDLib compares ``utf8_length`` of that text
    with ``message_text_length_max``).

    Cuts at blank lines first, then line breaks, then after a sentence end, then at a space, then at a character
    boundary; never inside a tag, an entity or a grapheme cluster. The newline(s) or space at a cut are dropped (a
    message's leading/trailing whitespace is trimmed by Telegram anyway). A tag open across a cut is closed at the
    end of the part and reopened with the same attributes at the start of the next, so each part is valid on its
    own. Parts with no visible text are dropped. Input: HTML as produced by :func:`render_telegram_html` (text
    escaped, attribute values quoted and escaped). ``first_limit``: a smaller limit for the first part, e.g.
    :data:`TELEGRAM_CAPTION_LIMIT` when it is a photo's caption. Raises ValueError when a limit is below 1.
    """
    return _split_atoms(_html_atoms(text), limit, lambda part: not _visible_telegram_text(part).strip(),
                        first_limit)


def split_line_text(
    text: str, limit_utf16: int = LINE_TEXT_LIMIT_UTF16, *, first_limit: int | None = None
) -> list[str]:
    """Split plain text into LINE text messages of at most ``limit_utf16`` UTF-16 code units each, in order.

    LINE counts a text message's length in UTF-16 code units: a character outside the BMP (most emoji) counts 2
    (https://developers.line.biz/en/reference/messaging-api/#text-message; reference/line.md). Cuts at blank lines
    first, then line breaks, then after a sentence end, then at a space, then between characters; never between the
    two halves of a surrogate pair or inside a grapheme cluster (ZWJ emoji, flags, combining marks) unless one
    cluster alone exceeds the limit. The newline(s) or space at a cut are dropped; whitespace-only parts are
    dropped. ``first_limit``: a smaller limit (UTF-16 units) for the first part. Raises ValueError when a limit is
    below 1; with a limit of 1 an astral character (2 units) is sent alone rather than split.
    """
    return _split_atoms(_text_atoms(text), limit_utf16, lambda part: not part.strip(), first_limit)


def utf16_length(text: str) -> int:
    """Length of ``text`` in UTF-16 code units, the unit of LINE's text limit."""
    return _utf16_units(text)


def issue_parts(channel: Literal["telegram", "line"], title: str, body_markdown: str, footer: str) -> list[str]:
    """The messages that carry one issue on a chat channel, in sending order.

    ``title``: plain text, shown as a bold line (Telegram) or a ``【title】`` line (LINE). ``body_markdown``: the
    issue's CommonMark body. ``footer``: plain text (how to stop), placed as the last block; escaped for Telegram.
    The whole is split to the channel's limit: Telegram :data:`TELEGRAM_TEXT_LIMIT` characters (HTML; send with
    ``parse_mode="HTML"``), LINE :data:`LINE_TEXT_LIMIT_UTF16` UTF-16 code units (plain). All parts are returned;
    LINE takes at most :data:`LINE_MESSAGES_PER_REQUEST` messages per request, so the caller groups them in fives.
    Raises ValueError for an unknown channel.
    """
    if channel == "telegram":
        blocks = [
            f"<b>{html.escape(title.strip(), quote=False)}</b>" if title.strip() else "",
            render_telegram_html(body_markdown),
            html.escape(footer.strip(), quote=False),
        ]
        return split_telegram_html("\n\n".join(block for block in blocks if block))
    if channel == "line":
        blocks = [f"【{title.strip()}】" if title.strip() else "", render_plain_text(body_markdown), footer.strip()]
        return split_line_text("\n\n".join(block for block in blocks if block))
    raise ValueError(f"unknown chat channel: {channel!r}")


# ---------------------------------------------------------------------------------------------------------------
# Email HTML


class _EmailHtml:
    """Walks markdown-it's syntax tree (the same parser as the chat renderers) and writes a small HTML fragment for
    the text/html part of an email. Everything the author typed is escaped; only the tags listed in
    :func:`render_email_html` are produced."""

    def document(self, markdown: str) -> str:
        root = SyntaxTreeNode(_markdown().parse(markdown))
        return self.blocks(root.children)

    def blocks(self, nodes: Sequence[SyntaxTreeNode]) -> str:
        return "\n".join(text for text in (self.block(node) for node in nodes) if text)

    def block(self, node: SyntaxTreeNode) -> str:
        match node.type:
            case "paragraph":
                inner = self.inlines(node.children, in_link=False)
                # A tight list's paragraphs are hidden: the item holds the text directly.
                return inner if node.hidden else f"<p>{inner}</p>"
            case "heading":
                # The issue title is the message's <h1>: the body's headings start one level below.
                level = min(int(node.tag[1:]) + 1, 6) if node.tag[1:].isdigit() else 2
                return f"<h{level}>{self.inlines(node.children, in_link=False)}</h{level}>"
            case "bullet_list":
                return f"<ul>\n{self.items(node)}\n</ul>"
            case "ordered_list":
                start = int(node.attrs.get("start", 1))
                start_attr = f' start="{start}"' if start != 1 else ""
                return f"<ol{start_attr}>\n{self.items(node)}\n</ol>"
            case "blockquote":
                style = "margin:0 0 1em 0;padding:0 0 0 1em;border-left:3px solid #ccc;color:#555"
                return f'<blockquote style="{style}">\n{self.blocks(node.children)}\n</blockquote>'
            case "fence" | "code_block":
                content = html.escape(node.content.rstrip("\n"), quote=False)
                style = "white-space:pre-wrap;background:#f5f5f5;padding:0.5em;overflow-x:auto"
                return f'<pre style="{style}"><code>{content}</code></pre>'
            case "hr":
                return "<hr>"
            case "html_block":  # only with html enabled; kept so raw HTML can never pass through
                return f"<p>{html.escape(node.content.rstrip(chr(10)), quote=False)}</p>"
            case _:
                if node.children:
                    return self.blocks(node.children)
                return html.escape(node.content, quote=False)

    def items(self, node: SyntaxTreeNode) -> str:
        return "\n".join(f"<li>{self.blocks(item.children)}</li>" for item in node.children)

    def inlines(self, nodes: Sequence[SyntaxTreeNode], in_link: bool) -> str:
        return "".join(self.inline(node, in_link) for node in nodes)

    def inline(self, node: SyntaxTreeNode, in_link: bool) -> str:
        match node.type:
            case "inline":
                return self.inlines(node.children, in_link)
            case "text" | "html_inline":
                return html.escape(node.content, quote=False)
            case "softbreak" | "hardbreak":
                # Japanese authors break lines deliberately (as in the chat renderers); a space would be wrong.
                return "<br>\n"
            case "strong":
                inner = self.inlines(node.children, in_link)
                return f"<strong>{inner}</strong>" if inner else ""
            case "em":
                inner = self.inlines(node.children, in_link)
                return f"<em>{inner}</em>" if inner else ""
            case "code_inline":
                return f"<code>{html.escape(node.content, quote=False)}</code>" if node.content else ""
            case "link":
                inner = self.inlines(node.children, in_link=True)
                href = str(node.attrs.get("href", ""))
                if in_link or _scheme(href) not in _PLAIN_LINK_SCHEMES:
                    return inner
                return f'<a href="{html.escape(href, quote=True)}">{inner or html.escape(href, quote=False)}</a>'
            case "image":
                # Remote images are blocked by most mail clients and can track readers: link to the image instead.
                alt, src = _plain(node), str(node.attrs.get("src", ""))
                if in_link or _scheme(src) not in _PLAIN_LINK_SCHEMES:
                    return html.escape(alt, quote=False)
                shown = html.escape(alt or src, quote=False)
                return f'<a href="{html.escape(src, quote=True)}">{shown}</a>'
            case _:
                if node.children:
                    return self.inlines(node.children, in_link)
                return html.escape(node.content, quote=False)


def render_email_html(markdown: str) -> str:
    """Render an issue body (CommonMark, CJK-friendly emphasis) as an HTML fragment for an email's text/html part.

    Mapping: headings -> ``<h2>``..``<h6>`` (one level below the Markdown level: the issue title is the ``<h1>``);
    paragraphs -> ``<p>``; ``**bold**`` -> ``<strong>``; ``*em*`` -> ``<em>``; `` `code` `` -> ``<code>``;
    fenced/indented code -> ``<pre><code>``; links -> ``<a href>`` for http/https/mailto only (other schemes and
    relative links: their text); images -> a link to the image titled by its alt text (never embedded); lists ->
    ``<ul>``/``<ol start>`` with ``<li>``; block quotes -> ``<blockquote>``; thematic breaks -> ``<hr>``; soft and
    hard line breaks -> ``<br>``. Raw HTML in the Markdown is escaped and shown as text; text is escaped with
    ``html.escape(quote=False)`` and attribute values with ``quote=True``. Returns ``""`` for an empty body. Pure
    string (no ``Markup``): mark it safe where a template embeds it. Never raises.
    """
    return _EmailHtml().document(markdown)
