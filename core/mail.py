"""Composing otayori's emails: a newsletter issue and the double opt-in confirmation, as bytes ready for SMTP.

No sending here (that is ``bots/email.py``): these functions only build RFC 5322 / MIME messages with the stdlib
``email`` package (``EmailMessage``, policy SMTP with 76-character lines), Jinja2 templates under
``core/templates/mail/`` and :mod:`core.render`.

Every message is ``multipart/alternative``: ``text/plain`` then ``text/html``, both UTF-8 and base64 (so any mail
path carries ①, ㈱, 髙, emoji and half-width kana intact; ISO-2022-JP cannot, reference/email-and-law.md). A photo
issue's picture goes inline in the HTML part (RFC 2387): the HTML part becomes ``multipart/related`` holding the
HTML, which shows the picture with ``<img src="cid:…">`` (RFC 2392), and the picture itself (base64, its
``Content-ID``); the text part is the same as without a picture. Header
fields with Japanese are RFC 2047 encoded-words, checked after CPython has folded them and re-encoded by
:mod:`core.mail_headers` when CPython got them wrong (see :func:`header_problems`).

The law's display items (特定電子メール法 Art. 4 and its ordinance; reference/email-and-law.md) are in both parts of
every message, in a footer block: (1) the sender's name; (2) an address or URL for refusing further mail with (3)
the statement that the recipient can refuse right beside it; (4) the sender's postal address; (5) a contact for
inquiries; plus the privacy policy link (APPI Art. 21). A newsletter also carries RFC 2369 ``List-Unsubscribe`` and
RFC 8058 ``List-Unsubscribe-Post`` and a visible unsubscribe link in the body (Gmail/Yahoo bulk sender rules, 2024).
The relay must DKIM-sign both List-Unsubscribe fields (RFC 8058 §4).

A newsletter issue is composed once (:func:`_newsletter_template`, kept for the last few issues) and each
recipient's message is a copy of it with To, Date, Message-ID, List-Unsubscribe and the unsubscribe link in both parts
filled in (:mod:`core.mail_template`): composing every message from scratch cost about 2.6 ms, a copy about 0.15 ms.

Pure: no I/O except reading the packaged templates on first use.
"""

from __future__ import annotations

import functools
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.headerregistry import Address
from email.errors import MessageError
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from typing import Any
from urllib.parse import urlsplit

import jinja2
from markupsafe import Markup, escape

from core.mail_headers import (
    HeaderEncodingError,
    Mailbox,
    Unstructured,
    Verbatim,
    address_domain,
    check_address,
    check_domain,
    checked_field,
    clean_display_name,
    clean_header_text,
    header_problems,
    repair_headers,
)
from core.mail_template import MessageTemplate
from core.render import render_email_html, render_plain_text
from core.settings import ENV_PREFIX, ConfigError

__all__ = [
    "HeaderEncodingError",
    "InlineImage",
    "SenderIdentity",
    "build_confirmation",
    "build_newsletter",
    "header_problems",
]

# RFC 2047 §2 limits lines holding encoded-words to 76 characters; CPython folds to policy.max_line_length.
_POLICY = SMTP.clone(max_line_length=76)
# Fields CPython adds itself (set_content / add_alternative); everything else in the header is ours.
_MIME_FIELDS = ("MIME-Version", "Content-Type")
_URL_SCHEMES = ("http", "https")
_PHONE_RE = re.compile(r"\+?[0-9][0-9 ()\-]{5,}[0-9]")
_CODE_RE = re.compile(r"[0-9]{6}")
# File-name suffix of an inline picture by MIME subtype (core.media allows JPEG and PNG only).
_SUFFIXES = {"jpeg": "jpg", "png": "png"}
# Fields of a newsletter that differ per recipient; everything else is the same for every recipient of an issue.
_PER_RECIPIENT = ("To", "Date", "Message-ID", "List-Unsubscribe")
# Issues whose newsletter template is kept: a broadcast sends one issue at a time; a few more cover broadcasts that
# overlap (`run` and a CLI broadcast) and rehearsals. Each holds the rendered parts (a few times the body's size).
_TEMPLATES_KEPT = 8

