"""Telegram message formatting (text + entities) -> our Markdown, for an issue body an admin writes in Telegram.

A Telegram message carries plain ``text`` and a list of entities (Bot API MessageEntity: ``type``, ``offset`` and
``length`` in UTF-16 code units, ``url`` for ``text_link``, ``language`` for ``pre``). Entities may nest but never
overlap partially (Bot API "Formatting options"). PTB's ``Message.text_markdown_v2`` is Telegram's MarkdownV2, a
different dialect with its own escaping, so it is not used: this module writes the CommonMark that core.render reads.

Mapping: ``bold`` -> ``**x**``, ``italic`` -> ``*x*``, ``text_link`` -> ``[x](url)``, ``code`` -> `` `x` ``, ``pre``
-> a fenced code block, ``blockquote``/``expandable_blockquote`` -> ``> `` lines. Underline, strikethrough, spoiler
and the automatic entities (``url``, ``mention``, ``hashtag`` …) have no counterpart in our renderings and stay plain
text (a bare URL is still shown as the URL). Spaces at the edges of an emphasis move outside its markers (CommonMark
does not close ``**太字 **``). Text outside entities is kept as typed, so Markdown typed by hand (``- 項目``) works as
it does on LINE, where text has no entities at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_EMPHASIS = {"bold": "**", "italic": "*"}
_QUOTES = frozenset({"blockquote", "expandable_blockquote"})


@dataclass(frozen=True)
class _Span:
    start: int  # Python string indices
    end: int
    kind: str
    url: str | None
    language: str | None


def _python_index(text: str) -> list[int]:
    """``index[u]`` = the Python index of UTF-16 code unit ``u`` of ``text`` (and ``index[len] = len(text)``)."""
    index: list[int] = []
    for position, char in enumerate(text):
        index.extend([position] * (2 if ord(char) > 0xFFFF else 1))
    index.append(len(text))
    return index


def to_markdown(text: str, entities: Sequence[Any] | None) -> str:
    """``text`` with ``entities`` (PTB ``MessageEntity`` objects or Bot API dicts) as CommonMark.

    Entities out of range are ignored; the text itself is never dropped or reordered.
    """
    if not entities:
        return text
    index = _python_index(text)
    units = len(index) - 1
    spans = []
    for entity in entities:
        kind, offset, length = _field(entity, "type"), int(_field(entity, "offset") or 0), int(_field(entity, "length") or 0)
        if length <= 0 or offset < 0 or offset + length > units:
            continue
        spans.append(_Span(index[offset], index[offset + length], str(getattr(kind, "value", kind)),
                           _field(entity, "url"), _field(entity, "language")))
    spans.sort(key=lambda s: (s.start, -s.end))
    return _render(text, 0, len(text), spans)


def _field(entity: Any, name: str) -> Any:
    return entity.get(name) if isinstance(entity, dict) else getattr(entity, name, None)


def _render(text: str, start: int, end: int, spans: list[_Span]) -> str:
    """The Markdown of ``text[start:end]`` with ``spans`` (all inside it, sorted by start, longest first)."""
    out: list[str] = []
    position, k = start, 0
    while k < len(spans):  # bounded: k advances past every span exactly once
        span = spans[k]
        children: list[_Span] = []
        k += 1
        while k < len(spans) and spans[k].start < span.end:
            if spans[k].end <= span.end:  # nested (Telegram never overlaps partially; skip anything odd)
                children.append(spans[k])
            k += 1
        if span.start < position:
            continue
        out.append(text[position:span.start])
        out.append(_wrap(text, span, children))
        position = span.end
    out.append(text[position:end])
    return "".join(out)


def _wrap(text: str, span: _Span, children: list[_Span]) -> str:
    raw = text[span.start:span.end]
    if span.kind == "code":
        fence = "``" if "`" in raw else "`"
        return f"{fence} {raw} {fence}" if fence == "``" else f"`{raw}`"
    if span.kind == "pre":
        ticks = "````" if "```" in raw else "```"
        return f"\n{ticks}{span.language or ''}\n{raw.strip(chr(10))}\n{ticks}\n"
    inner = _render(text, span.start, span.end, children)
    if span.kind in _EMPHASIS or span.kind == "text_link":
        lead = inner[: len(inner) - len(inner.lstrip())]
        trail = inner[len(inner.rstrip()):]
        core = inner.strip()
        if not core:
            return inner
        if span.kind == "text_link":
            if not span.url:
                return inner
            label = core.replace("[", "\\[").replace("]", "\\]")
            url = span.url.replace(" ", "%20").replace("(", "%28").replace(")", "%29")
            return f"{lead}[{label}]({url}){trail}"
        marker = _EMPHASIS[span.kind]
        return f"{lead}{marker}{core}{marker}{trail}"
    if span.kind in _QUOTES:
        return "\n".join(f"> {line}" for line in inner.split("\n"))
    return inner
