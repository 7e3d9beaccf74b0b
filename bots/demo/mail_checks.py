"""The demo's email checks, made on the bytes the SMTP sink received (pure: parsing only, no I/O).

Rules (issue 3; reference/email-and-law.md): a confirmation mail went to each address that asked, once; each
confirmed address got the issue exactly once; the address that never confirmed got its confirmation and nothing
else; no newsletter went anywhere else; every newsletter copy is ``multipart/alternative`` with clean RFC 2047
headers and a Subject that decodes to the issue title exactly; it carries ``List-Unsubscribe`` with an ``https://``
URL (``http://`` only on a loopback host: the rehearsal) and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``
(RFC 2369, RFC 8058 §3.1); the law's display items (sender's name, postal address, inquiry contact, and the
配信停止 statement right beside the unsubscribe URL: 特定電子メール法 Art. 4) are visible in both the text and the
HTML part; opening a confirmation link with a GET changed nothing; the endpoints' states match the script.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import html
import ipaddress
import re
from collections import Counter
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urlsplit

from bots.demo.facts import Check, Expectation, Observation, ReceivedMail, sample
from core.mail import ONE_CLICK
from core.mail_headers import header_problems

#: The word of the refusal statement (display item 3) that must stand right beside the unsubscribe URL.
REFUSAL_WORD = "配信停止"
#: "Right beside": the statement starts at most this many characters (of visible text) before the URL.
BESIDE_CHARACTERS = 200


@dataclass(frozen=True)
class MailFacts:
    """What a reader's mail client shows of one received message.

    ``recipients``: the envelope's RCPT TO, lower-cased. ``subject``: the decoded Subject (None if absent).
    ``content_type``: of the top-level entity. ``list_unsubscribe`` / ``list_unsubscribe_post``: the field values
    (None if absent). ``plain`` / ``html``: the decoded text of the ``text/plain`` part and the *visible* text of the
    ``text/html`` part (tags dropped, entities decoded), None if the part is missing. ``header_problems``: RFC 2047 and
    header-syntax problems (:func:`core.mail_headers.header_problems`). ``error``: why the bytes could not be read.
    """

    recipients: tuple[str, ...]
    subject: str | None
    content_type: str
    list_unsubscribe: str | None
    list_unsubscribe_post: str | None
    plain: str | None
    html: str | None
    header_problems: tuple[str, ...]
    error: str | None = None


class _VisibleText(HTMLParser):
    """Collects the text a mail client renders: everything outside ``<head>``, ``<style>`` and ``<script>``."""

    _HIDDEN = frozenset({"head", "style", "script", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden += 1
        elif tag in ("br", "p", "div", "li", "tr", "h1", "h2", "h3"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def visible_text(markup: str) -> str:
    """The text of an HTML document as a reader sees it (tags dropped, ``&amp;`` etc. decoded)."""
    parser = _VisibleText()
    parser.feed(markup)
    parser.close()
    return html.unescape("".join(parser.parts))


def _part_text(message: email.message.EmailMessage, subtype: str) -> str | None:
    part = message.get_body((subtype,))
    if part is None:
        return None
    content = part.get_content()
    return content if isinstance(content, str) else None


def read_mail(mail: ReceivedMail) -> MailFacts:
    """Parse ``mail.data`` with ``email.policy.default`` into :class:`MailFacts`; never raises (a message that cannot
    be read gets ``error`` set)."""
    recipients = tuple(r.lower() for r in mail.recipients)
    problems = tuple(header_problems(mail.data))
    try:
        message = email.message_from_bytes(mail.data, policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        subject = message.get("Subject")
        unsubscribe = message.get("List-Unsubscribe")
        post = message.get("List-Unsubscribe-Post")
        markup = _part_text(message, "html")
        return MailFacts(
            recipients=recipients,
            subject=None if subject is None else str(subject),
            content_type=message.get_content_type(),
            list_unsubscribe=None if unsubscribe is None else str(unsubscribe),
            list_unsubscribe_post=None if post is None else str(post),
            plain=_part_text(message, "plain"),
            html=None if markup is None else visible_text(markup),
            header_problems=problems,
        )
    except Exception as exc:  # a check reports whatever arrived; it never crashes on it
        return MailFacts(recipients, None, "", None, None, None, None, problems, f"{type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class SortedMail:
    """The sink's messages by kind: ``confirmations[address]`` (confirmation mails per recipient) and
    ``newsletters`` (every other message, parsed), plus ``copies[address]`` (newsletter copies per recipient)."""

    confirmations: Counter[str]
    newsletters: tuple[MailFacts, ...]
    copies: Counter[str]


def sort_mail(mails: tuple[ReceivedMail, ...], confirmation_subject: str) -> SortedMail:
    """Split ``mails`` into confirmation mails (Subject = ``confirmation_subject``) and newsletter copies (the
    rest: a newsletter whose Subject went wrong still counts as a copy, and fails the Subject check)."""
    confirmations: Counter[str] = Counter()
    newsletters: list[MailFacts] = []
    copies: Counter[str] = Counter()
    for mail in mails:
        facts = read_mail(mail)
        if facts.subject == confirmation_subject:
            confirmations.update(facts.recipients)
        else:
            newsletters.append(facts)
            copies.update(facts.recipients)
    return SortedMail(confirmations, tuple(newsletters), copies)


def unsubscribe_urls(value: str) -> list[str]:
    """The http(s) targets of a ``List-Unsubscribe`` value (``<https://…>, <mailto:…>``: RFC 2369 §3.2)."""
    return [t.strip() for t in re.findall(r"<([^>]*)>", value) if t.strip().lower().startswith(("http:", "https:"))]


def acceptable_unsubscribe_url(url: str) -> bool:
    """``https://`` with a host, or ``http://`` on a loopback host (the rehearsal; RFC 8058 §3.1 wants HTTPS), with
    an ``/unsubscribe/`` path."""
    parts = urlsplit(url)
    if "/unsubscribe/" not in parts.path or not parts.hostname:
        return False
    if parts.scheme == "https":
        return True
    if parts.scheme != "http":
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def _who(facts: MailFacts) -> str:
    return ",".join(facts.recipients) or "?"


def _format_problems(facts: MailFacts, title: str) -> list[str]:
    if facts.error:
        return [f"{_who(facts)}: unreadable ({facts.error})"]
    problems = []
    if facts.content_type != "multipart/alternative":
        problems.append(f"{_who(facts)}: {facts.content_type or 'no content type'}")
    if facts.subject != title:
        problems.append(f"{_who(facts)}: Subject {facts.subject!r}")
    problems.extend(f"{_who(facts)}: {p}" for p in facts.header_problems[:1])
    return problems


def _unsubscribe_problems(facts: MailFacts) -> list[str]:
    if facts.error:
        return [f"{_who(facts)}: unreadable"]
    problems = []
    urls = unsubscribe_urls(facts.list_unsubscribe or "")
    if not urls:
        problems.append(f"{_who(facts)}: no List-Unsubscribe URL")
    elif not all(acceptable_unsubscribe_url(u) for u in urls):
        problems.append(f"{_who(facts)}: List-Unsubscribe {facts.list_unsubscribe!r}")
    if facts.list_unsubscribe_post != ONE_CLICK:
        problems.append(f"{_who(facts)}: List-Unsubscribe-Post {facts.list_unsubscribe_post!r}")
    return problems


def _beside(text: str, url: str) -> bool:
    """The refusal statement stands right before the URL's first appearance in ``text``."""
    at = text.find(url)
    return at >= 0 and REFUSAL_WORD in text[max(0, at - BESIDE_CHARACTERS):at]


def _display_problems(facts: MailFacts, items: tuple[str, ...]) -> list[str]:
    if facts.error:
        return [f"{_who(facts)}: unreadable"]
    urls = unsubscribe_urls(facts.list_unsubscribe or "")
    problems = []
    for part, text in (("text", facts.plain), ("html", facts.html)):
        if text is None:
            problems.append(f"{_who(facts)}: no {part} part")
            continue
        lacking = [item for item in items if item not in text]
        if not urls or not _beside(text, urls[0]):
            lacking.append(f"{REFUSAL_WORD} + URL")
        if lacking:
            problems.append(f"{_who(facts)} {part} lacks {' / '.join(lacking)}")
    return problems


def verify_mail(expected: Expectation, observed: Observation) -> list[Check]:
    """The email rules of the module docstring, one :class:`Check` each (pure)."""
    checks: list[Check] = []
    mail = sort_mail(observed.mails, expected.mail.confirmation_subject)
    requesters = expected.email_requesters

    wrong = [f"{a}×{mail.confirmations.get(a, 0)}" for a in sorted(requesters) if mail.confirmations.get(a, 0) != 1]
    wrong += [f"{a}×{n} (did not ask)" for a, n in sorted(mail.confirmations.items()) if a not in requesters]
    checks.append(Check(not wrong, "確認メールは申し込んだ人に1通ずつ / one confirmation mail per address that asked",
                        f"wrong: {sample(wrong)}" if wrong else
                        f"{len(requesters)} addresses, {sum(mail.confirmations.values())} mails"))

    confirmed = expected.email_recipients
    missing = [a for a in sorted(confirmed) if mail.copies.get(a, 0) == 0]
    doubled = [f"{a}×{mail.copies[a]}" for a in sorted(confirmed) if mail.copies.get(a, 0) > 1]
    once = sum(1 for a in confirmed if mail.copies.get(a, 0) == 1)
    detail = f"{once}/{len(confirmed)}"
    if missing:
        detail += f"; missing: {sample(missing)}"
    if doubled:
        detail += f"; more than once: {sample(doubled)}"
    checks.append(Check(not missing and not doubled, "確認済みのメールアドレスに1通ずつ届いた / each confirmed email "
                        "address got the issue exactly once", detail))

    pending = expected.email_pending
    leaked = [f"{a}×{mail.copies[a]}" for a in sorted(pending) if mail.copies.get(a, 0)]
    unconfirmed_mails = sum(mail.confirmations.get(a, 0) for a in pending)
    checks.append(Check(not leaked and unconfirmed_mails == len(pending),
                        "確認しなかった人には確認メールだけ / the unconfirmed address got only its confirmation",
                        f"leaked: {sample(leaked)}" if leaked else
                        f"{len(pending)} pending: {unconfirmed_mails} confirmation, 0 copies of the issue"))

    strangers = [f"{a}×{n}" for a, n in sorted(mail.copies.items()) if a not in confirmed and a not in pending]
    checks.append(Check(not strangers, "ほかのメールアドレスには届いていない / no email copy went anywhere else",
                        f"unexpected: {sample(strangers)}" if strangers else "none"))

    copies = mail.newsletters
    problems = [p for facts in copies for p in _format_problems(facts, expected.title)]
    checks.append(Check(not problems, "号のメールの形式と件名 / each email copy: multipart/alternative, RFC 2047 "
                        "headers, Subject = the title",
                        sample(problems) if problems else f"{len(copies)} copies, Subject 「{expected.title}」"))

    problems = [p for facts in copies for p in _unsubscribe_problems(facts)]
    checks.append(Check(not problems, "ワンクリック配信停止のヘッダー / List-Unsubscribe + List-Unsubscribe-Post "
                        "(RFC 8058)", sample(problems) if problems else f"{len(copies)} copies: <{_scheme(copies)}…>, "
                        f"{ONE_CLICK}"))

    problems = [p for facts in copies for p in _display_problems(facts, expected.mail.display_items)]
    checks.append(Check(not problems, "表示義務事項がテキストとHTMLの両方に / display items in both parts "
                        "(特定電子メール法 Art. 4)", sample(problems) if problems else
                        f"{len(copies)} copies × 2 parts: sender, postal address, contact, {REFUSAL_WORD} + URL"))

    changed = [f"{a}: {observed.states_after_get.get(a)}" for a in sorted(expected.web_form)
               if observed.states_after_get.get(a) != "pending"]
    checks.append(Check(not changed, "確認リンクを開く (GET) だけでは何も変わらない / opening the link (GET) changed "
                        "nothing", f"changed: {sample(changed)}" if changed else
                        f"{len(expected.web_form)} links opened, still pending until the POST"))

    states = observed.email_states
    wrong = [f"{a} {states.get(a)} ≠ active" for a in sorted(confirmed) if states.get(a) != "active"]
    wrong += [f"{a} {states.get(a)} ≠ pending" for a in sorted(pending) if states.get(a) != "pending"]
    wrong += [f"{a} {s} (not in the script)" for a, s in sorted(states.items()) if a not in expected.email_requesters]
    checks.append(Check(not wrong, "メール配信先の状態 = 台本 / email endpoints match the script",
                        f"{sample(wrong)}" if wrong else f"{len(confirmed)} active, {len(pending)} pending"))
    return checks


def _scheme(copies: tuple[MailFacts, ...]) -> str:
    """``https://`` or ``http://127.0.0.1:…`` as seen in the first copy (for the check's detail)."""
    urls = unsubscribe_urls(copies[0].list_unsubscribe or "") if copies else []
    if not urls:
        return "—"
    parts = urlsplit(urls[0])
    return f"{parts.scheme}://{parts.netloc}/unsubscribe/"
