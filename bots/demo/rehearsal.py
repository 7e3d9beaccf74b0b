"""Driving the stack through the script: start everything on loopback, let the attendees act, broadcast, observe.

Acts, each run concurrently in groups of at most :data:`GROUP_SIZE` attendees:

1. **subscribe**: everyone subscribes on their platform (:mod:`bots.demo.chat_steps`);
2. **after**: some leave or ask how to, some add an email address from the chat or the web form
   (:mod:`bots.demo.email_steps`);
3. **broadcast**: the author sends the issue with :func:`bots.broadcasting.broadcast_with` (chat and email);

then :func:`bots.demo.observe.observe` reads what arrived, and

4. **the author's desk** (:mod:`bots.demo.desk_steps`): from the author's Telegram chat, an answer to the question
   an attendee asked, a topic-filtered issue and a scheduled one; read by its own observation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from bots.broadcasting import BroadcastResult, broadcast_with
from bots.demo.chat_steps import attend, leave_or_ask
from bots.demo.desk_checks import DEMO_ADMIN_ID
from bots.demo.desk_steps import DeskReadings, author_desk
from bots.demo.email_steps import add_email_in_chat, add_email_on_the_web
from bots.demo.facts import MailIdentity
from bots.demo.observe import Readings, observe
from bots.demo.script import CAMPAIGN_CODE, CAMPAIGN_DATE, CAMPAIGN_LABEL, Attendee
from bots.demo.waiting import RehearsalError, Replies, in_groups
from bots.sandbox.stack import Stack, running_stack
from core.broadcast import IssueDraft
from core.campaigns import add_campaign
from core.mail import SenderIdentity, confirmation_subject
from core.settings import Settings

#: At most this many attendees act at the same moment (people in a seminar room do not all tap at once).
GROUP_SIZE = 6


def mail_identity(settings: Settings) -> MailIdentity:
    """The display items and confirmation Subject every rehearsal mail must carry, from ``settings``.

    Raises :class:`core.settings.ConfigError` when a display item is missing (as email sending would).
    """
    sender = SenderIdentity.from_settings(settings)
    return MailIdentity((sender.name.strip(), sender.postal_address.strip(), sender.contact.strip()),
                        confirmation_subject(sender))


@dataclass
class Rehearsal:
    """The rehearsal's inputs and, as it goes, its results. ``failure`` is set when a step failed."""

    settings: Settings
    plan: list[Attendee]
    draft: IssueDraft
    timings: dict[str, float] = field(default_factory=dict)
    result: BroadcastResult | None = None
    readings: Readings | None = None
    desk: DeskReadings | None = None
    failure: str | None = None


def _raise_first(failures: list[BaseException]) -> None:
    if failures:
        raise RehearsalError("; ".join(str(f) for f in failures[:3]))


async def rehearse(rehearsal: Rehearsal) -> None:
    """Run the stack, act the plan, broadcast, and observe (fills ``rehearsal``; raises :class:`RehearsalError`)."""
    plan = rehearsal.plan
    async with running_stack(rehearsal.settings) as stack:
        await add_campaign(stack.runtime.db, CAMPAIGN_CODE, CAMPAIGN_LABEL, CAMPAIGN_DATE)
        replies = Replies.for_sender(stack.settings.sender_name or "")
        stack.telegram.add_user(DEMO_ADMIN_ID, first_name="著者")  # the author, an admin: reader replies reach them
        for person in plan:  # registered in plan order, so ids never depend on timing
            family, _, given = person.name.partition(" ")
            if person.channel == "telegram":
                stack.telegram.add_user(int(person.address), first_name=given, last_name=family)
            else:
                await stack.line.add_user(person.address, display_name=person.name)

        started = time.monotonic()
        _raise_first(await in_groups(plan, lambda p: attend(stack, p, replies), GROUP_SIZE))
        rehearsal.timings["subscribe"] = time.monotonic() - started

        started = time.monotonic()
        states_after_get: dict[str, str | None] = {}

        async def second_act(person: Attendee) -> None:
            await leave_or_ask(stack, person, replies)
            await _add_email(stack, person, states_after_get)

        _raise_first(await in_groups([p for p in plan if p.has_second_act], second_act, GROUP_SIZE))
        rehearsal.timings["leave/email"] = time.monotonic() - started

        started = time.monotonic()
        result = await broadcast_with(stack.runtime, rehearsal.draft, created_by="demo")
        if result is None:  # only a confirm callback can decline, and none is given
            raise RehearsalError("the broadcast was declined")
        rehearsal.result = result
        rehearsal.timings["broadcast"] = time.monotonic() - started
        rehearsal.readings = await observe(stack, rehearsal.draft.title, result, states_after_get)

        started = time.monotonic()
        rehearsal.desk = await author_desk(stack, plan)
        rehearsal.timings["author's desk"] = time.monotonic() - started


async def _add_email(stack: Stack, person: Attendee, states_after_get: dict[str, str | None]) -> None:
    plan = person.email
    if plan is None:
        return
    if plan.via == "web":
        states_after_get[plan.address] = await add_email_on_the_web(stack, person, plan)
    else:
        await add_email_in_chat(stack, person, plan)
