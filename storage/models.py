"""SQLModel tables: the whole persistent state of otayori.

Vocabulary (subscriber, endpoint, consent event, wording, campaign, topic, issue, delivery, inbound event) is defined
in DESIGN.md "Words"; the string values below are the ones the outside contract (the consent export) uses.
Every timestamp column is :class:`storage.types.UTCDateTime` (aware UTC in Python).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.types import UTCDateTime, utcnow


class Channel(StrEnum):
    """Where an endpoint lives."""

    LINE = "line"
    TELEGRAM = "telegram"
    EMAIL = "email"


class EndpointState(StrEnum):
    """Endpoint states (DESIGN.md "Words" -> endpoint)."""

    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    UNREACHABLE = "unreachable"


class Basis(StrEnum):
    """Legal basis of an address (特定電子メール法 Art. 3(1)); only ``opt_in`` ever allows the newsletter."""

    OPT_IN = "opt_in"
    WRITTEN_NOTICE = "written_notice"
    BUSINESS_RELATION = "business_relation"
    PUBLISHED_ADDRESS = "published_address"


class ConsentAction(StrEnum):
    """Ledger actions (DESIGN.md "Words" -> consent event)."""

    GRANT = "grant"
    CONFIRM = "confirm"
    WITHDRAW = "withdraw"
    TOPICS = "topics"
    ERASE = "erase"


class ConsentSource(StrEnum):
    """How a consent event arrived (the consent export's ``source``)."""

    CHAT = "chat"
    WEB = "web"
    ONE_CLICK = "one_click"
    BLOCKED = "blocked"
    ADMIN = "admin"
    IMPORT = "import"
    UNKNOWN = "unknown"


class DeliveryStatus(StrEnum):
    """The delivery state machine (DESIGN.md "Delivery: an outbox")."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"
    DEFERRED = "deferred"
    CANCELLED = "cancelled"
    UNCERTAIN = "uncertain"


class IssueStatus(StrEnum):
    """An issue's life: draft -> scheduled -> sending -> sent, or cancelled (the transitions: core/issues.py)."""

    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    CANCELLED = "cancelled"


def _ts(**kw: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kw)


class Subscriber(SQLModel, table=True):
    """A person. Owns one or more endpoints."""

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = _ts(default_factory=utcnow)
    language: str = Field(default="ja", max_length=8)
    display_name: str | None = Field(default=None, max_length=200)
    # The topic slugs chosen (changed only through core.topics, each change a ``topics`` ledger event);
    # None or [] = every topic.
    topics: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    erased_at: datetime | None = _ts(default=None, nullable=True)


class Endpoint(SQLModel, table=True):
    """One address on one channel. ``(channel, address)`` is unique: an address belongs to exactly one endpoint."""

    __table_args__ = (UniqueConstraint("channel", "address", name="uq_endpoint_channel_address"),)

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscriber.id", index=True)
    channel: str = Field(max_length=16)
    # LINE userId, Telegram chat id (decimal text), or the email address; None once erased (APPI Art. 35).
    address: str | None = Field(default=None, max_length=320)
    state: str = Field(default=EndpointState.PENDING.value, max_length=16, index=True)
    basis: str = Field(default=Basis.OPT_IN.value, max_length=32)
    # Legacy (0001): superseded by the ``line_friend`` table (0007), which knows friendship per LINE user whether or
    # not they have an endpoint; 0007 copied what this column knew. Neither read nor written any more.
    friend: bool | None = Field(default=None)
    created_at: datetime = _ts(default_factory=utcnow)
    updated_at: datetime = _ts(default_factory=utcnow)


class ConsentWording(SQLModel, table=True):
    """The exact terms text shown, versioned: ``version`` names it, ``sha256`` is the hash of its UTF-8 bytes."""

    id: int | None = Field(default=None, primary_key=True)
    version: str = Field(max_length=64, unique=True)
    sha256: str = Field(max_length=64)
    language: str = Field(default="ja", max_length=8)
    text: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _ts(default_factory=utcnow)


class ConsentEvent(SQLModel, table=True):
    """One append-only ledger row (DESIGN.md "Words" -> consent event, "Consent export" for the hash rule).

    ``prev_hash`` is unique so that the chain can never fork, even if two writers raced.
    """

    __tablename__ = "consent_event"

    id: int | None = Field(default=None, primary_key=True)
    occurred_at: datetime = _ts(default_factory=utcnow)
    subscriber_id: int = Field(index=True)
    endpoint_id: int | None = Field(default=None, index=True)
    channel: str = Field(max_length=16)
    action: str = Field(max_length=16)
    basis: str = Field(max_length=32)
    source: str = Field(max_length=16)
    campaign: str | None = Field(default=None, max_length=64)
    topics: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    wording_version: str | None = Field(default=None, max_length=64)
    wording_sha256: str | None = Field(default=None, max_length=64)
    evidence: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    address_hmac: str = Field(max_length=64, index=True)
    prev_hash: str = Field(max_length=64, unique=True)
    hash: str = Field(max_length=64, unique=True)


class Setting(SQLModel, table=True):
    """Values generated once and kept in the database (e.g. the ledger HMAC key, never rotated)."""

    __tablename__ = "app_setting"

    name: str = Field(primary_key=True, max_length=64)
    value: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _ts(default_factory=utcnow)


class Campaign(SQLModel, table=True):
    """A source code for attribution (a seminar, a flyer). Codes match case-insensitively via ``code_key``."""

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=64)
    code_key: str = Field(max_length=64, unique=True)
    label: str = Field(default="", max_length=200)
    event_date: str | None = Field(default=None, max_length=32)
    created_at: datetime = _ts(default_factory=utcnow)


