"""Telegram Bot API text formatting, as the Bot API server parses it (used by the Telegram emulator).

``parse_text(text, parse_mode)`` turns the ``text`` a bot sends with ``parse_mode`` ``HTML``, ``MarkdownV2`` or
``Markdown`` into what the reader sees: plain text plus ``MessageEntity`` dicts whose ``offset``/``length`` are in
UTF-16 code units. Malformed markup raises ``EntityParseError`` whose message is what the Bot API puts after
``"Bad Request: can't parse entities: "``.

The rules follow tdlib (``td/telegram/MessageEntity.cpp``: ``parse_html``, ``parse_markdown_v2``, ``parse_markdown``),
which the Bot API server uses, rather than a browser-style HTML parser: a bare ``<`` is an error, an unknown ``&name;``
stays literal, byte offsets in messages count UTF-8 bytes. Sources: https://core.telegram.org/bots/api#formatting-options
and https://github.com/tdlib/td. Not modelled: custom emoji ids beyond syntax, ``tg://user`` mentions (kept as
``text_link``), link normalisation, auto-detected URLs/mentions/hashtags in the bot's own text.
"""

from __future__ import annotations

import re

__all__ = [
    "EntityParseError",
    "bot_command_entities",
    "parse_text",
    "strip_outer_whitespace",
    "utf16_len",
]


class EntityParseError(ValueError):
    """Malformed markup; ``str(error)`` is the tdlib message (e.g. ``Unsupported start tag "br" at byte offset 5``)."""


