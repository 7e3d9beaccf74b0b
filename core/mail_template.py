"""Per-recipient copies of one composed message: built and checked once, only the blanks filled in for each copy.

A newsletter issue goes to thousands of recipients whose messages differ only in a few header fields (To, Message-ID,
Date, List-Unsubscribe) and in the unsubscribe link inside each body part. Composing each of them from scratch with
CPython's header machinery cost about 2.6 ms (mostly ``email._header_value_parser`` parsing and refolding every field
again, bench/README.md "What limits it"). :class:`MessageTemplate` takes the message once, as :mod:`core.mail`
composed it and :func:`core.mail_headers.repair_headers` checked it, with a placeholder where the link goes, and
derives each copy with the stdlib ``email`` package: a new ``EmailMessage`` tree carrying the template's header fields
exactly as they were written and checked, the varying fields replaced by fields the caller encoded and checked
(:func:`core.mail_headers.checked_field`), and each body part's content equal to the template's with the placeholder
replaced, base64-encoded by ``email.base64mime`` and serialised by ``email.generator.BytesGenerator``.

Pure: no I/O.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from email.base64mime import body_encode
from email.message import EmailMessage, MIMEPart
from email.parser import BytesParser
from email.policy import EmailPolicy

__all__ = ["MessageTemplate"]


class _AsWritten(EmailPolicy):
    """An ``email`` policy that keeps every header field exactly as written: what follows the colon is stored as
    parsed (folds and the leading space included) or as given, and written back unchanged, never parsed into a
    header object nor refolded. Only for copies of a checked template: every value stored through it is a template
    field or a field the caller checked, already folded with CRLF."""

    def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
        # As EmailPolicy's, without stripping the whitespace after the colon (a field may start on its second line).
        name, value = sourcelines[0].split(":", 1)
        return (name, (value + "".join(sourcelines[1:])).rstrip("\r\n"))

    def header_store_parse(self, name: str, value: str) -> tuple[str, str]:  # type: ignore[override]
        return (name, value)

    def header_max_count(self, name: str) -> None:
        # The copy has the checked template's fields, one each (core.mail_headers.repair_headers verified that); the
        # registry lookup behind the default builds a header class per call, a third of a copy's cost.
        return None

    def header_fetch_parse(self, name: str, value: str) -> str:  # type: ignore[override]
        # The generator reads Content-Type (subtype, boundary) of every part: plain text is enough for that
        # (email.message parses parameters from text), and parsing it into a header object each time is what costs.
        return "".join(value.splitlines()).strip()

    def fold(self, name: str, value: str) -> str:
        return f"{name}:{value}{self.linesep}"

    def fold_binary(self, name: str, value: str) -> bytes:
        return self.fold(name, value).encode("ascii")


@dataclass(frozen=True)
class _Part:
    """One part of the template, with its header fields as written, and one of: ``pieces``, a text part's decoded
    content cut at the placeholder (``len(pieces) - 1`` placeholders; ``subtype``: ``plain``, ``html``, ...);
    ``payload``, a part copied as it is (an inline image: its base64 text, encoded once); ``children``, the parts
    of a nested multipart (``multipart/related``: the HTML part and its images)."""

    fields: tuple[tuple[str, str], ...]
    subtype: str
    pieces: tuple[bytes, ...] | None = None
    payload: str | None = None
    children: tuple[_Part, ...] = ()
    preamble: str | None = None
    epilogue: str | None = None
    #: For a ``payload`` part: the random one-line text each copy carries in its place until it is spliced in.
    stand_in: str | None = None


class MessageTemplate:
    """A serialised ``multipart/*`` message with text parts (``raw``, CRLF line ends, as :mod:`core.mail` builds them)
    turned into a template for per-recipient copies.

    ``policy``: the policy ``raw`` was written with (its ``linesep`` and ``max_line_length`` are kept, so a copy is
    byte for byte what the same policy would write). ``varying``: names of top-level fields that every copy replaces
    (each must occur exactly once in ``raw``). ``placeholder``: an ASCII string standing for the per-recipient text in
    the body parts (e.g. the unsubscribe link); it must occur in every text part at least once and nowhere else than
    where the per-recipient text belongs. Parts that are not text (an inline image inside a nested
    ``multipart/related``) are copied unchanged into every copy.

    Raises ``ValueError`` when ``raw`` is not a multipart message of base64 parts, a varying field is missing or
    repeated, a text part does not contain the placeholder, or a field that is not varying does.
    """

    def __init__(self, raw: bytes, *, policy: EmailPolicy, varying: tuple[str, ...], placeholder: str) -> None:
        self._policy = _AsWritten(linesep=policy.linesep, max_line_length=policy.max_line_length or 76)
        parsed = BytesParser(policy=self._policy).parsebytes(raw)
        if not parsed.is_multipart():
            raise ValueError("template: a multipart message is expected")
        wanted = {name.lower() for name in varying}
        fields = list(parsed.raw_items())
        for name in wanted:
            if sum(1 for field_name, _ in fields if field_name.lower() == name) != 1:
                raise ValueError(f"template: field {name!r} must occur exactly once")
        #: Top-level fields in order; a varying one is ``(name, None)``.
        self._fields: tuple[tuple[str, str | None], ...] = tuple(
            (name, None if name.lower() in wanted else value) for name, value in fields
        )
        if any(value is not None and placeholder in value for _, value in self._fields):
            raise ValueError("template: the placeholder is in a field that every copy would keep")
        self._preamble, self._epilogue = parsed.preamble, parsed.epilogue
        mark = placeholder.encode("ascii")
        self._parts = tuple(_template_part(part, mark) for part in parsed.iter_parts())
        # Parts copied as they are (inline pictures, megabytes of base64) are not written line by line by the
        # generator for every copy: each copy carries a one-line stand-in, replaced in the bytes by the part's
        # payload serialised once (about 30 ms less per copy for a 2.4 MB picture).
        linesep = self._policy.linesep
        self._verbatim = {
            part.stand_in: (linesep.join(part.payload.splitlines())
                            + (linesep if part.payload.endswith("\n") else "")).encode("ascii")
            for part in _leaves(self._parts) if part.payload is not None and part.stand_in is not None
        }

    def fill(self, fields: Mapping[str, str], text: Mapping[str, str]) -> bytes:
        """One copy, serialised: the template's bytes with each varying field replaced by ``fields[name]`` and the
        placeholder of each body part replaced by ``text[subtype]`` (e.g. ``{"plain": url, "html": escaped url}``).

        ``fields``: for every varying name (as given to the constructor), the whole field ``"Name: value"`` folded
        with CRLF and already checked (:func:`core.mail_headers.checked_field`); stored and written unchanged.
        Raises ``KeyError`` when a varying field or a part's text is missing, ``ValueError`` when a field is given
        under the wrong name.
        """
        message = EmailMessage(policy=self._policy)
        by_name = {name.lower(): field for name, field in fields.items()}
        for name, value in self._fields:
            if value is None:
                field = by_name[name.lower()]
                given, colon, value = field.partition(":")
                if not colon or given.lower() != name.lower():
                    raise ValueError(f"field for {name!r} does not start with '{name}:'")
            message[name] = value
        for template in self._parts:
            message.attach(self._copy(template, text))
        message.preamble, message.epilogue = self._preamble, self._epilogue
        raw = message.as_bytes()
        for stand_in, payload in self._verbatim.items():
            raw = raw.replace(stand_in.encode("ascii"), payload, 1)  # 128 random bits: occurs once, where it was put
        return raw

    def _copy(self, template: _Part, text: Mapping[str, str]) -> MIMEPart:
        part = MIMEPart(policy=self._policy)
        for name, value in template.fields:
            part[name] = value
        if template.pieces is not None:
            content = text[template.subtype].encode("utf-8").join(template.pieces)
            part.set_payload(body_encode(content, maxlinelen=self._policy.max_line_length))
        elif template.payload is not None:
            part.set_payload(template.stand_in)  # the payload itself goes in at the end of fill()
        else:
            for child in template.children:
                part.attach(self._copy(child, text))
            part.preamble, part.epilogue = template.preamble, template.epilogue
        return part


def _leaves(parts: tuple[_Part, ...]) -> list[_Part]:
    """Every part that is not a multipart, depth first (the order they are written in)."""
    return [leaf for part in parts for leaf in (_leaves(part.children) if part.children else [part])]


def _template_part(part: EmailMessage | MIMEPart, mark: bytes) -> _Part:
    """One part of the parsed template as a :class:`_Part` (recursively for a nested multipart)."""
    fields, subtype = tuple(part.raw_items()), part.get_content_subtype()
    if part.is_multipart():
        return _Part(fields, subtype, children=tuple(_template_part(child, mark) for child in part.iter_parts()),
                     preamble=part.preamble, epilogue=part.epilogue)
    if str(part.get("Content-Transfer-Encoding", "")).strip().lower() != "base64":
        raise ValueError("template: body parts must be base64 encoded")
    if part.get_content_maintype() != "text":
        return _Part(fields, subtype, payload=str(part.get_payload()),
                     stand_in=f"otayori-verbatim-{secrets.token_hex(16)}")
    content = part.get_payload(decode=True)
    if mark not in content:
        raise ValueError(f"template: the {subtype} part lacks the placeholder")
    return _Part(fields, subtype, pieces=tuple(content.split(mark)))

