"""What a chat message asks of the bot besides its replies: the outcome of the chat router (core.chat).

The use cases stay free of SDKs: they return replies for the chat the message came from, plus *effects* — work the
edge does after the commit with the platform clients it holds (bots/desk.py): dispatch an issue and report its
progress, forward a reader's message to the admins, deliver the author's answer, send the stats chart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.admins import Actor
from core.reader_replies import PendingAnswer
from core.subscriptions import Reply


@dataclass(frozen=True)
class FollowBroadcast:
    """Dispatch issue ``issue_id`` now and report its progress to ``actor`` (Telegram: one status message edited
    every few seconds; LINE: a start notice, then one final report); the final report goes to every admin.
    ``test``: a test send (a short final report to ``actor`` only). ``enqueued``: deliveries per channel."""

    issue_id: int
    actor: Actor
    enqueued: dict[str, int] = field(default_factory=dict)
    test: bool = False


@dataclass(frozen=True)
class SendChart:
    """Send the sign-up chart (bots.charts) to ``chat`` (the chat the stats command came from) on ``actor``'s
    channel."""

    actor: Actor
    chat: str


@dataclass(frozen=True)
class ForwardReaderMessage:
    """Forward reader message ``message_id`` to each admin's private chat and record where each copy went."""

    message_id: int


@dataclass(frozen=True)
class DeliverAnswer:
    """Send the author's ``answer`` to the reader, record the outcome, and tell the admin in ``chat`` whether it
    arrived."""

    answer: PendingAnswer
    actor: Actor
    chat: str


Effect = FollowBroadcast | SendChart | ForwardReaderMessage | DeliverAnswer


@dataclass
class ChatOutcome:
    """Replies for the chat the message or button press came from, effects for the edge, and ``notice``: a short
    answer to a button press (Telegram shows it as the callback answer; nothing else changes). ``replace``: the first
    reply takes the place of the message whose button was pressed, where the platform can edit (Telegram)."""

    replies: list[Reply] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)
    notice: str | None = None
    replace: bool = False
