"""What :func:`bots.demo.checks.verify` compares: the script's :class:`Expectation`, the :class:`Observation` made
after the broadcast, and the :class:`Check` it returns per rule. Pure data, no I/O."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from bots.demo.script import CHANNELS, Attendee


@dataclass(frozen=True)
class MailIdentity:
    """What every email from the rehearsal must show, and how to tell the confirmation mail apart.

    ``display_items``: the sender's name, postal address and inquiry contact (特定電子メール法 Art. 4 display items
    1, 4 and 5; ``OTAYORI_SENDER_NAME``, ``OTAYORI_SENDER_POSTAL_ADDRESS``, ``OTAYORI_SENDER_CONTACT``), each of
    which must appear in both parts of every newsletter. ``confirmation_subject``: the Subject of the double opt-in
    mail (:func:`core.mail.confirmation_subject`).
    """

    display_items: tuple[str, ...]
    confirmation_subject: str


@dataclass(frozen=True)
class Expectation:
    """What the script implies, decided before looking at anything.

    ``recipients[channel]``: chat addresses that must receive the issue exactly once. ``excluded[channel]``: chat
    addresses that must receive nothing of it (withdrew or blocked). ``grants``: consent grants (one per attendee);
    ``campaign_grants``: grants attributed to the campaign; ``withdrawals[source]``: withdraw events per source.
    Email: ``email_recipients`` (confirmed addresses: the issue exactly once each), ``email_pending`` (asked, never
    confirmed: only the confirmation mail), ``web_form`` (addresses whose confirmation link was opened with a GET
    before the POST), ``confirms[source]`` (``confirm`` events per source, ``chat`` or ``web``),
    ``campaign_confirms`` (those attributed to the campaign: the web form's), ``mail`` (:class:`MailIdentity`).
    """

    title: str
    attendees: int
    recipients: Mapping[str, frozenset[str]]
    excluded: Mapping[str, frozenset[str]]
    grants: int
    campaign_grants: int
    withdrawals: Mapping[str, int]
    mail: MailIdentity
    email_recipients: frozenset[str]
    email_pending: frozenset[str]
    web_form: frozenset[str]
    confirms: Mapping[str, int]
    campaign_confirms: int

    @property
    def recipient_count(self) -> int:
        """Chat recipients of the issue (email ones are :attr:`email_recipients`)."""
        return sum(len(v) for v in self.recipients.values())

    @property
    def email_requesters(self) -> frozenset[str]:
        """Every address that asked for a confirmation mail (confirmed or not)."""
        return self.email_recipients | self.email_pending


def expectation_for(plan: list[Attendee], title: str, mail: MailIdentity) -> Expectation:
    """The :class:`Expectation` of a rehearsal ``plan`` broadcasting an issue titled ``title`` from ``mail``'s
    sender."""
    recipients = {c: frozenset(p.address for p in plan if p.channel == c and p.leaves is None) for c in CHANNELS}
    excluded = {c: frozenset(p.address for p in plan if p.channel == c and p.leaves is not None) for c in CHANNELS}
    withdrawals = Counter("chat" if p.leaves == "withdraw" else "blocked" for p in plan if p.leaves)
    emails = [p.email for p in plan if p.email is not None]
    confirmed = [e for e in emails if e.confirms]
    return Expectation(
        title=title,
        attendees=len(plan),
        recipients=recipients,
        excluded=excluded,
        grants=len(plan),
        campaign_grants=sum(1 for p in plan if p.with_campaign),
        withdrawals=dict(withdrawals),
        mail=mail,
        email_recipients=frozenset(e.address for e in confirmed),
        email_pending=frozenset(e.address for e in emails if not e.confirms),
        web_form=frozenset(e.address for e in emails if e.via == "web"),
        confirms=dict(Counter(e.via for e in confirmed)),
        campaign_confirms=sum(1 for e in confirmed if e.via == "web"),
    )


@dataclass(frozen=True)
class ReceivedMail:
    """One message the SMTP sink accepted: the RCPT TO addresses and the bytes exactly as received."""

    recipients: tuple[str, ...]
    data: bytes


@dataclass(frozen=True)
class Observation:
    """What was observed after the broadcast.

    From the emulators: ``issue_copies[channel][address]`` (messages carrying the issue title that reached that
    address) and ``line_multicast_requests`` (multicast requests the LINE emulator accepted). From the SMTP sink:
    ``mails`` (every accepted message, confirmations and newsletters, in order). From the database: ``sent[channel]``
    (deliveries with status ``sent``, email included), ``active[channel]`` (active endpoints), ``email_states``
    (``{address: endpoint state}`` of every email endpoint), ``states_after_get`` (``{address: state}`` read right
    after the web-form attendee's GET of the confirmation link), ``consent_counts`` (``(action, source) ->
    events``), ``campaign_grants``, ``campaign_confirms``, ``ledger_events``. From ``otayori audit``: ``audit_ok``
    and a one-line ``audit_summary``. From the consent export: ``export_lines``.
    """

    issue_copies: Mapping[str, Mapping[str, int]]
    line_multicast_requests: int
    sent: Mapping[str, int]
    active: Mapping[str, int]
    consent_counts: Mapping[tuple[str, str], int]
    campaign_grants: int
    ledger_events: int
    audit_ok: bool
    audit_summary: str
    export_lines: int
    mails: tuple[ReceivedMail, ...]
    email_states: Mapping[str, str]
    states_after_get: Mapping[str, str | None]
    campaign_confirms: int


@dataclass(frozen=True)
class Check:
    """One verification: ``ok``, a bilingual ``label``, and ``detail`` (the numbers, or what disagreed)."""

    ok: bool
    label: str
    detail: str


def sample(items: list[str], limit: int = 3) -> str:
    """The first ``limit`` items, comma-separated, and how many more there are (for a check's detail)."""
    listed = ", ".join(items[:limit])
    return listed + (f" … (+{len(items) - limit})" if len(items) > limit else "")
