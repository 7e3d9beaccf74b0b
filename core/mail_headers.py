"""Header fields of outgoing mail: making text safe for a header, RFC 2047 encoding, and checking what was produced.

:mod:`core.mail` builds messages with the stdlib ``email`` package and then hands the serialised bytes to
:func:`repair_headers`, which checks every field it set against what it meant to say. CPython's folder is not
trusted blindly: it has produced an empty encoded-word (``=?utf-8?q??=``) when a long subject mixes ASCII and
Japanese (the line is nearly full, the first character does not fit, and the shrinking loop in
``email._header_value_parser._fold_as_ew`` ends at an empty chunk), and it drops or adds whitespace between encoded
words (python/cpython gh-144156, gh-120930), so a subject would not decode back to what the author wrote. A field
with any such problem is re-encoded here (:func:`encode_unstructured`, :func:`encode_mailbox`,
:func:`fold_ascii`) rather than sent.

Rules enforced, with their sources:

* RFC 2047 §2: an encoded-word is at most 75 characters; a line holding encoded-words is at most 76 characters.
* RFC 2047 §4: B encoded-text is valid base64; Q encoded-text uses printable ASCII except ``?`` and ``=`` (which
  only starts a ``=XX`` escape); in a phrase (RFC 2047 §5(3)) only letters, digits and ``!*+-/=_``.
* RFC 2047 §5: an encoded-word is separated from neighbouring text by whitespace (in structured fields also by
  specials), never appears inside a quoted-string, and "each encoded-word MUST represent an integral number of
  characters": it decodes to valid text in its charset by itself, so no character is split across two words.
* Not RFC 2047 but checked with it: no raw 8-bit bytes in the header section, no bare CR or LF, no line over 998
  characters (RFC 5322 §2.1.1, §2.2), and no empty encoded-word (decoders show nothing or the raw text).

Header injection is impossible by construction: :func:`clean_header_text` turns every control character and line
or paragraph separator (CR, LF, U+0085, U+2028, U+2029, ...) into a space before text reaches a header, and
:func:`check_address` refuses an address holding anything but a plain ``local@domain``.

Pure module: standard library only, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email.policy
import re
from collections.abc import Sequence
from dataclasses import dataclass

#: RFC 2047 §2: "An 'encoded-word' may not be more than 75 characters long".
MAX_ENCODED_WORD = 75
#: RFC 2047 §2: "each line of a header field that contains one or more 'encoded-word's is limited to 76 characters".
MAX_ENCODED_LINE = 76
#: RFC 5322 §2.1.1: a line is at most 998 characters, excluding the CRLF.
MAX_LINE = 998
#: Where we fold ASCII-only fields (RFC 5322 §2.1.1 "SHOULD be no more than 78 characters").
FOLD_AT = 78

_B_PREFIX = "=?utf-8?b?"
_B_SUFFIX = "?="
_CHROME = len(_B_PREFIX) + len(_B_SUFFIX)  # 12 characters around the encoded text

# Control characters (C0, DEL, C1 - which includes U+0085 NEL) and the Unicode line and paragraph separators: each
# of them is a line break for somebody (str.splitlines() knows \v \f \x1c-\x1e \x85 \u2028 \u2029 too).
_BREAKS_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")

# Anything that looks like an encoded-word: =?charset?encoding?text?= with no whitespace or '?' inside the parts.
_EW_RE = re.compile(r"=\?([^?\s]*)\?([^?\s]*)\?([^?\s]*)\?=")
_Q_TEXT_RE = re.compile(r"(?:[!-<>@-~]|=[0-9A-Fa-f]{2})*")  # printable ASCII but '?' and a bare '='
_Q_PHRASE_RE = re.compile(r"(?:[A-Za-z0-9!*+\-/_]|=[0-9A-Fa-f]{2})*")  # RFC 2047 §5(3)
_FIELD_NAME_RE = re.compile(r"[!-9;-~]+")  # RFC 5322 §2.2: printable ASCII except ':'
# Fields whose bodies are structured address lists (RFC 5322 §3.6.2, §3.6.3, §3.6.6).
_ADDRESS_FIELDS = frozenset(
    {"from", "sender", "reply-to", "to", "cc", "bcc", "resent-from", "resent-sender", "resent-to", "resent-cc",
     "resent-bcc"}
)
_WSP = " \t"
# RFC 5322 atext: an ASCII display name made only of these and single spaces needs no quoting.
_ATEXT = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-/=?^_`{|}~")
# A conservative addr-spec: dot-atom local part and a domain of LDH labels (RFC 5321 §4.1.2, RFC 5322 §3.4.1).
_LOCAL_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN_RE = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*")


class HeaderEncodingError(RuntimeError):
    """A header could not be produced so that it passes :func:`header_problems` and decodes to the intended value.

    Raised instead of sending a broken message; it signals a bug in this module, never bad input (bad input is
    cleaned or refused with ``ValueError`` first).
    """


# ---------------------------------------------------------------------------------------------------------------
# Input: text and addresses that may reach a header


def clean_header_text(text: str) -> str:
    """Make ``text`` safe for one header field body: the value that :mod:`core.mail` puts there and checks.

    Every run of control characters and line/paragraph separators (CR, LF, TAB, VT, FF, U+0085, U+2028, U+2029 and
    the rest of C0/C1) becomes one space, lone surrogates become U+FFFD, and the ends are trimmed. Everything else
    (U+3000, zero-width characters, emoji, half-width kana) is kept as it is. Never raises.
    """
    text = _SURROGATE_RE.sub("\ufffd", text)
    return _BREAKS_RE.sub(" ", text).strip(" \u3000")


def clean_display_name(name: str) -> str:
    """:func:`clean_header_text` for a display name, with each run of spaces made one space: in a structured field
    a run of whitespace means one space (RFC 5322 §3.2.2; CPython's parser decodes ``a  b`` in an encoded-word as
    ``a b``), so this is the name every reader will see. U+3000 is not folding whitespace and is kept."""
    return re.sub(r" {2,}", " ", clean_header_text(name))


def check_address(address: str, what: str = "address") -> str:
    """Return ``address`` as a plain ASCII ``local@domain`` fit for a header, or raise ``ValueError``.

    ``what`` names the address in the error (e.g. ``"to"``). Surrounding spaces are trimmed; a non-ASCII domain is
    converted to its IDNA (``xn--``) form. Refused: an empty address, anything with whitespace, a control character
    or a line separator inside (header injection), a display name or angle brackets, a quoted or non-ASCII local
    part (that needs SMTPUTF8, RFC 6531, which otayori does not use), or a malformed domain. This is a syntax check
    for header safety only; deliverability is ``email-validator``'s job where an address enters the system.
    """
    value = address.strip(" ")
    if not value:
        raise ValueError(f"{what}: empty address")
    if _BREAKS_RE.search(value) or any(ch.isspace() for ch in value):
        raise ValueError(f"{what}: an address cannot contain whitespace or line breaks")
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"{what}: not an address of the form local@domain")
    if not local.isascii() or not _LOCAL_RE.fullmatch(local) or len(local) > 64:
        raise ValueError(f"{what}: the local part must be plain ASCII (dot-atom, at most 64 characters)")
    return f"{local}@{check_domain(domain, what)}"


def check_domain(domain: str, what: str = "domain") -> str:
    """Return ``domain`` as ASCII LDH labels (a non-ASCII name converted to IDNA), or raise ``ValueError`` naming
    ``what``. Surrounding spaces are trimmed; anything else that is not a host name is refused."""
    value = domain.strip(" ")
    if not value.isascii():
        try:
            value = value.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"{what}: the domain cannot be converted to IDNA") from exc
    if not _DOMAIN_RE.fullmatch(value):
        raise ValueError(f"{what}: malformed domain {domain!r}")
    return value


def address_domain(address: str) -> str:
    """The domain of an address already checked by :func:`check_address` (ASCII, IDNA form)."""
    return address.rpartition("@")[2]


# ---------------------------------------------------------------------------------------------------------------
# Our own encoder: used whenever CPython's folding is wrong


def _b_word(chunk: str) -> str:
    return _B_PREFIX + base64.b64encode(chunk.encode("utf-8")).decode("ascii") + _B_SUFFIX


def _chunk_bytes(space: int) -> int:
    """UTF-8 bytes that fit in one B encoded-word of at most ``space`` characters (chrome included)."""
    return max(0, (space - _CHROME) // 4 * 3)


def _b_words(text: str, first_space: int, next_space: int) -> list[str]:
    """Split ``text`` into B encoded-words of whole characters: the first at most ``first_space`` characters long,
    the rest at most ``next_space``. Chunks are cut between code points, never inside one, so each word decodes to
    valid UTF-8 on its own (RFC 2047 §5); a word never exceeds :data:`MAX_ENCODED_WORD`."""
    words: list[str] = []
    limit = _chunk_bytes(min(first_space, MAX_ENCODED_WORD))
    if limit < 4:  # not even one 4-byte character fits on this line: start on the next one
        words.append("")
        limit = _chunk_bytes(min(next_space, MAX_ENCODED_WORD))
    chunk, size = [], 0
    for ch in text:
        width = len(ch.encode("utf-8"))
        if size + width > limit and chunk:
            words.append(_b_word("".join(chunk)))
            chunk, size = [], 0
            limit = _chunk_bytes(min(next_space, MAX_ENCODED_WORD))
        chunk.append(ch)
        size += width
    if chunk:
        words.append(_b_word("".join(chunk)))
    return words


def _join_words(prefix: str, words: Sequence[str]) -> str:
    """``prefix`` followed by ``words``, one per line after the first (CRLF + space folding). An empty first word
    means "nothing on the first line"."""
    if words and words[0] == "":
        return prefix.rstrip(" ") + "".join("\r\n " + word for word in words[1:])
    return prefix + "\r\n ".join(words)


def encode_unstructured(name: str, text: str) -> str:
    """The whole field ``name: text`` (CRLF-folded, no final CRLF) for an unstructured field such as Subject.

    ASCII text without ``=?`` is folded at spaces (lines up to :data:`FOLD_AT` where words allow). Anything else is
    written entirely as UTF-8 ``B`` encoded-words of whole characters, each at most 75 characters and each line at
    most 76 (RFC 2047 §2), so the text decodes back exactly, spaces included (whitespace between adjacent
    encoded-words is not part of the text, RFC 2047 §6.2). ``text`` should come from :func:`clean_header_text`;
    raises ``ValueError`` if it still contains a line break.
    """
    if _BREAKS_RE.search(text):
        raise ValueError(f"{name}: header text contains a line break or control character")
    prefix = f"{name}: "
    if text.isascii() and "=?" not in text:
        folded = fold_ascii(name, text, " ")
        if all(len(line) <= MAX_LINE for line in folded.split("\r\n")):
            return folded
    return _join_words(prefix, _b_words(text, MAX_ENCODED_LINE - len(prefix), MAX_ENCODED_LINE - 1))


def _phrase_is_atoms(display_name: str) -> bool:
    return all(part and set(part) <= _ATEXT for part in display_name.split(" "))


def encode_mailbox(name: str, display_name: str, address: str) -> str:
    """The whole field ``name: display-name <address>`` (CRLF-folded, no final CRLF) for From, To or Reply-To.

    ``display_name``: from :func:`clean_header_text` (may be empty: then just the address). ``address``: from
    :func:`check_address`. An ASCII display name is written as atoms or a quoted-string (``"`` and ``\\`` escaped);
    one with non-ASCII characters or ``=?`` as UTF-8 ``B`` encoded-words (RFC 2047 §5(3)), each at most 75
    characters, lines at most 76; the address goes on the last line when it fits, else on its own line. A name
    longer than one encoded-word (about 14 Japanese characters) reads back whole in mail clients (RFC 2047 §6.2);
    CPython's own address parser shows a space at each word boundary (see :func:`decode_phrase`).
    """
    if _BREAKS_RE.search(display_name) or _BREAKS_RE.search(address):
        raise ValueError(f"{name}: header text contains a line break or control character")
    prefix = f"{name}: "
    angle = f"<{address}>"
    if not display_name:
        return prefix + address
    if display_name.isascii() and "=?" not in display_name:
        phrase = display_name if _phrase_is_atoms(display_name) else (
            '"' + display_name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        )
        line = f"{prefix}{phrase} {angle}"
        if len(line) <= FOLD_AT or len(prefix) + len(phrase) > MAX_LINE:
            return line
        return f"{prefix}{phrase}\r\n {angle}"
    field = _join_words(prefix, _b_words(display_name, MAX_ENCODED_LINE - len(prefix), MAX_ENCODED_LINE - 1))
    last_line = field.rsplit("\r\n", 1)[-1]
    if len(last_line) + 1 + len(angle) <= MAX_ENCODED_LINE:
        return f"{field} {angle}"
    return f"{field}\r\n {angle}"


def fold_ascii(name: str, value: str, separator: str) -> str:
    """The whole field ``name: value`` for an ASCII value, folded before a space that follows ``separator`` (``" "``
    for words, ``", "`` between list items) so lines stay within :data:`FOLD_AT` where possible (a longer item is
    kept whole: a line may reach 998 characters). Unfolding (removing each CRLF) gives back ``value`` exactly."""
    if not value.isascii() or _BREAKS_RE.search(value):
        raise ValueError(f"{name}: fold_ascii needs one line of ASCII text")
    pieces: list[str] = []
    rest = value
    cut = len(separator.rstrip(" "))
    while rest:
        at = rest.find(separator, 1)
        if at < 0:
            pieces.append(rest)
            break
        pieces.append(rest[: at + cut])  # the separator's non-space part stays with the piece before it
        rest = rest[at + cut :]
    lines = [f"{name}:"]
    first = True
    for piece in pieces:
        piece_text = (" " + piece) if first else piece
        # Fold only before a space that starts a piece with text in it: a line of nothing but whitespace is
        # obsolete syntax (RFC 5322 §3.2.2, §4.2).
        if (
            not first
            and len(lines[-1]) + len(piece_text) > FOLD_AT
            and piece_text.startswith(" ")
            and piece_text.strip()
        ):
            lines.append(piece_text)
        else:
            lines[-1] += piece_text
        first = False
    return "\r\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Checking


def _decode_q(text: str) -> bytes:
    return binascii.a2b_qp(text.replace("_", " ").encode("ascii"), header=False)


def _ew_problems(field: str, word: str, charset: str, encoding: str, text: str, structured: bool) -> list[str]:
    """What is wrong with one encoded-word ``word`` (charset, encoding and text already split out)."""
    shown = word if len(word) <= 90 else word[:87] + "..."
    problems: list[str] = []
    if len(word) > MAX_ENCODED_WORD:
        problems.append(f"{field}: encoded-word longer than {MAX_ENCODED_WORD} characters ({len(word)}): {shown}")
    if not text:
        problems.append(f"{field}: empty encoded-word {shown}")
        return problems
    charset_name = charset.split("*", 1)[0]  # RFC 2231 §5 language suffix
    try:
        codec = codecs.lookup(charset_name)
    except LookupError:
        problems.append(f"{field}: unknown charset {charset_name!r} in {shown}")
        return problems
    kind = encoding.lower()
    if kind == "b":
        if len(text) % 4:
            problems.append(f"{field}: B encoded-text length is not a multiple of 4: {shown}")
            return problems
        try:
            data = binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
        except (binascii.Error, ValueError):
            problems.append(f"{field}: invalid base64 in {shown}")
            return problems
    elif kind == "q":
        pattern = _Q_PHRASE_RE if structured else _Q_TEXT_RE
        if not pattern.fullmatch(text):
            problems.append(f"{field}: characters not allowed in Q encoded-text here: {shown}")
            return problems
        data = _decode_q(text)
    else:
        problems.append(f"{field}: unknown encoding {encoding!r} (only B and Q exist) in {shown}")
        return problems
    try:
        codec.decode(data, "strict")
    except UnicodeDecodeError:
        problems.append(
            f"{field}: encoded-word does not decode as {charset_name} by itself "
            f"(a character split across encoded-words?): {shown}"
        )
    return problems


def _quoted_spans(value: str) -> list[tuple[int, int]]:
    """Index ranges of quoted-strings in a structured field body (comments and escapes honoured)."""
    spans: list[tuple[int, int]] = []
    depth = 0
    start = -1
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\":
            i += 2
            continue
        if start >= 0:
            if ch == '"':
                spans.append((start, i))
                start = -1
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif ch == '"' and not depth:
            start = i
        i += 1
    if start >= 0:
        spans.append((start, len(value)))
    return spans


def field_problems(name: str, lines: Sequence[str]) -> list[str]:
    """Every rule broken by one header field. ``lines``: its physical lines as ASCII text (``"Name: value"``, then
    continuation lines starting with a space or tab), without CRLFs. See the module docstring for the rules."""
    problems: list[str] = []
    structured = name.lower() in _ADDRESS_FIELDS
    for line in lines:
        if len(line) > MAX_LINE:
            problems.append(f"{name}: line longer than {MAX_LINE} characters (RFC 5322 §2.1.1)")
        elif len(line) > MAX_ENCODED_LINE and _EW_RE.search(line):
            problems.append(
                f"{name}: line with encoded-words longer than {MAX_ENCODED_LINE} characters ({len(line)})"
            )
    value = "".join(lines).partition(":")[2]  # unfolded: CRLFs gone, the whitespace after them kept
    quoted = _quoted_spans(value) if structured else []
    before_ok = set(_WSP) | (set("(,:;") if structured else set())
    after_ok = set(_WSP) | (set("),;<") if structured else set())
    for match in _EW_RE.finditer(value):
        word = match.group(0)
        problems.extend(_ew_problems(name, word, *match.groups(), structured=structured))
        start, end = match.span()
        prev = value[start - 1] if start else " "
        nxt = value[end] if end < len(value) else " "
        if prev not in before_ok or nxt not in after_ok:
            problems.append(f"{name}: encoded-word not separated from adjacent text by whitespace: {word}")
        if any(q_start < start < q_end for q_start, q_end in quoted):
            problems.append(f"{name}: encoded-word inside a quoted-string (never decoded): {word}")
    return problems


def split_header_section(raw: bytes) -> tuple[bytes, bytes]:
    """``(header section, rest)`` of a serialised message: split at the first empty line (CRLF CRLF, or LF LF)."""
    match = re.search(rb"\r?\n\r?\n", raw)
    if not match:
        return raw, b""
    return raw[: match.start()], raw[match.end() :]


def header_fields(head: bytes) -> list[tuple[str, list[str]]]:
    """The fields of a header section as ``(name, physical lines)`` in order; bytes are decoded as ASCII with
    replacement (8-bit bytes are reported by :func:`header_problems`)."""
    fields: list[tuple[str, list[str]]] = []
    for line in head.decode("ascii", "replace").split("\r\n"):
        if line[:1] in (" ", "\t") and fields:
            fields[-1][1].append(line)
        else:
            fields.append((line.partition(":")[0], [line]))
    return fields


def header_problems(raw: bytes) -> list[str]:
    """Every rule broken in the top-level header section of the serialised message ``raw``; ``[]`` when clean.

    Each problem is one line starting with the field name, e.g. ``"Subject: empty encoded-word =?utf-8?q??="``.
    Checked (sources in the module docstring): empty encoded-words; encoded-words over 75 characters; lines with
    encoded-words over 76 characters; invalid B or Q encoded-text; unknown charsets; an encoded-word that does not
    decode by itself (a character split between two words); an encoded-word glued to other text or inside a
    quoted-string; raw 8-bit bytes; bare CR or LF; lines over 998 characters; lines that are not fields. Only the
    top-level section is read (MIME part headers here carry no text). Whether a field decodes to the *intended*
    value cannot be seen from the bytes alone: :func:`repair_headers` checks that. Never raises.
    """
    head, _ = split_header_section(raw)
    problems: list[str] = []
    if any(byte > 0x7F for byte in head):
        problems.append("header section: raw 8-bit bytes (non-ASCII text must be RFC 2047 encoded)")
    if re.search(rb"\r(?!\n)|(?<!\r)\n", head):
        problems.append("header section: bare CR or LF (lines must end with CRLF)")
        head = re.sub(rb"\r\n|\r|\n", b"\r\n", head)
    for name, lines in header_fields(head):
        if not _FIELD_NAME_RE.fullmatch(name) or ":" not in lines[0]:
            problems.append(f"header section: not a header field: {lines[0][:60]!r}")
            continue
        problems.extend(field_problems(name, lines))
    return problems


# ---------------------------------------------------------------------------------------------------------------
# What each field should say, and the repair


def _parse_field(field: str) -> object:
    """One field (``"Name: value"`` with its CRLF folds) parsed as a reader would: ``policy.default`` unfolds the
    source lines and builds the header object, exactly what ``message_from_bytes(..., policy=default)[name]``
    gives, without the cost of a whole message parser."""
    name, _, value = field.partition(":")
    lines = value.split("\r\n")
    unfolded = lines[0].lstrip(" \t") + "".join(lines[1:])  # as email.policy.EmailPolicy.header_source_parse
    return email.policy.default.header_fetch_parse(name, unfolded)


@dataclass(frozen=True)
class Unstructured:
    """A field whose body is text (Subject): it must decode to exactly ``text``."""

    name: str
    text: str

    def says(self, field: str) -> bool:
        return str(_parse_field(field)) == self.text

    def encode(self) -> str:
        return encode_unstructured(self.name, self.text)


_PHRASE_TOKEN_RE = re.compile(
    r'(?P<ws>[ \t]+)|(?P<qs>"(?:[^"\\]|\\.)*")|(?P<ew>=\?[^?\s]*\?[^?\s]*\?[^?\s]*\?=)'
    r'|(?P<atom>[^\s"(),.:;<>@\[\]\\]+)|(?P<dot>\.)'
)


def _decode_ew(word: str) -> str | None:
    _, charset, encoding, text, _ = word.split("?")
    if _ew_problems("", word, charset, encoding, text, structured=True):
        return None
    data = base64.b64decode(text) if encoding.lower() == "b" else _decode_q(text)
    return codecs.decode(data, charset.split("*", 1)[0])


def decode_phrase(phrase: str) -> str | None:
    """The display name a reader following RFC 2047 shows for an unfolded ``phrase`` (the part before ``<addr>``),
    or None when it holds anything but atoms, dots, quoted-strings, encoded-words and spaces (e.g. a comment).

    RFC 2047 §6.2: "any 'linear-white-space' that separates a pair of adjacent 'encoded-word's is ignored"; other
    whitespace between words shows as one space (RFC 5322 §3.2.2). CPython's structured-header parser (3.11)
    instead keeps a space between adjacent encoded-words of a phrase, so for a display name longer than one
    encoded-word (about 14 Japanese characters) ``policy.default`` shows an extra space that mail clients do not:
    this function, not CPython, decides whether a From field says what we meant.
    """
    tokens: list[tuple[str, str]] = []
    at = 0
    while at < len(phrase):
        match = _PHRASE_TOKEN_RE.match(phrase, at)
        if not match:
            return None
        kind = match.lastgroup or ""
        text = match.group(0)
        if kind == "qs":
            text = re.sub(r"\\(.)", r"\1", text[1:-1])
        elif kind == "ew":
            decoded = _decode_ew(text)
            if decoded is None:
                return None
            text = decoded
        tokens.append((kind, text))
        at = match.end()
    out: list[str] = []
    for index, (kind, text) in enumerate(tokens):
        if kind == "ws":
            before = tokens[index - 1][0] if index else ""
            after = tokens[index + 1][0] if index + 1 < len(tokens) else ""
            if before and after and not (before == "ew" and after == "ew"):
                out.append(" ")
        else:
            out.append(text)
    return "".join(out)


@dataclass(frozen=True)
class Mailbox:
    """A field holding one mailbox (From, To, Reply-To): CPython must parse it without defects to exactly
    ``address``, and its phrase must show exactly ``display_name`` to an RFC 2047 reader (:func:`decode_phrase`)."""

    name: str
    display_name: str
    address: str

    def says(self, field: str) -> bool:
        body = field.replace("\r\n", "").partition(":")[2].strip(_WSP)
        if not self.display_name:
            return body == self.address  # a bare addr-spec, already checked by check_address
        header = _parse_field(field)
        addresses = getattr(header, "addresses", ())
        if getattr(header, "defects", ()) or len(addresses) != 1 or addresses[0].addr_spec != self.address:
            return False
        angle = f"<{self.address}>"
        if not body.endswith(angle):
            return False
        return decode_phrase(body[: -len(angle)].strip(_WSP)) == self.display_name

    def encode(self) -> str:
        return encode_mailbox(self.name, self.display_name, self.address)


@dataclass(frozen=True)
class Verbatim:
    """An ASCII field that must reach the reader character for character, never as encoded-words (List-Unsubscribe,
    Message-ID, Date): its unfolded body must equal ``value``. ``separator``: where :func:`fold_ascii` may fold."""

    name: str
    value: str
    separator: str = " "

    def says(self, field: str) -> bool:
        # The value must start on the field's own line: CPython may fold right after the colon, which parsers
        # (CPython's included) then read back with a leading space.
        head, _, body = field.partition(":")
        if not body.startswith(" ") or body[1:2] in ("", "\r", "\n", " ", "\t"):
            return False
        return body.replace("\r\n", "").lstrip(_WSP) == self.value

    def encode(self) -> str:
        return fold_ascii(self.name, self.value, self.separator)


FieldSpec = Unstructured | Mailbox | Verbatim


def repair_headers(raw: bytes, specs: Sequence[FieldSpec], other_fields: Sequence[str] = ()) -> bytes:
    """Check the fields of ``raw`` (a serialised message) against ``specs`` and re-encode every one that breaks a
    rule of :func:`field_problems` or does not say what its spec says; return the (possibly) repaired bytes.

    ``other_fields``: names of fields that may appear besides the specs' (e.g. ``MIME-Version``,
    ``Content-Type``). Afterwards the header section must hold exactly one field per spec, nothing beyond
    ``other_fields``, and pass :func:`header_problems`; otherwise raises :class:`HeaderEncodingError`, so a broken
    or injected header is never sent.
    """
    head, body = split_header_section(raw)
    by_name = {spec.name.lower(): spec for spec in specs}
    out: list[str] = []
    for name, lines in header_fields(head):
        field = "\r\n".join(lines)
        spec = by_name.get(name.lower())
        if spec is not None and (field_problems(name, lines) or not spec.says(field)):
            field = checked_field(spec)  # ours is never trusted either
        out.append(field)
    repaired = "\r\n".join(out).encode("ascii", "replace") + b"\r\n\r\n" + body
    _verify(repaired, specs, other_fields)
    return repaired


def checked_field(spec: FieldSpec) -> str:
    """The whole field for ``spec`` written by our own encoder (``spec.encode()``: ``"Name: value"``, CRLF-folded, no
    final CRLF), after checking that it breaks no rule of :func:`field_problems` and says exactly what ``spec``
    says. For the fields that differ between per-recipient copies of a checked message (:mod:`core.mail_template`).
    Raises :class:`HeaderEncodingError` otherwise (a bug, never expected)."""
    field = spec.encode()
    problems = field_problems(spec.name, field.split("\r\n"))
    if problems:
        raise HeaderEncodingError("; ".join(problems))
    if not spec.says(field):
        raise HeaderEncodingError(f"{spec.name}: does not decode to the intended value")
    return field


def _verify(raw: bytes, specs: Sequence[FieldSpec], other_fields: Sequence[str]) -> None:
    """The whole header section passes :func:`header_problems` and holds one field per spec and nothing else."""
    problems = header_problems(raw)
    if problems:
        raise HeaderEncodingError("; ".join(problems))
    names = [name.lower() for name, _ in header_fields(split_header_section(raw)[0])]
    allowed = {spec.name.lower() for spec in specs} | {name.lower() for name in other_fields}
    unexpected = sorted(set(names) - allowed)
    if unexpected:
        raise HeaderEncodingError(f"unexpected header fields: {', '.join(unexpected)}")
    for spec in specs:
        count = names.count(spec.name.lower())
        if count != 1:
            raise HeaderEncodingError(f"{spec.name}: expected exactly one field, found {count}")