#: The value RFC 8058 §3.1 requires, verbatim.
ONE_CLICK = "List-Unsubscribe=One-Click"


@dataclass(frozen=True)
class SenderIdentity:
    """Who sends, and the display items every email must carry (特定電子メール法 Art. 4, ordinance).

    ``name``: the sender's name (display item 1), ``OTAYORI_SENDER_NAME``; also the From display name.
    ``mail_from``: the From address (``OTAYORI_MAIL_FROM``), plain ``local@domain`` (a non-ASCII domain is stored in
    IDNA form). ``postal_address``: display item 4 (``OTAYORI_SENDER_POSTAL_ADDRESS``). ``contact``: display item 5,
    a phone number, email address or URL for complaints and inquiries (``OTAYORI_SENDER_CONTACT``).
    ``reply_to``: ``OTAYORI_REPLY_TO``, a Reply-To field when set. ``unsubscribe_mailto``:
    ``OTAYORI_UNSUBSCRIBE_MAILTO``, the ``mailto:`` form of List-Unsubscribe when set.

    Raises ``ValueError`` when a required item is blank or an address is malformed (see
    :func:`core.mail_headers.check_address`); use :meth:`from_settings` to get a :class:`ConfigError` naming the
    setting instead.
    """

    name: str
    mail_from: str
    postal_address: str
    contact: str
    reply_to: str | None = None
    unsubscribe_mailto: str | None = None

    def __post_init__(self) -> None:
        for field_name in ("name", "mail_from", "postal_address", "contact"):
            if not clean_header_text(getattr(self, field_name) or ""):
                raise ValueError(f"SenderIdentity.{field_name} is required (特定電子メール法 Art. 4 display items)")
        object.__setattr__(self, "mail_from", check_address(self.mail_from, "mail_from"))
        for field_name in ("reply_to", "unsubscribe_mailto"):
            value = getattr(self, field_name)
            cleaned = check_address(value, field_name) if value is not None and value.strip() else None
            object.__setattr__(self, field_name, cleaned)

    @classmethod
    def from_settings(cls, settings: Any) -> SenderIdentity:
        """The identity from a :class:`core.settings.Settings` (or any object with the same attributes).

        Raises :class:`ConfigError` naming the first missing setting among ``OTAYORI_SENDER_NAME``,
        ``OTAYORI_MAIL_FROM``, ``OTAYORI_SENDER_POSTAL_ADDRESS``, ``OTAYORI_SENDER_CONTACT`` (email sending refuses
        to start without the display items of 特定電子メール法 Art. 4), or the first malformed address among
        ``OTAYORI_MAIL_FROM``, ``OTAYORI_REPLY_TO``, ``OTAYORI_UNSUBSCRIBE_MAILTO``. ``str(error)`` is one line.
        """
        required = (
            ("sender_name", "display item 1, the sender's name"),
            ("mail_from", "the From address"),
            ("sender_postal_address", "display item 4, the sender's postal address"),
            ("sender_contact", "display item 5, a phone number, email or URL for inquiries"),
        )
        values: dict[str, str | None] = {}
        for attribute, meaning in required:
            value = getattr(settings, attribute, None)
            if not clean_header_text(value or ""):
                raise ConfigError(
                    f"{ENV_PREFIX}{attribute.upper()}",
                    f"required for email ({meaning}; 特定電子メール法 Art. 4): email sending refuses to start",
                )
            values[attribute] = value.strip()
        for attribute in ("mail_from", "reply_to", "unsubscribe_mailto"):
            value = getattr(settings, attribute, None)
            if value is not None and value.strip():
                try:
                    check_address(value, attribute)
                except ValueError as exc:
                    problem = str(exc).partition(": ")[2] or str(exc)
                    raise ConfigError(f"{ENV_PREFIX}{attribute.upper()}", problem) from None
            values[attribute] = value
        return cls(
            name=values["sender_name"] or "",
            mail_from=values["mail_from"] or "",
            postal_address=values["sender_postal_address"] or "",
            contact=values["sender_contact"] or "",
            reply_to=values["reply_to"],
            unsubscribe_mailto=values["unsubscribe_mailto"],
        )

    @property
    def refusal_address(self) -> str:
        """The email address people may write to in order to refuse mail (display item 2 where no URL applies, e.g.
        the confirmation mail): ``unsubscribe_mailto``, else ``reply_to``, else ``mail_from``."""
        return self.unsubscribe_mailto or self.reply_to or self.mail_from


