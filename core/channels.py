"""The channel contract: what the dispatcher hands a sender and what a sender must answer.

This is the one place the contract is documented; each sender in ``bots/`` says "see core.channels". A sender
turns platform errors into :class:`Outcome` values and never lets an SDK exception reach core (DESIGN.md "Shape").
Failures are sorted the GNU Mailman way (DESIGN.md "Delivery"):

* ``temporary``: try again later (Telegram 429 ``retry_after``, LINE 5xx/timeout/rate 429, SMTP 4xx);
* ``permanent``: this endpoint cannot receive (blocked, deactivated, unknown user): delivery ``failed``, endpoint
  ``unreachable``; ``blocked=True`` also records a ``withdraw`` with source ``blocked``;
* ``rejected``: the platform refused the request itself (a 400 for the message, not the person): delivery
  ``failed``, the endpoint untouched;
* ``channel_wide``: the whole channel must stop for this broadcast (LINE monthly quota, SMTP quota/auth): the rest
  becomes ``deferred`` and the author is told;
* ``uncertain``: the request may or may not have been accepted and the platform cannot deduplicate.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # the contract names the picture's type; core.media needs storage, this module nothing
    from core.media import ImageRef


class OutcomeKind(StrEnum):
    SENT = "sent"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"
    REJECTED = "rejected"
    CHANNEL_WIDE = "channel_wide"
    UNCERTAIN = "uncertain"


@dataclass(frozen=True)
class Outcome:
    """The result of one send for one recipient (or for a whole request).

    ``reason``: short text for reports (e.g. ``"Forbidden: bot was blocked by the user"``); ``retry_after``: seconds
    to wait before the next attempt (temporary only); ``blocked``: the person blocked the bot (permanent only);
    ``new_address``: the platform moved the chat (Telegram ``migrate_to_chat_id``); the delivery is re-sent there.
    ``already_accepted``: sent, and the platform says an earlier attempt with the same retry key had been accepted
    (LINE 409): the recipients of that earlier request have the message, whoever this request named.
    """

    kind: OutcomeKind
    reason: str | None = None
    retry_after: float | None = None
    blocked: bool = False
    new_address: str | None = None
    already_accepted: bool = False

    @classmethod
    def sent(cls) -> Outcome:
        return cls(OutcomeKind.SENT)


@dataclass(frozen=True)
class OutboundMessage:
    """One request's worth of sending.

    ``parts``: the issue rendered for this channel (Telegram: HTML strings <= 4,096 characters after entity parsing;
    LINE: plain strings <= 5,000 UTF-16 code units). ``recipients``: addresses (1 for Telegram, <= 500 for a LINE
    multicast). ``retry_key``: a UUID string stored before the request (LINE ``X-Line-Retry-Key``), or None.
    """

    issue_id: int
    parts: tuple[str, ...]
    recipients: tuple[str, ...]
    retry_key: str | None = None
    plain_parts: tuple[str, ...] = field(default=())
    #: The endpoint ids of ``recipients`` (same order): email needs them for each recipient's unsubscribe token.
    endpoint_ids: tuple[int, ...] = field(default=())
    #: The issue itself, for channels that render per recipient (email: multipart text + HTML).
    title: str = ""
    body_markdown: str = ""
    #: True when the dispatcher already waited for the sender's rate limit (``take_turn``) for this message's first
    #: request: the sender must not take a second turn for it (later requests of the message take their own).
    turn_taken: bool = False
    #: For an issue sent as several messages to one chat (Telegram parts, 1 s apart): awaited before each later part;
    #: False means the reader withdrew meanwhile, and the rest is not sent. None: nothing to check.
    still_wanted: Callable[[], Awaitable[bool]] | None = None
    #: The issue's picture (a photo issue, e.g. an event flyer), or None: Telegram sends it with ``sendPhoto`` and the
    #: first part as its caption (at most 1,024 characters; the rest follows as messages, in order); LINE sends an
    #: image message (``url`` / ``preview_url``, https only) before the text; email puts it inline in the HTML part.
    image: ImageRef | None = None


@dataclass(frozen=True)
class SendResult:
    """A sender's answer: ``overall`` applies to every recipient not listed in ``per_recipient``."""

    overall: Outcome
    per_recipient: dict[str, Outcome] = field(default_factory=dict)

    def outcome_for(self, address: str) -> Outcome:
        return self.per_recipient.get(address, self.overall)


class ChannelSender(Protocol):
    """Sends issues on one channel. Implementations live in ``bots/`` (telegram.py, line.py, email.py).

    ``channel``: ``line``/``telegram``/``email``. ``max_recipients``: recipients per request (Telegram 1; LINE
    multicast 500: reference/line.md). The dispatcher renders the issue (core.render); ``send`` never raises for a
    platform answer; it returns a :class:`SendResult`. It may raise only for programming errors.

    A sender with a rate limit also has ``async def take_turn(self) -> None``: wait until the limit lets one more
    request start, and count it. The dispatcher calls it *before* the attempt mark and then sends a message with
    ``turn_taken=True``, so no rate-limit wait sits between the consent re-check and the request (DESIGN.md "stops
    at once"). Senders without it are sent to right after the mark.
    """

    channel: str
    max_recipients: int

    async def send(self, message: OutboundMessage) -> SendResult:
        """Send ``message`` to its recipients under the channel's rate limit."""
        ...
