"""The rehearsal sandbox page (``GET /sandbox``) and its JSON API (``/sandbox/api/...``), for ``otayori run`` when no
channel is configured (issue 6 item 7; DESIGN.md "Outside contract": ``run`` without credentials is the sandbox).

In a browser you chat as a LINE or Telegram user (or as the sandbox's admin on either platform) and read the mails
the SMTP sink received. Everything goes through the emulators' user-side control methods (``send_text``,
``press_button`` / ``postback``) and their records of what the bot sent, so each message passes the real SDKs, bots
and database exactly as on the platforms. These routes exist only in a sandbox stack: with credentials, ``run``
serves bots/web.py without them and ``/sandbox`` is a 404.

The API answers JSON; the POSTs require ``Content-Type: application/json`` so that a page on another site cannot
drive the sandbox with a plain form (a cross-site JSON POST needs a CORS preflight, which we never grant).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

if TYPE_CHECKING:
    from bots.sandbox.stack import Stack

#: The sandbox's admin on each platform (configured as OTAYORI_TELEGRAM_ADMIN_IDS / OTAYORI_LINE_ADMIN_USER_IDS).
ADMIN_TELEGRAM_ID = 5_550_001
ADMIN_LINE_ID = "U" + "a" * 32
ADMIN_NAME = "著者(管理者)"
PLATFORMS = ("line", "telegram")
#: A display name: 1-40 characters after trimming (LINE allows 20, Telegram 64; 40 keeps the page readable).
MAX_NAME = 40
#: Sandbox people at most (every loop bounded; a rehearsal needs a handful).
MAX_PEOPLE = 200
#: Mails listed in the inbox, newest first.
INBOX_LIMIT = 50


@dataclass
class Person:
    """One chat participant: ``platform`` (``line``/``telegram``), ``user_id`` (as text), display ``name``."""

    platform: str
    user_id: str
    name: str
    admin: bool = False
    #: What the person typed or pressed: (monotonic seconds, UTC time, text), for the transcript.
    said: list[tuple[float, datetime, str]] = field(default_factory=list)


class SandboxPeople:
    """The people of one sandbox run, and their transcripts (bot messages read from the emulators' records)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.people: dict[tuple[str, str], Person] = {}

    async def add_admins(self) -> None:
        """Register the admin on both platforms (the LINE admin is already a friend, so pushes reach them)."""
        self.stack.telegram.add_user(ADMIN_TELEGRAM_ID, first_name=ADMIN_NAME)
        await self.stack.line.add_user(ADMIN_LINE_ID, display_name=ADMIN_NAME, friend=True)
        for platform, user_id in (("telegram", str(ADMIN_TELEGRAM_ID)), ("line", ADMIN_LINE_ID)):
            self.people[(platform, user_id)] = Person(platform, user_id, ADMIN_NAME, admin=True)

    async def add(self, platform: str, name: str) -> Person:
        """A new user on ``platform`` named ``name``. A LINE user adds the account as a friend (the greeting with
        the terms arrives); a Telegram user is known to the emulator and writes first. Raises ValueError."""
        name = " ".join(name.split())
        if platform not in PLATFORMS:
            raise ValueError("platform must be line or telegram")
        if not 1 <= len(name) <= MAX_NAME:
            raise ValueError(f"名前は1〜{MAX_NAME}文字で入力してください")
        if len(self.people) >= MAX_PEOPLE:
            raise ValueError("これ以上は追加できません")
        if platform == "telegram":
            user_id = str(self.stack.telegram.add_user(first_name=name).id)
        else:
            user_id = await self.stack.line.add_user(display_name=name)
        person = self.people[(platform, user_id)] = Person(platform, user_id, name)
        if platform == "line":
            await self.stack.line.follow(user_id)
        return person

    def get(self, platform: str, user_id: str) -> Person:
        """The person, or KeyError."""
        return self.people[(platform, user_id)]

    async def say(self, person: Person, text: str) -> None:
        """``person`` sends ``text`` to the bot. Raises ValueError (empty, too long: the emulators' rules)."""
        if not text.strip():
            raise ValueError("メッセージを入力してください")
        # Timed before sending: the bot may answer before the emulator's call returns (LINE answers the webhook
        # first, then processes), and the transcript must show the question first.
        at = (time.monotonic(), datetime.now(UTC))
        if person.platform == "telegram":
            self.stack.telegram.send_text(int(person.user_id), text)
        else:
            await self.stack.line.send_text(person.user_id, text)
        person.said.append((*at, text))

    async def press(self, person: Person, data: str, label: str, message_id: int | None) -> None:
        """``person`` presses the button carrying ``data`` (Telegram: under bot message ``message_id``).
        Raises ValueError when there is no such button."""
        at = (time.monotonic(), datetime.now(UTC))  # before: see say()
        if person.platform == "telegram":
            if message_id is None:
                raise ValueError("message_id is required for a Telegram button")
            self.stack.telegram.press_button(int(person.user_id), message_id, data)
        else:
            await self.stack.line.postback(person.user_id, data)
        person.said.append((*at, f"[{label}]"))

    def transcript(self, person: Person) -> list[dict[str, Any]]:
        """The chat, oldest first: ``{"from": "you"|"bot", "text", "buttons": [{"label", "data", "message_id"}]}``."""
        rows: list[tuple[float | datetime, dict[str, Any]]] = []
        telegram = person.platform == "telegram"
        for mono, wall, text in person.said:
            rows.append((mono if telegram else wall, {"from": "you", "text": text, "buttons": []}))
        if telegram:
            for sent in self.stack.telegram.messages_to(int(person.user_id)):
                if sent.deleted:
                    continue
                text = sent.text or sent.caption or ""
                if sent.photo is not None:
                    text = f"[写真] {text}".strip()
                buttons = [{"label": b.get("text", ""), "data": b["callback_data"], "message_id": sent.message_id}
                           for b in sent.buttons if "callback_data" in b]
                links = [{"label": b.get("text", ""), "url": b["url"]} for b in sent.buttons if "url" in b]
                rows.append((sent.at, {"from": "bot", "text": text, "buttons": buttons, "links": links}))
        else:
            for batch in self.stack.line.deliveries_to(person.user_id):
                for message in batch.messages:
                    rows.append((batch.at, _line_row(message)))
        rows.sort(key=lambda row: row[0])  # stable: a batch's messages keep their order
        return [row for _at, row in rows]


def _line_row(message: dict[str, Any]) -> dict[str, Any]:
    """A LINE message object as a transcript row (text, image or other; quick-reply postback buttons)."""
    kind = message.get("type")
    text = message.get("text", "") if kind == "text" else f"[{'画像' if kind == 'image' else kind}]"
    items = ((message.get("quickReply") or {}).get("items")) or []
    buttons = [{"label": item["action"].get("label", ""), "data": item["action"]["data"], "message_id": None}
               for item in items if (item.get("action") or {}).get("type") == "postback"]
    return {"from": "bot", "text": text, "buttons": buttons, "links": []}


def inbox(stack: Stack) -> list[dict[str, str]]:
    """What the SMTP sink received, newest first (at most :data:`INBOX_LIMIT`): to, subject, date, plain text."""
    mails = []
    for received in reversed(stack.smtp.messages[-INBOX_LIMIT:]):
        parsed = received.parsed()
        body = parsed.get_body(("plain", "html"))
        mails.append({
            "to": ", ".join(received.rcpt_tos),
            "subject": str(parsed.get("Subject", "")),
            "date": str(parsed.get("Date", "")),
            "text": body.get_content() if body is not None else "",
        })
    return mails


class _BadRequest(Exception):
    """A request the sandbox API cannot act on (answered 400 with the message)."""


async def _json_body(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise _BadRequest("Content-Type must be application/json")
    try:
        body = await request.json()
    except ValueError:
        raise _BadRequest("the body is not JSON") from None
    if not isinstance(body, dict):
        raise _BadRequest("the body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise _BadRequest(f"{name} must be a string")
    return value


def sandbox_routes(stack: Stack, people: SandboxPeople, env: Environment) -> Sequence[BaseRoute]:
    """``GET /sandbox`` and the JSON API for ``stack`` (see the module docstring)."""

    def person_json(person: Person) -> dict[str, Any]:
        return {"platform": person.platform, "id": person.user_id, "name": person.name, "admin": person.admin}

    def person_of(platform: Any, user_id: Any) -> Person:
        try:
            return people.get(str(platform), str(user_id))
        except KeyError:
            raise _BadRequest("unknown person") from None

    def api(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                return JSONResponse(await handler(request), headers={"Cache-Control": "no-store"})
            except (_BadRequest, ValueError, KeyError) as exc:
                message = exc.args[0] if exc.args else type(exc).__name__
                return JSONResponse({"error": str(message)}, status_code=400)
        return endpoint

    async def page(request: Request) -> Response:
        html = env.get_template("sandbox.html").render(
            sender_name=stack.settings.sender_name or "", max_name=MAX_NAME, admin_name=ADMIN_NAME)
        return HTMLResponse(html)

    async def list_people(request: Request) -> object:
        return {"people": [person_json(p) for p in people.people.values()]}

    async def add_person(request: Request) -> object:
        body = await _json_body(request)
        return person_json(await people.add(_text(body, "platform"), _text(body, "name")))

    async def chat(request: Request) -> object:
        person = person_of(request.query_params.get("platform"), request.query_params.get("id"))
        return {"person": person_json(person), "messages": people.transcript(person)}

    async def say(request: Request) -> object:
        body = await _json_body(request)
        person = person_of(body.get("platform"), body.get("id"))
        await people.say(person, _text(body, "text"))
        return {"ok": True}

    async def press(request: Request) -> object:
        body = await _json_body(request)
        person = person_of(body.get("platform"), body.get("id"))
        message_id = body.get("message_id")
        if message_id is not None and not isinstance(message_id, int):
            raise _BadRequest("message_id must be a number")
        await people.press(person, _text(body, "data"), _text(body, "label"), message_id)
        return {"ok": True}

    async def mails(request: Request) -> object:
        return {"mails": inbox(stack)}

    return [
        Route("/sandbox", page, methods=["GET"]),
        Route("/sandbox/api/people", api(list_people), methods=["GET"]),
        Route("/sandbox/api/people", api(add_person), methods=["POST"]),
        Route("/sandbox/api/chat", api(chat), methods=["GET"]),
        Route("/sandbox/api/say", api(say), methods=["POST"]),
        Route("/sandbox/api/press", api(press), methods=["POST"]),
        Route("/sandbox/api/inbox", api(mails), methods=["GET"]),
    ]
