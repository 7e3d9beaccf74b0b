"""The web app (Starlette, served by uvicorn): webhooks, the privacy page, health.

Routes (DESIGN.md "Outside contract" -> HTTP): ``POST /webhooks/line``, ``GET /privacy``, ``GET /healthz``.
A GET never changes state. The LINE webhook answers 200 only after the raw events are stored, and processes them
after answering (LINE records a timeout after about 2 s: reference/line.md "Webhooks").
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from bots.pages import page_routes

if TYPE_CHECKING:
    from bots.app import Runtime

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
#: LINE's own request bodies stay far below this (events carry text up to 5,000 characters); refuse more unread.
MAX_WEBHOOK_BYTES = 1_000_000


def templates() -> Environment:
    """The Jinja2 environment for our pages (autoescaping on: every page escapes what it shows)."""
    return Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def create_app(runtime: Runtime) -> Starlette:
    """The ASGI app for ``runtime`` (its settings, database and bots). Nothing connects here."""
    env = templates()
    settings = runtime.settings

    async def line_webhook(request: Request) -> Response:
        if runtime.line_webhook is None:
            return PlainTextResponse("LINE is not configured", status_code=404)
        from bots.line import WebhookRejected  # imported once LINE is on (the SDK is slow to import)

        if int(request.headers.get("content-length") or 0) > MAX_WEBHOOK_BYTES:
            return PlainTextResponse("request body too large", status_code=413)
        body = await request.body()
        if len(body) > MAX_WEBHOOK_BYTES:
            return PlainTextResponse("request body too large", status_code=413)
        try:
            new_keys = await runtime.line_webhook.receive(body, request.headers.get("x-line-signature"))
        except WebhookRejected as exc:
            log.warning("LINE webhook refused: %s", exc.reason)
            return PlainTextResponse(exc.reason, status_code=exc.status)
        task = BackgroundTask(runtime.process_line_events, new_keys) if new_keys else None
        return PlainTextResponse("OK", background=task)

    async def privacy(request: Request) -> Response:
        page = env.get_template("privacy.html").render(
            sender_name=settings.sender_name or "",
            postal_address=settings.sender_postal_address,
            contact=settings.sender_contact,
            purpose_of_use=settings.purpose_of_use,
            newsletter_description=settings.newsletter_description,
            topics=list(settings.topic_labels.values()),
        )
        return HTMLResponse(page)

    async def healthz(request: Request) -> Response:
        try:
            async with runtime.db.read() as session:
                from sqlalchemy import text

                await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
        except Exception as exc:  # report, never crash the probe
            return JSONResponse({"status": "error", "database": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ok", "channels": runtime.enabled_channels()})

    routes = [
        *page_routes(runtime, env),
        Route("/webhooks/line", line_webhook, methods=["POST"]),
        Route("/privacy", privacy, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return Starlette(routes=routes)