class Topic(SQLModel, table=True):
    """What a subscriber may want (from ``OTAYORI_TOPICS``)."""

    slug: str = Field(primary_key=True, max_length=32)
    label: str = Field(max_length=100)
    position: int = 0


class TermsOffer(SQLModel, table=True):
    """The terms were shown to an address: consent is accepted within 24 h of the latest offer (DESIGN.md grammar)."""

    __tablename__ = "terms_offer"
    __table_args__ = (Index("ix_terms_offer_address", "channel", "address", "shown_at"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=16)
    address: str = Field(max_length=320)
    wording_version: str = Field(max_length=64)
    campaign: str | None = Field(default=None, max_length=64)
    # What the person typed as the campaign when it is not a registered code (kept as evidence).
    campaign_raw: str | None = Field(default=None, max_length=200)
    rendering_sha256: str = Field(max_length=64)
    shown_at: datetime = _ts(default_factory=utcnow)
    consumed_at: datetime | None = _ts(default=None, nullable=True)


class Issue(SQLModel, table=True):
    """One newsletter edition: title and Markdown body; ``topic`` None targets everyone.

    A draft is an issue in status ``draft`` (it survives a restart; the title may still be empty while an admin
    composes it). ``channels`` None = every channel enabled when it is sent. ``test_of``: this issue is a test send
    of issue ``test_of`` to the admins' own endpoints (never counted in the stats).
    """

    __table_args__ = (Index("ix_issue_due", "status", "scheduled_at"),)

    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=300)
    body_md: str = Field(sa_column=Column(Text, nullable=False))
    topic: str | None = Field(default=None, max_length=32)
    status: str = Field(default=IssueStatus.DRAFT.value, max_length=16)
    created_by: str = Field(default="cli", max_length=100)
    created_at: datetime = _ts(default_factory=utcnow)
    started_at: datetime | None = _ts(default=None, nullable=True)
    finished_at: datetime | None = _ts(default=None, nullable=True)
    channels: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    scheduled_at: datetime | None = _ts(default=None, nullable=True)
    cancelled_at: datetime | None = _ts(default=None, nullable=True)
    test_of: int | None = Field(default=None, index=True)
    # The issue's picture (an event flyer): a MediaImage's sha256, or None for a text-only issue.
    image_sha256: str | None = Field(default=None, max_length=64)


class MediaImage(SQLModel, table=True):
    """A picture an issue carries, stored as files named by the SHA-256 of the original's bytes (core.media owns the
    rules; storage.media_files writes the files). ``content_type``: ``image/jpeg`` or ``image/png`` (the original);
    ``width``/``height`` in pixels and ``size`` in bytes of the original; ``preview_size``: bytes of the preview JPEG.
    One row per distinct picture: issues (and their test copies) share it by ``Issue.image_sha256``."""

    __tablename__ = "media_image"

    sha256: str = Field(primary_key=True, max_length=64)
    content_type: str = Field(max_length=32)
    width: int
    height: int
    size: int
    preview_size: int
    created_at: datetime = _ts(default_factory=utcnow)


