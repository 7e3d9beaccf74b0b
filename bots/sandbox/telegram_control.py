"""JSON control surface of the Telegram emulator, under ``/_emulator/``, for a separate process (demo, benchmarks).

It mirrors the in-process injection API of ``TelegramEmulator``; it is unauthenticated and, like the emulator, only
ever served on loopback. Every answer is JSON; a bad request is 400 ``{"error": "..."}``, an unknown user 404.

| route | body / query | answer |
|---|---|---|
| ``GET /_emulator/`` | | state summary (bot, webhook, counts) |
| ``GET /_emulator/users`` | | ``{"users": [SimUser...]}`` |
| ``POST /_emulator/users`` | ``{"user_id"?, "first_name"?, "last_name"?, "username"?, "language_code"?, "started"?}`` | the SimUser |
| ``POST /_emulator/users/{id}/messages`` | ``{"text", "reply_to_message_id"?, "parse_mode"?, "forward_origin"?}`` | ``{"update_id"}`` |
| ``POST /_emulator/users/{id}/button`` | ``{"message_id", "callback_data", "chat_id"?}`` | ``{"update_id"}`` |
| ``POST /_emulator/users/{id}/block`` / ``unblock`` / ``deactivate`` | | ``{"update_id"}`` (null: no change) |
| ``POST /_emulator/groups/{chat_id}/messages`` | ``{"user_id", "text"}`` | ``{"update_id"}`` (null: privacy mode) |
| ``GET /_emulator/sent`` | ``?chat_id=&since=`` (index into the list) | ``{"messages": [SentMessage...], "next": N}`` |
| ``POST /_emulator/wait`` | ``{"chat_id", "count", "timeout"?}`` (timeout <= 30 s) | ``{"messages"}`` or 408 ``{"error"}`` |
| ``GET /_emulator/callbacks`` | | ``{"answered": [AnsweredCallback...]}`` |
| ``GET /_emulator/updates`` | | ``{"pending": [Update...]}`` |
| ``POST /_emulator/rate_limit`` | ``{"overall_per_second", "per_chat_per_second", "retry_after"?, "per_group_per_minute"?}`` | ``{"ok": true}`` |
| ``POST /_emulator/fail_next`` | ``{"method", "status", "description", "parameters"?, "count"?}`` | ``{"ok": true}`` |
| ``POST /_emulator/migrate`` | ``{"old_chat_id", "new_chat_id"}`` | ``{"ok": true}`` |
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

if TYPE_CHECKING:
    from bots.sandbox.telegram_api import TelegramEmulator

__all__ = ["control_routes"]

_MAX_WAIT_SECONDS = 30.0


class _BadControlRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _json(status: int, body: object) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False, default=str).encode("utf-8"),
        status_code=status,
        media_type="application/json",
    )


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise _BadControlRequest(400, "body must be a JSON object") from None
    if not isinstance(data, dict):
        raise _BadControlRequest(400, "body must be a JSON object")
    return data


def _int_param(value: object, name: str) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise _BadControlRequest(400, f"{name} must be an integer") from None


def _required(body: dict, name: str) -> Any:
    if name not in body:
        raise _BadControlRequest(400, f"missing {name!r}")
    return body[name]


Handler = Callable[[Request], Awaitable[object]]


def _endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return _json(200, await handler(request))
        except _BadControlRequest as exc:
            return _json(exc.status, {"error": str(exc)})
        except KeyError as exc:
            return _json(404, {"error": str(exc.args[0]) if exc.args else "not found"})
        except (ValueError, TypeError) as exc:
            return _json(400, {"error": str(exc)})

    return endpoint


def control_routes(emulator: TelegramEmulator) -> list[Route]:
    """Starlette routes of the control surface for ``emulator`` (mounted at ``/_emulator`` by the emulator)."""

    def user_id(request: Request) -> int:
        return _int_param(request.path_params["user_id"], "user id")

    async def state(request: Request) -> object:
        return {
            "bot": emulator.bot_user,
            "webhook_url": emulator.webhook_url,
            "users": len(emulator.users),
            "sent": len(emulator.sent),
            "pending_updates": len(emulator.pending_updates),
            "answered_callbacks": len(emulator.answered_callbacks),
            "too_many_requests": emulator.too_many_requests,
        }

    async def list_users(request: Request) -> object:
        return {"users": [dataclasses.asdict(u) for u in emulator.users]}

    async def add_user(request: Request) -> object:
        body = await _body(request)
        allowed = {"user_id", "first_name", "last_name", "username", "language_code", "started"}
        unknown = set(body) - allowed
        if unknown:
            raise _BadControlRequest(400, f"unknown fields: {sorted(unknown)}")
        if "user_id" in body and body["user_id"] is not None:
            body["user_id"] = _int_param(body["user_id"], "user_id")
        return dataclasses.asdict(emulator.add_user(**body))

    async def user_text(request: Request) -> object:
        body = await _body(request)
        reply_to = body.get("reply_to_message_id")
        origin = body.get("forward_origin")
        if origin is not None and not isinstance(origin, dict):
            raise _BadControlRequest(400, "forward_origin must be a JSON object")
        update_id = emulator.send_text(
            user_id(request),
            str(_required(body, "text")),
            reply_to_message_id=None if reply_to is None else _int_param(reply_to, "reply_to_message_id"),
            parse_mode=body.get("parse_mode"),
            forward_origin=origin,
        )
        return {"update_id": update_id}

    async def press(request: Request) -> object:
        body = await _body(request)
        chat_id = body.get("chat_id")
        update_id = emulator.press_button(
            user_id(request),
            _int_param(_required(body, "message_id"), "message_id"),
            str(_required(body, "callback_data")),
            chat_id=None if chat_id is None else _int_param(chat_id, "chat_id"),
        )
        return {"update_id": update_id}

    async def block(request: Request) -> object:
        return {"update_id": emulator.block(user_id(request))}

    async def unblock(request: Request) -> object:
        return {"update_id": emulator.unblock(user_id(request))}

    async def deactivate(request: Request) -> object:
        emulator.deactivate(user_id(request))
        return {"update_id": None}

    async def group_text(request: Request) -> object:
        body = await _body(request)
        chat_id = _int_param(request.path_params["chat_id"], "chat id")
        update_id = emulator.send_group_text(
            chat_id, _int_param(_required(body, "user_id"), "user_id"), str(_required(body, "text"))
        )
        return {"update_id": update_id}

    async def sent(request: Request) -> object:
        since = _int_param(request.query_params.get("since", 0), "since")
        chat = request.query_params.get("chat_id")
        messages = emulator.sent[since:]
        if chat is not None:
            chat_id = _int_param(chat, "chat_id")
            messages = [m for m in messages if m.chat_id == chat_id]
        return {"messages": [m.to_json() for m in messages], "next": len(emulator.sent)}

    async def wait(request: Request) -> object:
        body = await _body(request)
        timeout = min(float(body.get("timeout", 5.0)), _MAX_WAIT_SECONDS)
        try:
            messages = await emulator.wait_for_messages(
                _int_param(_required(body, "chat_id"), "chat_id"),
                _int_param(_required(body, "count"), "count"),
                timeout,
            )
        except TimeoutError as exc:
            raise _BadControlRequest(408, str(exc)) from None
        return {"messages": [m.to_json() for m in messages]}

    async def callbacks(request: Request) -> object:
        return {"answered": [dataclasses.asdict(a) for a in emulator.answered_callbacks]}

    async def updates(request: Request) -> object:
        return {"pending": emulator.pending_updates}

    async def rate_limit(request: Request) -> object:
        body = await _body(request)
        emulator.rate_limit(
            body.get("overall_per_second"),
            body.get("per_chat_per_second"),
            int(body.get("retry_after", 1)),
            per_group_per_minute=body.get("per_group_per_minute"),
            enforce_retry_after=bool(body.get("enforce_retry_after", True)),
        )
        return {"ok": True}

    async def fail_next(request: Request) -> object:
        body = await _body(request)
        emulator.fail_next(
            str(_required(body, "method")),
            _int_param(_required(body, "status"), "status"),
            str(_required(body, "description")),
            body.get("parameters"),
            _int_param(body.get("count", 1), "count"),
        )
        return {"ok": True}

    async def migrate(request: Request) -> object:
        body = await _body(request)
        emulator.migrate_chat(
            _int_param(_required(body, "old_chat_id"), "old_chat_id"),
            _int_param(_required(body, "new_chat_id"), "new_chat_id"),
        )
        return {"ok": True}

    return [
        Route("/", _endpoint(state), methods=["GET"]),
        Route("/users", _endpoint(list_users), methods=["GET"]),
        Route("/users", _endpoint(add_user), methods=["POST"]),
        Route("/users/{user_id}/messages", _endpoint(user_text), methods=["POST"]),
        Route("/users/{user_id}/button", _endpoint(press), methods=["POST"]),
        Route("/users/{user_id}/block", _endpoint(block), methods=["POST"]),
        Route("/users/{user_id}/unblock", _endpoint(unblock), methods=["POST"]),
        Route("/users/{user_id}/deactivate", _endpoint(deactivate), methods=["POST"]),
        Route("/groups/{chat_id}/messages", _endpoint(group_text), methods=["POST"]),
        Route("/sent", _endpoint(sent), methods=["GET"]),
        Route("/wait", _endpoint(wait), methods=["POST"]),
        Route("/callbacks", _endpoint(callbacks), methods=["GET"]),
        Route("/updates", _endpoint(updates), methods=["GET"]),
        Route("/rate_limit", _endpoint(rate_limit), methods=["POST"]),
        Route("/fail_next", _endpoint(fail_next), methods=["POST"]),
        Route("/migrate", _endpoint(migrate), methods=["POST"]),
    ]