def utf16_len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units (the unit of Telegram entity offsets; an emoji outside the BMP is 2)."""
    return len(text.encode("utf-16-le")) // 2


def _byte_offset(text: str, index: int) -> int:
    """UTF-8 byte offset of ``text[index]`` (tdlib error messages count bytes)."""
    return len(text[:index].encode("utf-8"))


def _checked_link(url: str) -> str | None:
    """A usable link target or None (then tdlib silently drops the entity). Simplified ``LinkManager::get_checked_link``."""
    url = url.strip()
    if not url:
        return None
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", url)
    if scheme:
        return url if scheme.group(1).lower() in {"http", "https", "tg", "ton", "ftp"} else None
    if re.match(r"^[^\s/:]+\.[^\s/:.]+", url):
        return "http://" + url
    return None


def _link_entity(offset: int, length: int, url: str) -> dict | None:
    checked = _checked_link(url)
    if checked is None:
        return None
    return {"type": "text_link", "offset": offset, "length": length, "url": checked}


def _sorted(entities: list[dict]) -> list[dict]:
    # Outer entities first when they start at the same place, as the Bot API lists them.
    return sorted(entities, key=lambda e: (e["offset"], -e["length"]))


# ---------------------------------------------------------------------------------------------------------------------
# HTML (tdlib parse_html)

_HTML_TAGS = frozenset(
    {"a", "b", "strong", "i", "em", "s", "strike", "del", "u", "ins", "tg-spoiler", "tg-emoji", "span", "pre",
     "code", "blockquote"}
)
_HTML_SIMPLE = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "s": "strikethrough", "strike": "strikethrough",
    "del": "strikethrough", "u": "underline", "ins": "underline", "tg-spoiler": "spoiler",
}
_SPACE = " \t\r\n\v\f\0"


def _decode_html_entity(text: str, pos: int) -> tuple[str, int] | None:
    """Decode ``&lt;`` ``&gt;`` ``&amp;`` ``&quot;`` and numeric references at ``text[pos] == '&'``.

    Returns (character, next index) or None when tdlib keeps the ``&`` literally (any other named entity).
    """
    end = pos + 1
    n = len(text)
    if end < n and text[end] == "#":
        end += 1
        value = 0
        if end < n and text[end] == "x":
            end += 1
            while end < n and text[end] in "0123456789abcdefABCDEF":
                value = value * 16 + int(text[end], 16)
                end += 1
        else:
            while end < n and text[end].isascii() and text[end].isdigit():
                value = value * 10 + int(text[end])
                end += 1
        if value == 0 or value >= 0x10FFFF or end - pos >= 10 or 0xD800 <= value <= 0xDFFF:
            return None
        char = chr(value)
    else:
        while end < n and text[end].isascii() and text[end].isalpha():
            end += 1
        char = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}.get(text[pos + 1 : end])
        if char is None:
            return None
    if end < n and text[end] == ";":
        end += 1
    return char, end


def _parse_html(text: str) -> tuple[str, list[dict]]:
    out: list[str] = []
    utf16 = 0
    entities: list[dict] = []
    # Open tags: (tag name, argument, entity offset in UTF-16, index into ``out`` where the content starts).
    stack: list[tuple[str, str, int, int]] = []
    n = len(text)

    def at(k: int) -> str:
        return text[k] if k < n else "\0"

    i = 0
    while i < n:
        c = text[i]
        if c == "&":
            decoded = _decode_html_entity(text, i)
            if decoded is not None:
                out.append(decoded[0])
                utf16 += utf16_len(decoded[0])
                i = decoded[1]
                continue
        if c != "<":
            out.append(c)
            utf16 += utf16_len(c)
            i += 1
            continue

        begin = i
        offset = _byte_offset(text, begin)
        i += 1
        if at(i) != "/":
            while at(i) not in _SPACE and at(i) != ">":
                i += 1
            if i >= n:
                raise EntityParseError(f"Unclosed start tag at byte offset {offset}")
            tag = text[begin + 1 : i].lower()
            if tag not in _HTML_TAGS:
                raise EntityParseError(f'Unsupported start tag "{tag}" at byte offset {offset}')
            argument = ""
            expandable = False
            while at(i) != ">":
                while i < n and at(i) in _SPACE:
                    i += 1
                if at(i) == ">":
                    break
                attr_begin = i
                while at(i) not in _SPACE and at(i) not in "=>":
                    i += 1
                attr = text[attr_begin:i]
                if not attr:
                    raise EntityParseError(f'Empty attribute name in the tag "{tag}" at byte offset {offset}')
                while i < n and at(i) in _SPACE:
                    i += 1
                if at(i) != "=":
                    # Bot API 7.4+: a bare "expandable" attribute makes an expandable block quotation.
                    if tag == "blockquote" and attr.lower() == "expandable":
                        expandable = True
                        continue
                    raise EntityParseError(
                        f'Expected equal sign in declaration of an attribute of the tag "{tag}" at byte offset {offset}'
                    )
                i += 1
                while i < n and at(i) in _SPACE:
                    i += 1
                if i >= n:
                    raise EntityParseError(f'Unclosed start tag "{tag}" at byte offset {offset}')
                if at(i) not in "'\"":
                    token_begin = i
                    while at(i).isascii() and (at(i).isalnum() or at(i) in ".-"):
                        i += 1
                    value = text[token_begin:i].lower()
                    if at(i) not in _SPACE and at(i) != ">":
                        raise EntityParseError(
                            f"Unexpected end of name token at byte offset {_byte_offset(text, token_begin)}"
                        )
                else:
                    quote = text[i]
                    i += 1
                    chars: list[str] = []
                    while i < n and text[i] != quote:
                        if text[i] == "&":
                            decoded = _decode_html_entity(text, i)
                            if decoded is not None:
                                chars.append(decoded[0])
                                i = decoded[1]
                                continue
                        chars.append(text[i])
                        i += 1
                    if i < n:
                        i += 1
                    value = "".join(chars)
                if i >= n:
                    raise EntityParseError(f"Unclosed start tag at byte offset {offset}")
                if tag == "a" and attr == "href":
                    argument = value
                elif tag == "code" and attr == "class" and value.startswith("language-"):
                    argument = value[len("language-") :]
                elif tag == "span" and attr == "class" and value.startswith("tg-"):
                    argument = value[len("tg-") :]
                elif tag == "tg-emoji" and attr == "emoji-id":
                    argument = value
            if tag == "span" and argument != "spoiler":
                raise EntityParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {offset}')
            if tag == "blockquote" and expandable:
                argument = "expandable"
            stack.append((tag, argument, utf16, len(out)))
            i += 1  # past '>'
            continue

        # An end tag.
        if not stack:
            raise EntityParseError(f"Unexpected end tag at byte offset {offset}")
        i += 1
        while at(i) not in _SPACE and at(i) != ">":
            i += 1
        end_tag = text[begin + 2 : i].lower()
        while i < n and at(i) in _SPACE:
            i += 1
        if at(i) != ">":
            raise EntityParseError(f"Unclosed end tag at byte offset {offset}")
        i += 1
        tag, argument, start, out_index = stack.pop()
        if end_tag and end_tag != tag:
            raise EntityParseError(
                f'Unmatched end tag at byte offset {offset}, expected "</{tag}>", found "</{end_tag}>"'
            )
        length = utf16 - start
        if length <= 0:
            continue
        if tag in _HTML_SIMPLE or tag == "span":
            entities.append({"type": _HTML_SIMPLE.get(tag, "spoiler"), "offset": start, "length": length})
        elif tag == "a":
            url = argument or "".join(out[out_index:])
            entity = _link_entity(start, length, url)
            if entity is not None:
                entities.append(entity)
        elif tag == "tg-emoji":
            if not argument.isdigit() or int(argument) == 0:
                raise EntityParseError("Invalid custom emoji identifier specified")
            entities.append({"type": "custom_emoji", "offset": start, "length": length, "custom_emoji_id": argument})
        elif tag == "blockquote":
            kind = "expandable_blockquote" if argument == "expandable" else "blockquote"
            entities.append({"type": kind, "offset": start, "length": length})
        elif tag == "pre":
            last = entities[-1] if entities else None
            if last and last["type"] == "code" and last["offset"] == start and last["length"] == length and last.get(
                "language"
            ):
                last["type"] = "pre"
            else:
                entities.append({"type": "pre", "offset": start, "length": length})
        elif tag == "code":
            last = entities[-1] if entities else None
            if last and last["type"] == "pre" and last["offset"] == start and last["length"] == length and argument:
                last["language"] = argument
            else:
                entity = {"type": "code", "offset": start, "length": length}
                if argument:
                    entity["language"] = argument  # dropped below unless a <pre> wraps it
                entities.append(entity)
    if stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    for entity in entities:
        if entity["type"] == "code":
            entity.pop("language", None)
    return "".join(out), entities


# ---------------------------------------------------------------------------------------------------------------------
# MarkdownV2 (tdlib parse_markdown_v2)

_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!\n")
_MDV2_TYPE_NAMES = {
    "bold": "Bold", "italic": "Italic", "underline": "Underline", "strikethrough": "Strikethrough",
    "spoiler": "Spoiler", "text_link": "TextUrl", "code": "Code", "pre": "Pre", "pre_code": "PreCode",
    "custom_emoji": "CustomEmoji", "blockquote": "BlockQuote",
}


def _reserved(char: str) -> EntityParseError:
    return EntityParseError(f"Character '{char}' is reserved and must be escaped with the preceding '\\'")


def _parse_markdown_v2(text: str) -> tuple[str, list[dict]]:
    out: list[str] = []
    utf16 = 0
    entities: list[dict] = []
    # Open entities: [kind, argument, utf16 offset, byte offset of the opening mark, index into ``out``].
    stack: list[list] = []
    have_blockquote = False
    n = len(text)

    def at(k: int) -> str:
        return text[k] if k < n else "\0"

    def unclosed(entry: list) -> EntityParseError:
        return EntityParseError(f"Can't find end of {_MDV2_TYPE_NAMES[entry[0]]} entity at byte offset {entry[3]}")

    i = 0
    while i < n:
        c = text[i]
        if c == "\\" and "\x01" <= at(i + 1) <= "~":
            out.append(text[i + 1])
            utf16 += 1
            i += 2
            continue
        top = stack[-1][0] if stack else None
        reserved = frozenset("`") if top in ("code", "pre", "pre_code") else _MDV2_RESERVED
        if c not in reserved:
            out.append(c)
            utf16 += utf16_len(c)
            i += 1
            continue

        is_end = False
        if stack:
            if have_blockquote and c == "\n" and (i + 1 == n or text[i + 1] != ">"):
                is_end = True
            else:
                is_end = {
                    "bold": c == "*",
                    "italic": c == "_" and at(i + 1) != "_",
                    "code": c == "`",
                    "pre": c == "`" and at(i + 1) == "`" and at(i + 2) == "`",
                    "pre_code": c == "`" and at(i + 1) == "`" and at(i + 2) == "`",
                    "text_link": c == "]",
                    "underline": c == "_" and at(i + 1) == "_",
                    "strikethrough": c == "~",
                    "spoiler": c == "|" and at(i + 1) == "|",
                    "custom_emoji": c == "]",
                    "blockquote": False,
                }[top]

        if not is_end:
            byte_offset = _byte_offset(text, i)
            argument = ""
            if c == "_":
                if at(i + 1) == "_":
                    kind, i = "underline", i + 2
                else:
                    kind, i = "italic", i + 1
            elif c == "*":
                kind, i = "bold", i + 1
            elif c == "~":
                kind, i = "strikethrough", i + 1
            elif c == "|":
                if at(i + 1) != "|":
                    raise _reserved(c)
                kind, i = "spoiler", i + 2
            elif c == "[":
                kind, i = "text_link", i + 1
            elif c == "`":
                if at(i + 1) == "`" and at(i + 2) == "`":
                    i += 3
                    kind = "pre"
                    language_end = i
                    while at(language_end) not in _SPACE and at(language_end) != "`":
                        language_end += 1
                    if i != language_end and language_end < n and text[language_end] != "`":
                        kind, argument, i = "pre_code", text[i:language_end], language_end
                    if at(i) in "\r\n":  # one line break after the opening fence is not content
                        i += 2 if at(i + 1) in "\r\n" and at(i + 1) != at(i) else 1
                else:
                    kind, i = "code", i + 1
            elif c == "!":
                if at(i + 1) != "[":
                    raise _reserved(c)
                kind, i = "custom_emoji", i + 2
            elif c == "\n":
                out.append("\n")
                utf16 += 1
                i += 1
                if at(i) == ">":
                    i += 1
                    if not have_blockquote:
                        have_blockquote = True
                        stack.append(["blockquote", "", utf16, byte_offset, len(out)])
                continue
            elif c == ">":
                if i != 0:
                    raise _reserved(c)
                kind, i = "blockquote", i + 1
                have_blockquote = True
            else:
                raise _reserved(c)
            stack.append([kind, argument, utf16, byte_offset, len(out)])
            continue

        # The end of the innermost entity.
        entry = stack[-1]
        kind, argument, start = entry[0], entry[1], entry[2]
        if c == "\n" and kind != "blockquote":
            raise unclosed(entry)
        skip = utf16 == start
        entity: dict = {}
        if kind in ("bold", "italic", "code", "strikethrough"):
            i += 1
        elif kind in ("underline", "spoiler"):
            i += 2
        elif kind in ("pre", "pre_code"):
            i += 3
        elif kind in ("text_link", "custom_emoji"):
            if at(i + 1) != "(":
                if kind == "custom_emoji":
                    raise EntityParseError("Custom emoji entity must contain a tg://emoji URL")
                url = "".join(out[entry[4] :])
                i += 1
            else:
                i += 2
                url_begin = i
                chars: list[str] = []
                while i < n and text[i] != ")":
                    if text[i] == "\\" and "\x01" <= at(i + 1) <= "~":
                        chars.append(text[i + 1])
                        i += 2
                        continue
                    chars.append(text[i])
                    i += 1
                if i >= n:
                    what = "a custom emoji URL" if kind == "custom_emoji" else "a URL"
                    raise EntityParseError(f"Can't find end of {what} at byte offset {_byte_offset(text, url_begin)}")
                i += 1
                url = "".join(chars)
            if kind == "custom_emoji":
                match = re.fullmatch(r"tg://emoji\?id=(\d+)", url)
                if not match:
                    raise EntityParseError("Invalid custom emoji identifier specified")
                entity = {"custom_emoji_id": match.group(1)}
            else:
                link = _link_entity(start, 0, url)
                if link is None:
                    skip = True
                else:
                    entity = {"url": link["url"]}
        elif kind == "blockquote":
            have_blockquote = False
            out.append("\n")
            utf16 += 1
            i += 1
        if not skip:
            length = utf16 - start  # tdlib counts a quotation's closing line break as part of it
            api_type = "pre" if kind == "pre_code" else kind
            entity = {"type": api_type, "offset": start, "length": length, **entity}
            if kind == "pre_code":
                entity["language"] = argument
            if length > 0:
                entities.append(entity)
        stack.pop()
    if have_blockquote and stack and stack[-1][0] == "blockquote":
        entry = stack.pop()
        if utf16 - entry[2] > 0:
            entities.append({"type": "blockquote", "offset": entry[2], "length": utf16 - entry[2]})
    if stack:
        raise unclosed(stack[-1])
    return "".join(out), entities


# ---------------------------------------------------------------------------------------------------------------------
# Legacy Markdown (tdlib parse_markdown)


def _parse_markdown_legacy(text: str) -> tuple[str, list[dict]]:
    out: list[str] = []
    utf16 = 0
    entities: list[dict] = []
    n = len(text)

    def at(k: int) -> str:
        return text[k] if k < n else "\0"

    i = 0
    while i < n:
        c = text[i]
        if c == "\\" and at(i + 1) in "_*`[":
            out.append(text[i + 1])
            utf16 += 1
            i += 2
            continue
        if c not in "_*`[":
            out.append(c)
            utf16 += utf16_len(c)
            i += 1
            continue
        begin = i
        end_char = "]" if c == "[" else c
        is_pre = False
        language = ""
        i += 1
        if c == "`" and at(i) == "`" and at(i + 1) == "`":
            i += 2
            is_pre = True
            language_end = i
            while at(language_end) not in _SPACE and at(language_end) != "`":
                language_end += 1
            if i != language_end and language_end < n and text[language_end] != "`":
                language, i = text[i:language_end], language_end
            if at(i) in "\r\n":
                i += 2 if at(i + 1) in "\r\n" and at(i + 1) != at(i) else 1
        start = utf16
        content_begin = len(out)
        while i < n and (text[i] != end_char or (is_pre and not (at(i + 1) == "`" and at(i + 2) == "`"))):
            out.append(text[i])
            utf16 += utf16_len(text[i])
            i += 1
        if i >= n:
            raise EntityParseError(
                f"Can't find end of the entity starting at byte offset {_byte_offset(text, begin)}"
            )
        length = utf16 - start
        if c == "[":
            if at(i + 1) == "(":
                close = text.find(")", i + 2)
                close = n if close < 0 else close
                url = text[i + 2 : close]
                i = close
            else:
                url = "".join(out[content_begin:])
            if length:
                link = _link_entity(start, length, url)
                if link is not None:
                    entities.append(link)
        elif length:
            if c == "_":
                entities.append({"type": "italic", "offset": start, "length": length})
            elif c == "*":
                entities.append({"type": "bold", "offset": start, "length": length})
            elif is_pre:
                entity = {"type": "pre", "offset": start, "length": length}
                if language:
                    entity["language"] = language
                entities.append(entity)
            else:
                entities.append({"type": "code", "offset": start, "length": length})
        i += 3 if is_pre else 1
    return "".join(out), entities


# ---------------------------------------------------------------------------------------------------------------------

_ASCII_WHITESPACE = " \t\r\n\v\f"


def strip_outer_whitespace(text: str, entities: list[dict]) -> tuple[str, list[dict]]:
    """Trim leading/trailing ASCII whitespace as the Bot API does and shift/clip ``entities`` (UTF-16 units).

    Zero-length entities are dropped. Source: tdlib ``fix_formatted_text`` (Telegram trims message text).
    """
    stripped_left = text.lstrip(_ASCII_WHITESPACE)
    lead = utf16_len(text) - utf16_len(stripped_left)
    result = stripped_left.rstrip(_ASCII_WHITESPACE)
    total = utf16_len(result)
    fixed = []
    for entity in entities:
        start = max(entity["offset"] - lead, 0)
        end = min(entity["offset"] + entity["length"] - lead, total)
        if end > start:
            fixed.append({**entity, "offset": start, "length": end - start})
    return result, fixed


def parse_text(text: str, parse_mode: str | None) -> tuple[str, list[dict]]:
    """Parse ``text`` under ``parse_mode`` (``HTML``, ``MarkdownV2``, ``Markdown``, case-insensitive, or None).

    Returns (plain text, entities sorted by offset) before whitespace trimming. Raises ``EntityParseError`` for bad
    markup and ``ValueError("unsupported parse_mode")`` for an unknown mode.
    """
    mode = (parse_mode or "").lower()
    if mode == "":
        return text, []
    if mode == "html":
        plain, entities = _parse_html(text)
    elif mode == "markdownv2":
        plain, entities = _parse_markdown_v2(text)
    elif mode == "markdown":
        plain, entities = _parse_markdown_legacy(text)
    else:
        raise ValueError("unsupported parse_mode")
    return plain, _sorted(entities)


_BOT_COMMAND = re.compile(r"(?<![\w/<>])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w/<>@])")


def bot_command_entities(text: str) -> list[dict]:
    """``bot_command`` entities Telegram detects in a user's text (``/start``, ``/start@my_bot``), UTF-16 offsets.

    Follows tdlib ``match_bot_commands``: a command must not touch a letter, digit, ``_``, ``/``, ``<`` or ``>``.
    """
    return [
        {"type": "bot_command", "offset": utf16_len(text[: m.start()]), "length": utf16_len(m.group())}
        for m in _BOT_COMMAND.finditer(text)
    ]