class Delivery(SQLModel, table=True):
    """One issue to one endpoint: the outbox row (DESIGN.md "Delivery: an outbox")."""

    __table_args__ = (
        UniqueConstraint("issue_id", "endpoint_id", name="uq_delivery_issue_endpoint"),
        # The claim walks a channel's pending rows in (issue_id, id) order; without status in the index it would skip
        # every row already sent on each claim (quadratic over a broadcast).
        Index("ix_delivery_pending", "channel", "status", "issue_id", "id"),
        # Progress and reports count an issue's rows by channel and status (covering: no table look-ups).
        Index("ix_delivery_progress", "issue_id", "channel", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    issue_id: int = Field(foreign_key="issue.id", index=True)
    endpoint_id: int = Field(foreign_key="endpoint.id", index=True)
    channel: str = Field(max_length=16)
    status: str = Field(default=DeliveryStatus.PENDING.value, max_length=16)
    attempts: int = 0
    claimed_by: str | None = Field(default=None, max_length=100)
    lease_expires_at: datetime | None = _ts(default=None, nullable=True)
    attempted_at: datetime | None = _ts(default=None, nullable=True)
    first_attempted_at: datetime | None = _ts(default=None, nullable=True)
    retry_key: str | None = Field(default=None, max_length=64, index=True)
    next_attempt_at: datetime | None = _ts(default=None, nullable=True)
    sent_at: datetime | None = _ts(default=None, nullable=True)
    reason: str | None = Field(default=None, max_length=500)
    created_at: datetime = _ts(default_factory=utcnow)
    updated_at: datetime = _ts(default_factory=utcnow)


class ChannelLease(SQLModel, table=True):
    """Only one dispatcher sends on a channel at a time (DESIGN.md "Delivery"): the holder and its lease expiry."""

    __tablename__ = "channel_lease"

    channel: str = Field(primary_key=True, max_length=16)
    owner: str = Field(max_length=100)
    expires_at: datetime = _ts()


class InboundEvent(SQLModel, table=True):
    """A raw webhook event / update as received, stored before it is acknowledged; deduplicated per channel."""

    __tablename__ = "inbound_event"
    __table_args__ = (UniqueConstraint("channel", "event_key", name="uq_inbound_channel_key"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=16)
    event_key: str = Field(max_length=100)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    received_at: datetime = _ts(default_factory=utcnow)
    processed_at: datetime | None = _ts(default=None, nullable=True)
    error: str | None = Field(default=None, max_length=500)


class EmailConfirmation(SQLModel, table=True):
    """One double opt-in request: an address someone asked to add, confirmed by a signed link or a 6-digit code.

    Server-side state makes tokens and codes single-use: ``used_at`` is set on success; ``wrong_codes`` counts wrong
    codes (at 5 the request is locked and a new one is needed). ``code_hash`` is an HMAC of the code, never the code.
    ``subscriber_id`` is the requester: confirming moves the address to them (the owner of the mailbox decides).
    """

    __tablename__ = "email_confirmation"
    __table_args__ = (Index("ix_email_confirmation_address", "address", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    address: str = Field(max_length=320)
    subscriber_id: int = Field(index=True)
    nonce: str = Field(max_length=64, unique=True)
    code_hash: str = Field(max_length=64)
    requested_via: str = Field(max_length=16)  # chat | web
    # The chat that asked (the code may be typed back there); None for the web form.
    requested_channel: str | None = Field(default=None, max_length=16)
    requested_address: str | None = Field(default=None, max_length=320)
    campaign: str | None = Field(default=None, max_length=64)
    wording_version: str = Field(max_length=64)
    evidence: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _ts(default_factory=utcnow)
    expires_at: datetime = _ts()
    used_at: datetime | None = _ts(default=None, nullable=True)
    wrong_codes: int = 0
    sent: bool = False


class AdminAction(SQLModel, table=True):
    """The append-only log of admin actions and refused admin attempts: who (``channel`` + ``actor``), what
    (``action``, ``issue_id``, ``details`` — never message contents), when, and whether it was allowed (``outcome``
    ``ok`` or ``refused``). Written only by core.admins.record; listed by ``otayori admin-log``."""

    __tablename__ = "admin_action"

    id: int | None = Field(default=None, primary_key=True)
    occurred_at: datetime = _ts(default_factory=utcnow, index=True)
    channel: str = Field(max_length=16)  # telegram | line | cli
    actor: str = Field(max_length=100)  # Telegram user id, LINE user id, or the OS user for the CLI
    action: str = Field(max_length=64)
    outcome: str = Field(default="ok", max_length=16)
    issue_id: int | None = Field(default=None)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class AdminCompose(SQLModel, table=True):
    """An admin's conversation state while composing a draft (DESIGN.md chat grammar: a stored conversation state
    overrides the keyword table), kept in the database so that it survives a restart. One per admin and channel."""

    __tablename__ = "admin_compose"

    channel: str = Field(primary_key=True, max_length=16)
    user_id: str = Field(primary_key=True, max_length=64)
    issue_id: int
    step: str = Field(max_length=32)
    updated_at: datetime = _ts(default_factory=utcnow)


class ReaderMessage(SQLModel, table=True):
    """A reader's message to the author (``direction`` ``in``) or the author's answer to one (``out``) — issue 5
    item 6 (reader replies). ``endpoint_id``/``channel``: the reader's chat endpoint. ``text``: what was written
    (personal data: erase it with the endpoint's address). ``platform_message_id``: the reader's message on its
    platform (Telegram message id in their chat, LINE message id); ``quote_token``: LINE's token to quote it in the
    answer. ``in_reply_to``: the ``in`` message an ``out`` answers; ``actor``: the admin who answered
    (``channel:user_id``). ``status``: ``in`` messages ``received`` (stored) / ``forwarded`` (reached at least one
    admin); answers ``pending`` / ``sent`` / ``failed`` (``reason`` says why)."""

    __tablename__ = "reader_message"

    id: int | None = Field(default=None, primary_key=True)
    direction: str = Field(max_length=8)  # in | out
    endpoint_id: int = Field(foreign_key="endpoint.id", index=True)
    channel: str = Field(max_length=16)
    text: str = Field(sa_column=Column(Text, nullable=False))
    platform_message_id: str | None = Field(default=None, max_length=64)
    quote_token: str | None = Field(default=None, max_length=500)
    in_reply_to: int | None = Field(default=None, index=True)
    actor: str | None = Field(default=None, max_length=100)
    status: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=500)
    created_at: datetime = _ts(default_factory=utcnow)
    updated_at: datetime = _ts(default_factory=utcnow)


class ReaderMessageNotice(SQLModel, table=True):
    """Where a reader's message was forwarded: the admin's ``channel`` and ``chat`` (Telegram chat id, LINE user id)
    and the platform's id of the forwarded message there. An admin's reply to (LINE: quote of) that message is the
    answer to ``message_id``; the lookup is by all three, so a message id in another chat never matches."""

    __tablename__ = "reader_message_notice"
    __table_args__ = (
        UniqueConstraint("channel", "chat", "platform_message_id", name="uq_reader_notice_platform_message"),
    )

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="reader_message.id", index=True)
    channel: str = Field(max_length=16)
    chat: str = Field(max_length=64)
    platform_message_id: str = Field(max_length=64)
    created_at: datetime = _ts(default_factory=utcnow)


class LineFriend(SQLModel, table=True):
    """Whether a LINE user has the account as a friend, as the latest ``follow``/``unfollow`` webhook said (LINE
    delivers only to friends; the profile API cannot tell: reference/line.md "SDK v3" -> Friendship). One row per
    LINE user who ever followed or unfollowed, subscriber or not; no row = unknown. ``changed_at``: the event's own
    ``timestamp`` (UTC), so an older event arriving late never overrides a newer one; ``webhook_event_id``: the
    event that set the current value (the evidence of a follow that activated a waiting endpoint). Owned by
    core.line_friends."""

    __tablename__ = "line_friend"

    user_id: str = Field(primary_key=True, max_length=64)
    friend: bool
    changed_at: datetime = _ts()
    webhook_event_id: str | None = Field(default=None, max_length=100)
    updated_at: datetime = _ts(default_factory=utcnow)
