"""The web app (Starlette, served by uvicorn): webhooks, the privacy page, health.

Routes (DESIGN.md "Outside contract" -> HTTP): ``POST /webhooks/line``, ``POST /webhooks/telegram`` (webhook mode:
bots/telegram_webhook.py), ``GET /privacy``, ``GET /healthz``, and
``GET /media/<sha256>.jpg|.png`` / ``GET /media/<sha256>-preview.jpg`` (photo issues' pictures, which LINE fetches),
and the author's signed ``GET /preview/<token>`` and ``GET /charts/signups/<token>.png`` (bots/desk_pages.py).
The pages (``/join``, ``/issues``, …) are bots/pages.py; any other path answers a Japanese 404 page.
A GET never changes state. The LINE webhook answers 200 only after the raw events are stored, and processes them
after answering (LINE records a timeout after about 2 s: reference/line.md "Webhooks"); the Telegram webhook
likewise answers 200 once the update is stored and processes it afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from bots.desk_pages import desk_routes
from bots.pages import page_routes
from core.media import media_files

if TYPE_CHECKING:
    from bots.app import Runtime

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
#: Pictures are named by the SHA-256 of their bytes, so a URL's content never changes: caches may keep it for good.
MEDIA_CACHE_CONTROL = "public, max-age=31536000, immutable"
#: LINE's own request bodies stay far below this (events carry text up to 5,000 characters), and so do Telegram's
#: updates (text up to 4,096 characters); refuse more unread.
MAX_WEBHOOK_BYTES = 1_000_000


async def webhook_body(request: Request) -> bytes | None:
    """The request body, or None when it is larger than :data:`MAX_WEBHOOK_BYTES` (declared or actual)."""
    if int(request.headers.get("content-length") or 0) > MAX_WEBHOOK_BYTES:
        return None
    body = await request.body()
    return None if len(body) > MAX_WEBHOOK_BYTES else body


def templates() -> Environment:
    """The Jinja2 environment for our pages (autoescaping on: every page escapes what it shows)."""
    return Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def create_app(runtime: Runtime, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The ASGI app for ``runtime`` (its settings, database and bots), plus ``extra_routes`` (the rehearsal sandbox's
    ``/sandbox``: bots/sandbox/rehearsal_page.py, only in a sandbox stack). Nothing connects here."""
    env = templates()
    settings = runtime.settings

    async def line_webhook(request: Request) -> Response:
        if runtime.line_webhook is None:
            return PlainTextResponse("LINE is not configured", status_code=404)
        from bots.line import WebhookRejected  # imported once LINE is on (the SDK is slow to import)

        body = await webhook_body(request)
        if body is None:
            return PlainTextResponse("request body too large", status_code=413)
        try:
            new_keys = await runtime.line_webhook.receive(body, request.headers.get("x-line-signature"))
        except WebhookRejected as exc:
            log.warning("LINE webhook refused: %s", exc.reason)
            return PlainTextResponse(exc.reason, status_code=exc.status)
        task = BackgroundTask(runtime.process_line_events, new_keys) if new_keys else None
        return PlainTextResponse("OK", background=task)

    async def telegram_webhook(request: Request) -> Response:
        hook = runtime.telegram_webhook
        if hook is None:  # polling mode (or Telegram off): this route does not exist
            return PlainTextResponse("Telegram webhook mode is off", status_code=404)
        from bots.telegram_webhook import SECRET_HEADER, WebhookRefused

        secret = request.headers.get(SECRET_HEADER)
        body = await webhook_body(request)
        if body is None:
            return PlainTextResponse("request body too large", status_code=413)
        try:
            new_keys = await hook.receive(body, secret)
        except WebhookRefused as exc:
            log.warning("Telegram webhook refused: %s", exc.reason)
            return PlainTextResponse(exc.reason, status_code=exc.status)
        task = BackgroundTask(hook.process_stored, new_keys) if new_keys else None
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

    files = media_files(settings)

    async def media(request: Request) -> Response:
        # Only names of the form <64 hex>.jpg|.png|-preview.jpg reach the disk (MediaFiles.path): no traversal.
        name = request.path_params["name"]
        path = files.path(name)
        if path is None:
            return PlainTextResponse("not found", status_code=404)
        content_type = "image/png" if name.endswith(".png") else "image/jpeg"
        return FileResponse(path, media_type=content_type, headers={
            "Cache-Control": MEDIA_CACHE_CONTROL, "X-Content-Type-Options": "nosniff"})

    routes = [
        *extra_routes,
        *page_routes(runtime, env),
        *desk_routes(runtime),
        Route("/media/{name}", media, methods=["GET", "HEAD"]),
        Route("/webhooks/line", line_webhook, methods=["POST"]),
        Route("/webhooks/telegram", telegram_webhook, methods=["POST"]),
        Route("/privacy", privacy, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        # Every unknown path gets a Japanese page that escapes everything and offers the way to subscribe (the
        # footer's links); nothing of the path is shown back.
        page = env.get_template("message.html").render(
            sender_name=settings.sender_name or "", heading="ページが見つかりません",
            paragraphs=["URL をお確かめください。ニュースレターのご登録は下のリンクからどうぞ。"])
        return HTMLResponse(page, status_code=404)

    return Starlette(routes=routes, exception_handlers={404: not_found})

