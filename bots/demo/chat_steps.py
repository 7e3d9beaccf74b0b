"""What attendees do in the chat: subscribe (maybe after a question), then withdraw, block, or ask how to leave.

Each step waits for the bot's answer (:mod:`bots.demo.waiting`) and raises
:class:`~bots.demo.waiting.RehearsalError` when it is not the one the script expects.
"""

from __future__ import annotations

from bots.demo.script import CURIOUS_QUESTION, Attendee
from bots.demo.waiting import (
    STEP_TIMEOUT,
    RehearsalError,
    Replies,
    is_terms,
    line_event,
    line_reply,
    say,
    telegram_reply,
    until_state,
)
from bots.sandbox.stack import Stack


async def attend_on_telegram(stack: Stack, person: Attendee, replies: Replies) -> None:
    """(question -> help), subscribe text -> terms with a button, button or 同意 -> subscribed."""
    tg = stack.telegram
    chat_id = int(person.address)
    count = 0
    if person.question:
        tg.send_text(chat_id, person.question)
        count += 1
        await telegram_reply(tg, person, count, "help", lambda m: m.text == replies.help)
    tg.send_text(chat_id, person.subscribe_text)
    count += 1
    terms = await telegram_reply(tg, person, count, "terms with a consent button",
                                 lambda m: is_terms(m.text or "") and bool(m.buttons))
    if person.consent_text is None:
        update_id = tg.press_button(chat_id, terms.message_id, terms.buttons[0]["callback_data"])
        if update_id is not None:
            try:
                await tg.wait_for_callback_answer(update_id, timeout=STEP_TIMEOUT)
            except TimeoutError:
                raise RehearsalError(f"{person.label}: the consent button was never answered") from None
    else:
        tg.send_text(chat_id, person.consent_text)
    count += 1
    await telegram_reply(tg, person, count, "the subscription confirmation", lambda m: m.text == replies.subscribed)


async def attend_on_line(stack: Stack, person: Attendee, replies: Replies) -> None:
    """follow -> greeting with the terms, (question -> help), subscribe text -> terms, postback or 同意 -> subscribed."""
    line = stack.line
    user = person.address
    await line_event(person, line.follow(user))
    count = 1
    await line_reply(line, person, count, "the greeting with the terms", lambda m: is_terms(m.get("text", "")))
    if person.question:
        await line_event(person, line.send_text(user, person.question))
        count += 1
        await line_reply(line, person, count, "help", lambda m: m.get("text") == replies.help)
    await line_event(person, line.send_text(user, person.subscribe_text))
    count += 1
    terms = await line_reply(line, person, count, "terms with a quick reply",
                             lambda m: is_terms(m.get("text", "")) and bool(m.get("quickReply")))
    if person.consent_text is None:
        await line_event(person, line.postback(user, terms["quickReply"]["items"][0]["action"]["data"]))
    else:
        await line_event(person, line.send_text(user, person.consent_text))
    count += 1
    await line_reply(line, person, count, "the subscription confirmation",
                     lambda m: m.get("text") == replies.subscribed)


async def attend(stack: Stack, person: Attendee, replies: Replies) -> None:
    """The first act on ``person``'s platform: :func:`attend_on_telegram` or :func:`attend_on_line`."""
    if person.channel == "telegram":
        await attend_on_telegram(stack, person, replies)
    else:
        await attend_on_line(stack, person, replies)


async def leave_or_ask(stack: Stack, person: Attendee, replies: Replies) -> None:
    """After subscribing: ask how to withdraw (a sentence from a subscriber: acknowledged and forwarded to the
    author, who answers later; they stay), withdraw by typing, or block the account (Telegram block, LINE unfollow:
    no reply, so wait for the endpoint to become ``unreachable``)."""
    if person.curious:
        await say(stack, person, CURIOUS_QUESTION, "the acknowledgement", lambda t: t == replies.acknowledged)
    if person.leaves == "withdraw":
        await say(stack, person, person.leave_text or "解除", "the withdrawal reply", lambda t: t == replies.withdrawn)
    elif person.leaves == "block":
        if person.channel == "telegram":
            stack.telegram.block(int(person.address))
        else:
            await line_event(person, stack.line.unfollow(person.address))
        await until_state(stack, person, "unreachable")