@dataclass(frozen=True)
class InlineImage:
    """A picture shown inline in a newsletter's HTML part (a photo issue's flyer).

    ``sha256``: hex SHA-256 of ``data`` (names it: the Content-ID and the file name derive from it); ``content_type``:
    ``image/jpeg`` or ``image/png``; ``data``: the bytes, put in the message unchanged (base64). Equality and hash
    use ``sha256`` and ``content_type`` only, so the composed issue is cached per picture without hashing its bytes.
    """

    sha256: str
    content_type: str
    data: bytes = field(compare=False, repr=False)

    def content_id(self, domain: str) -> str:
        """The Content-ID without angle brackets (RFC 2392 ``cid:`` URLs use it so): ``<32 hex>@<domain>``."""
        return f"{self.sha256[:32]}@{domain}"


# ---------------------------------------------------------------------------------------------------------------
# Templates


@functools.cache
def _templates() -> jinja2.Environment:
    """The Jinja2 environment for ``core/templates/mail/``, built on first use. ``*.html`` is autoescaped, ``*.txt``
    is not (plain text has nothing to escape); an undefined variable is an error, never an empty string."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("core", "templates/mail"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=True, default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _render(name: str, **context: object) -> str:
    return _templates().get_template(name).render(**context)


def _contact_href(contact: str) -> str | None:
    """A link for the inquiry contact in the HTML part: the URL itself, ``mailto:`` for an address, ``tel:`` for a
    phone number; None for anything else (shown as text)."""
    value = contact.strip()
    parts = urlsplit(value)
    if parts.scheme in _URL_SCHEMES and parts.netloc and _plain_url(value):
        return value
    try:
        return "mailto:" + check_address(value)
    except ValueError:
        pass
    if _PHONE_RE.fullmatch(value):
        return "tel:" + re.sub(r"[^0-9+]", "", value)
    return None


def _footer_context(sender: SenderIdentity, privacy_url: str) -> dict[str, object]:
    return {
        "sender_name": sender.name.strip(),
        "postal_address": sender.postal_address.strip(),
        "contact": sender.contact.strip(),
        "contact_href": _contact_href(sender.contact),
        "privacy_url": privacy_url,
        "unsubscribe_mailto": sender.unsubscribe_mailto,
        "refusal_address": sender.refusal_address,
    }


# ---------------------------------------------------------------------------------------------------------------
# Checks of arguments


def _plain_url(url: str) -> bool:
    return url.isascii() and not re.search(r"[\x00-\x20\x7f<>\"]", url)


def _check_url(url: str, what: str) -> str:
    """``url`` trimmed, or ``ValueError``: it must be an absolute http(s) URL in ASCII (percent-encoded) with no
    whitespace, control characters, ``<``, ``>`` or ``"`` (it goes into headers and attributes verbatim)."""
    value = url.strip()
    parts = urlsplit(value)
    if parts.scheme.lower() not in _URL_SCHEMES or not parts.netloc:
        raise ValueError(f"{what}: must be an absolute http:// or https:// URL")
    if not _plain_url(value):
        raise ValueError(f"{what}: must be ASCII (percent-encoded) without spaces, control characters, <, > or \"")
    return value


def _date_field(date: datetime | None) -> str:
    moment = date if date is not None else datetime.now(timezone.utc)
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("date must be timezone-aware (all otayori timestamps are)")
    return format_datetime(moment)


