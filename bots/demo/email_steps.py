"""Attendees adding an email address by double opt-in (issue 3), the way test_email_flow.py drives it.

From the chat: type ``メール <address>`` (full-width, with U+3000…), get the bot's notice, find the confirmation
mail in the SMTP sink and type its 6-digit code back (once in full-width digits). From the web: open the campaign's
landing page, post the address, open the mailed link with a GET (which must change nothing: mail scanners prefetch
links), then press the page's button (a POST). The one who never confirms stops after asking.
"""

from __future__ import annotations

import re

import httpx

from bots.demo.script import JOIN_PATH, Attendee, EmailPlan, full_width
from bots.demo.waiting import STEP_TIMEOUT, RehearsalError, endpoint_state, mail_to, say
from bots.sandbox.smtp_sink import ReceivedMessage
from bots.sandbox.stack import Stack
from core import texts

#: What a phone's browser says it is (recorded as evidence of the web confirmation).
BROWSER_USER_AGENT = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
                      "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")

# Anchored on its label: the link above it is a signed token that may itself hold six digits in a row.
_CODE_RE = re.compile(r"確認コード:\s*([0-9]{6})(?![0-9])")
_LINK_RE = re.compile(r"https?://\S+/email/confirm/[A-Za-z0-9._-]+")


def confirmation_parts(person: Attendee, mail: ReceivedMessage) -> tuple[str, str]:
    """The 6-digit code and the confirmation link in the text part of a confirmation mail."""
    body = mail.parsed().get_body(("plain",))
    text = body.get_content() if body is not None else ""
    code, link = _CODE_RE.search(text), _LINK_RE.search(text)
    if code is None or link is None:
        raise RehearsalError(f"{person.label}: the confirmation mail has no 6-digit code or no confirmation link")
    return code.group(1), link.group(0)


async def add_email_in_chat(stack: Stack, person: Attendee, plan: EmailPlan) -> None:
    """``メール <address>`` in the chat -> notice; then (unless ``plan.confirms`` is False) the code -> confirmed."""
    # ``email <address>`` is the English keyword, so that notice comes in English (DESIGN.md chat grammar).
    await say(stack, person, plan.typed, "the confirmation-mail notice",
              lambda t: plan.address in t and ("確認メール" in t or "confirmation mail" in t))
    mail = await mail_to(stack.smtp, person, plan.address, 1)
    if not plan.confirms:
        return
    code, _link = confirmation_parts(person, mail)
    confirmed = texts.text("email_confirm_confirmed", address=plan.address)
    await say(stack, person, full_width(code) if plan.full_width_code else code, "the email confirmation",
              lambda t: t == confirmed)


async def add_email_on_the_web(stack: Stack, person: Attendee, plan: EmailPlan) -> str | None:
    """The landing page's form, then the mailed link: GET (returns the endpoint state right after it), then POST."""
    async with httpx.AsyncClient(base_url=stack.web_url, timeout=STEP_TIMEOUT,
                                 headers={"User-Agent": BROWSER_USER_AGENT}) as browser:
        page = await browser.get(JOIN_PATH)
        if page.status_code != 200 or f'action="{JOIN_PATH}"' not in page.text:
            raise RehearsalError(f"{person.label}: GET {JOIN_PATH} answered {page.status_code} without the form")
        sent = await browser.post(JOIN_PATH, data={"address": plan.typed})
        if sent.status_code != 200 or "確認メールを送りました" not in sent.text:
            raise RehearsalError(f"{person.label}: POST {JOIN_PATH} answered {sent.status_code}")
        _code, link = confirmation_parts(person, await mail_to(stack.smtp, person, plan.address, 1))
        if not link.startswith(f"{stack.web_url}/email/confirm/"):
            # Only our own loopback app is ever contacted.
            raise RehearsalError(f"{person.label}: the confirmation link points elsewhere: {link}")
        path = link[len(stack.web_url):]
        shown = await browser.get(path)
        if shown.status_code != 200 or "登録を確定する" not in shown.text:
            raise RehearsalError(f"{person.label}: GET of the confirmation link answered {shown.status_code}")
        state_after_get = await endpoint_state(stack, "email", plan.address)
        confirmed = await browser.post(path)
        if confirmed.status_code != 200 or "登録が完了しました" not in confirmed.text:
            raise RehearsalError(f"{person.label}: POST of the confirmation link answered {confirmed.status_code}")
    return state_after_get
