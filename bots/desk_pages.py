"""The author's desk on the web: the email preview page and the stats chart picture, both behind signed links.

* ``GET /preview/<token>``: an issue's newsletter email as HTML, exactly as core.mail builds it (for a stand-in
  reader). The token (core.tokens, timed) is handed only to admins in their chat, in the preview; it expires after
  :data:`core.desk.PREVIEW_LINK_DAYS` days. The page is not indexed and sends no referrer.
* ``GET /charts/signups/<token>.png``: the sign-up chart (bots.charts), for LINE image messages (LINE fetches images
  itself, over https, without credentials); the token expires after a day.

GETs only, and neither changes state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from bots.desk import chart_png
from core.desk import CHART_PATH, PREVIEW_LINK_DAYS, PREVIEW_PATH, email_rendering
from core.issues import IssueNotFound, issue_detail
from core.settings import ConfigError
from core.tokens import TokenError, Tokens

if TYPE_CHECKING:
    from bots.app import Runtime

#: A chart link works this long (LINE loads the picture when the message is shown, usually at once).
CHART_LINK_SECONDS = 24 * 3600
_PRIVATE = {"X-Robots-Tag": "noindex, nofollow", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def desk_routes(runtime: Runtime) -> list[Route]:
    """The two routes above, for ``runtime``'s settings and database."""
    tokens = Tokens(runtime.settings.secret_key)

    async def preview(request: Request) -> Response:
        try:
            issue_id = tokens.read_preview_token(request.path_params["token"], PREVIEW_LINK_DAYS * 86400)
            issue = (await issue_detail(runtime.db, issue_id)).issue
            page = email_rendering(runtime.settings, issue)[1]
        except TokenError as exc:
            return PlainTextResponse(str(exc), status_code=410 if exc.expired else 404, headers=_PRIVATE)
        except IssueNotFound:
            return PlainTextResponse("no such issue", status_code=404, headers=_PRIVATE)
        except ConfigError as exc:  # email is not configured: there is no email to show
            return PlainTextResponse(str(exc), status_code=404, headers=_PRIVATE)
        return HTMLResponse(page, headers=_PRIVATE)

    async def chart(request: Request) -> Response:
        try:
            tokens.check_chart_token(request.path_params["token"], CHART_LINK_SECONDS)
        except TokenError as exc:
            return PlainTextResponse(str(exc), status_code=410 if exc.expired else 404, headers=_PRIVATE)
        return Response(await chart_png(runtime.db, runtime.settings), media_type="image/png", headers=_PRIVATE)

    return [
        Route(PREVIEW_PATH + "{token}", preview, methods=["GET"]),
        Route(CHART_PATH + "{token}.png", chart, methods=["GET"]),
    ]