# ---------------------------------------------------------------------------------------------------------------
# Assembly


def _cpython_value(spec: Mailbox | Unstructured | Verbatim) -> object:
    if isinstance(spec, Mailbox):
        if not spec.display_name:
            return spec.address
        local, _, domain = spec.address.rpartition("@")
        return Address(display_name=spec.display_name, username=local, domain=domain)
    if isinstance(spec, Unstructured):
        return spec.text
    return spec.value


def _compose(
    *,
    sender: SenderIdentity,
    to: str,
    subject: str,
    plain: str,
    html: str,
    extra: list[Verbatim],
    domain: str,
    date: datetime | None,
    image: InlineImage | None = None,
) -> bytes:
    """Build the message with CPython, then let :func:`repair_headers` check every field we set and re-encode the
    ones CPython folded wrongly. ``domain``: the Message-ID's right-hand side, already checked. ``image``: a picture
    that ``html`` shows as ``cid:`` + :meth:`InlineImage.content_id` (``domain``): the HTML part becomes
    ``multipart/related`` with it. Raises :class:`HeaderEncodingError` rather than return a broken message."""
    specs: list[Mailbox | Unstructured | Verbatim] = [
        Mailbox("From", clean_display_name(sender.name), sender.mail_from),
        Mailbox("To", "", to),
        Unstructured("Subject", subject),
        Verbatim("Date", _date_field(date)),
        Verbatim("Message-ID", make_msgid(domain=domain)),
    ]
    if sender.reply_to:
        specs.append(Mailbox("Reply-To", "", sender.reply_to))
    specs.extend(extra)

    message = EmailMessage(policy=_POLICY)
    for spec in specs:
        try:
            message[spec.name] = _cpython_value(spec)
        except (ValueError, TypeError, MessageError):
            # CPython refused the value (its parser has limits of its own): put a stand-in that cannot pass the spec
            # check, so repair_headers writes this field itself.
            message[spec.name] = "-"
    message.set_content(plain, subtype="plain", charset="utf-8", cte="base64")
    message.add_alternative(html, subtype="html", charset="utf-8", cte="base64")
    if image is not None:
        maintype, _, subtype = image.content_type.partition("/")
        html_part = message.get_payload()[1]
        # add_related turns the HTML part into multipart/related: [the HTML, the picture] (RFC 2387).
        html_part.add_related(image.data, maintype, subtype, cid=f"<{image.content_id(domain)}>",
                              disposition="inline", filename=f"flyer-{image.sha256[:12]}.{_SUFFIXES[subtype]}")
    return repair_headers(message.as_bytes(), specs, _MIME_FIELDS)


def _message_id_domain(sender: SenderIdentity, message_id_domain: str | None) -> str:
    if message_id_domain:
        return check_domain(message_id_domain, "message_id_domain")
    return address_domain(sender.mail_from)


def _list_unsubscribe(sender: SenderIdentity, unsubscribe_url: str) -> Verbatim:
    """RFC 2369 §3.2 ``List-Unsubscribe``: the one-click URL, plus the ``mailto:`` form when configured."""
    targets = [f"<{unsubscribe_url}>"]
    if sender.unsubscribe_mailto:
        targets.append(f"<mailto:{sender.unsubscribe_mailto}?subject=unsubscribe>")
    return Verbatim("List-Unsubscribe", ", ".join(targets), ", ")


@functools.lru_cache(maxsize=_TEMPLATES_KEPT)
def _newsletter_template(
    sender: SenderIdentity, title: str, body_markdown: str, privacy_url: str, domain: str,
    image: InlineImage | None = None,
) -> MessageTemplate:
    """The issue's newsletter as a :class:`MessageTemplate`: composed once by :func:`_compose` (CPython, then checked
    and repaired by :func:`repair_headers`) for a stand-in recipient, with a random stand-in link where each
    recipient's unsubscribe URL goes. Kept for the last :data:`_TEMPLATES_KEPT` distinct arguments: every input that
    shapes the message is part of the key, so an edited issue, sender or privacy URL gets a new template."""
    # 128 random bits: no title, body or display item can contain it, so it marks only the link's places.
    stand_in = f"https://otayori.invalid/unsubscribe/{secrets.token_hex(16)}"
    subject = clean_header_text(title) or clean_header_text(sender.name)
    context = {**_footer_context(sender, privacy_url), "title": subject, "unsubscribe_url": stand_in}
    plain = _render("newsletter.txt", body_text=render_plain_text(body_markdown), **context)
    html = _render("newsletter.html", body_html=Markup(render_email_html(body_markdown)),
                   image_cid=image.content_id(domain) if image is not None else None, **context)
    raw = _compose(
        sender=sender,
        to="recipient@otayori.invalid",
        subject=subject,
        plain=plain,
        html=html,
        extra=[_list_unsubscribe(sender, stand_in), Verbatim("List-Unsubscribe-Post", ONE_CLICK)],
        domain=domain,
        date=None,
        image=image,
    )
    return MessageTemplate(raw, policy=_POLICY, varying=_PER_RECIPIENT, placeholder=stand_in)


def build_newsletter(
    *,
    sender: SenderIdentity,
    to: str,
    title: str,
    body_markdown: str,
    unsubscribe_url: str,
    privacy_url: str,
    message_id_domain: str | None = None,
    date: datetime | None = None,
    image: InlineImage | None = None,
) -> bytes:
    """One newsletter issue for one recipient, as the bytes to hand to SMTP (CRLF line ends, 7-bit ASCII).

    ``sender``: who sends and the display items. ``to``: the recipient's address (plain ``local@domain``; refused
    with ``ValueError`` when it holds whitespace, a line break or a display name). ``title``: the issue title, the
    Subject and the heading of both parts; line breaks and control characters become spaces, ends are trimmed, and
    an empty title falls back to the sender's name. ``body_markdown``: the issue body (CommonMark), rendered by
    :func:`core.render.render_plain_text` and :func:`core.render.render_email_html` (raw HTML shown as text).
    ``unsubscribe_url``: this recipient's one-click URL (``https://…/unsubscribe/TOKEN``; RFC 8058 §3.1 requires
    HTTPS in production, ``http://`` is accepted for the loopback rehearsal). ``privacy_url``: the privacy page.
    Both URLs must be absolute ASCII http(s) URLs without spaces (``ValueError`` otherwise).
    ``message_id_domain``: right-hand side of the Message-ID; default the domain of ``sender.mail_from``.
    ``date``: the Date field, timezone-aware (``ValueError`` if naive); default now in UTC.
    ``image``: a photo issue's picture, shown under the title in the HTML part (``multipart/related``, see the
    module docstring); ``ValueError`` unless it is ``image/jpeg`` or ``image/png``.

    Fields: From (encoded display name), To, Subject, Date, Message-ID, Reply-To (only when
    ``sender.reply_to``), ``List-Unsubscribe: <unsubscribe_url>`` plus ``, <mailto:ADDR?subject=unsubscribe>`` when
    ``sender.unsubscribe_mailto`` is set (RFC 2369 §3.2), ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``
    (RFC 8058 §3.1), MIME-Version, Content-Type ``multipart/alternative``. Raises :class:`HeaderEncodingError` if
    a header cannot be made valid (a bug, never expected).

    Speed: everything that is the same for every recipient of an issue (the rendered parts, From, Subject and the
    MIME structure) is composed and checked once per issue (:func:`_newsletter_template`); per recipient only To,
    Date, Message-ID, List-Unsubscribe (each checked by :func:`core.mail_headers.checked_field`) and the link in
    both parts are filled in (:class:`core.mail_template.MessageTemplate`).
    """
    recipient = check_address(to, "to")
    unsubscribe = _check_url(unsubscribe_url, "unsubscribe_url")
    privacy = _check_url(privacy_url, "privacy_url")
    domain = _message_id_domain(sender, message_id_domain)
    moment = _date_field(date)
    if image is not None and image.content_type not in ("image/jpeg", "image/png"):
        raise ValueError(f"image: JPEG or PNG expected, got {image.content_type!r}")
    template = _newsletter_template(sender, title, body_markdown, privacy, domain, image)
    fields = {
        "To": checked_field(Mailbox("To", "", recipient)),
        "Date": checked_field(Verbatim("Date", moment)),
        "Message-ID": checked_field(Verbatim("Message-ID", make_msgid(domain=domain))),
        "List-Unsubscribe": checked_field(_list_unsubscribe(sender, unsubscribe)),
    }
    # The HTML part gets the link as Jinja's autoescape would have written it (the stand-in needs no escaping).
    return template.fill(fields, {"plain": unsubscribe, "html": str(escape(unsubscribe))})


def confirmation_subject(sender: SenderIdentity) -> str:
    """The Subject of the confirmation mail: ``【<sender name>】メールアドレスのご確認``."""
    return clean_header_text(f"【{clean_display_name(sender.name)}】メールアドレスのご確認")


def build_confirmation(
    *,
    sender: SenderIdentity,
    to: str,
    confirm_url: str,
    code: str,
    expires_hours: int,
    privacy_url: str,
    purpose_of_use: str,
    newsletter_description: str,
    date: datetime | None = None,
) -> bytes:
    """The double opt-in confirmation mail, as bytes for SMTP (CRLF line ends, 7-bit ASCII).

    Lawful only to an address the person just gave us (a mail asking for consent is itself advertising mail:
    reference/email-and-law.md), so it carries the display items too. ``to``: that address (``ValueError`` if
    malformed). ``confirm_url``: ``https://…/email/confirm/TOKEN``, a page whose POST button confirms.
    ``code``: the 6-digit code the person may type in the chat instead (exactly six ASCII digits, else
    ``ValueError``). ``expires_hours``: lifetime of the link and the code in whole hours, >= 1 (from
    ``OTAYORI_CONFIRM_TTL_SECONDS``). ``privacy_url``: the privacy page. ``purpose_of_use``: APPI Art. 21 purpose
    (``OTAYORI_PURPOSE_OF_USE``). ``newsletter_description``: what is sent and how often
    (``OTAYORI_NEWSLETTER_DESCRIPTION``). ``date``: timezone-aware, default now (UTC).

    Both parts say what they will receive and why, give the link, the code and the expiry, and say "if you did not
    ask for this, ignore this mail: nothing will be sent", plus the display items and an address for refusing
    (:attr:`SenderIdentity.refusal_address`). Fields as :func:`build_newsletter` without the List-Unsubscribe
    fields (there is nothing to unsubscribe from yet). Raises :class:`HeaderEncodingError` as there.
    """
    recipient = check_address(to, "to")
    confirm = _check_url(confirm_url, "confirm_url")
    privacy = _check_url(privacy_url, "privacy_url")
    if not isinstance(code, str) or not _CODE_RE.fullmatch(code):
        raise ValueError("code: must be exactly six ASCII digits")
    if isinstance(expires_hours, bool) or not isinstance(expires_hours, int) or expires_hours < 1:
        raise ValueError("expires_hours: must be a whole number of hours, at least 1")
    subject = confirmation_subject(sender)
    context = {
        **_footer_context(sender, privacy),
        "title": subject,
        "confirm_url": confirm,
        "code": code,
        "expires_hours": expires_hours,
        "purpose_of_use": purpose_of_use.strip(),
        "newsletter_description": newsletter_description.strip(),
    }
    plain = _render("confirmation.txt", **context)
    html = _render("confirmation.html", **context)
    return _compose(
        sender=sender,
        to=recipient,
        subject=subject,
        plain=plain,
        html=html,
        extra=[],
        domain=address_domain(sender.mail_from),
        date=date,
    )
