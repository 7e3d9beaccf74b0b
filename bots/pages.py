"""Human-facing pages: the landing page with the email form, the issue archive, email confirmation, unsubscribe.

Routes (DESIGN.md "Outside contract" -> HTTP): ``GET|POST /join`` and ``/join/{campaign}``, ``GET /issues`` and
``GET /issues/{id}``, ``GET|POST /email/confirm/{token}``, ``GET|POST /unsubscribe/{token}``. A GET never changes
state: mail security scanners open links (reference/email-and-law.md). The unsubscribe POST follows RFC 8058: it
needs no cookie or login, accepts ``List-Unsubscribe=One-Click`` as ``application/x-www-form-urlencoded``,
``multipart/form-data`` or an empty body, answers 200 and never redirects.

The landing page (issue 6) shows the terms (core.texts.terms_items: the chat terms' facts), big LINE and Telegram
buttons (core.links; the bots' identities from bots.channel_ids), the email form and the last issues' titles. A
campaign that is not registered — or a path that cannot be one (``/join/../x``, ``/join/<script>``) — answers 404
with the same page minus the campaign, so the person can still subscribe, without a source. Nothing the visitor
typed in the path is shown back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jinja2 import Environment
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from bots.channel_ids import CachedChannelIds
from core import texts
from core.archive import PublishedIssue, published_issue, published_issues
from core.campaigns import find_campaign
from core.links import campaign_links, line_subscribe_text
from core.render import render_email_html
from core.terms import facts_from
from storage.models import EndpointState, MediaImage

if TYPE_CHECKING:
    from bots.app import Runtime

MAX_FORM_BYTES = 16_384
#: Titles of recent issues on the landing page.
RECENT_ISSUES = 3
#: Issues listed by ``GET /issues`` (newest first).
ARCHIVE_LIMIT = 200

_CONFIRM_PAGES = {
    "confirmed": ("登録が完了しました", ["{address} でニュースレターをお届けします。配信停止はメール内のリンクからいつでもできます。"]),
    "already": ("確認済みです", ["{address} はすでに確認済みです。"]),
    "expired": ("リンクの有効期限が切れています", ["お手数ですが、もう一度メールアドレスをご登録ください。何も変更されていません。"]),
    "used": ("このリンクは使用済みです", ["確認はすでに完了しているか、新しい確認メールが送られています。何も変更されていません。"]),
    "invalid": ("リンクが正しくありません", ["リンクが途中で切れていないかご確認ください。何も変更されていません。"]),
    "locked": ("確認を受け付けられません", ["コードの入力に失敗した回数が多すぎます。もう一度ご登録ください。"]),
}


def _evidence(request: Request) -> dict[str, Any]:
    """Web evidence for the ledger: client IP and user agent (at most 300 characters)."""
    return {
        "ip": request.client.host if request.client else None,
        "user_agent": (request.headers.get("user-agent") or "")[:300],
    }


def page_routes(runtime: Runtime, env: Environment) -> list[Route]:
    """The page routes for ``runtime`` (email routes answer 404 while email is off)."""
    settings = runtime.settings
    base = {
        "sender_name": settings.sender_name or "",
        "purpose_of_use": settings.purpose_of_use,
        "newsletter_description": settings.newsletter_description,
    }
    channel_ids = CachedChannelIds(runtime)
    terms = texts.terms_items(facts_from(settings))

    def render(name: str, status: int = 200, **values: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**base, **values), status_code=status)

    def message(heading: str, paragraphs: list[str], status: int = 200) -> HTMLResponse:
        return render("message.html", status, heading=heading, paragraphs=paragraphs)

    def local_date(moment: Any) -> str:
        day = moment.astimezone(settings.zone).date()
        return f"{day.year}年{day.month}月{day.day}日"

    def issue_item(issue: PublishedIssue) -> dict[str, Any]:
        return {"id": issue.issue_id, "title": issue.title or settings.sender_name or "",
                "date": local_date(issue.sent_at), "iso": issue.sent_at.astimezone(settings.zone).date().isoformat()}

    async def join_page(status: int, *, code: str | None, label: str | None, address: str | None = None,
                        error: str | None = None, not_found: bool = False) -> HTMLResponse:
        ids = await channel_ids.get()
        links = campaign_links(settings.public_url, code, telegram_username=ids.telegram_username,
                               line_basic_id=ids.line_basic_id)
        recent = [issue_item(issue) for issue in await published_issues(runtime.db, limit=RECENT_ISSUES)]
        return render("join.html", status, campaign_label=label, action=f"/join/{code}" if code else "/join",
                      address=address, error=error, email_on=email_on(), links=links, terms=terms,
                      privacy_url=settings.privacy_url, line_text=line_subscribe_text(code), recent=recent,
                      not_found=not_found)

    def email_on() -> bool:
        return runtime.email is not None and runtime.email.mailer is not None

    async def join_not_found(request: Request) -> Response:
        # /join/<anything with a slash>: never a campaign (codes are [A-Za-z0-9_-]); the page without a source.
        # ``/join/`` itself is the general page.
        if not request.path_params["rest"] and request.method == "GET":
            return await join_page(200, code=None, label=None)
        return await join_page(404, code=None, label=None, not_found=True)

    async def join(request: Request) -> Response:
        code = request.path_params.get("campaign")
        campaign = None
        if code:
            async with runtime.db.read() as session:
                campaign = await find_campaign(session, code)
            if campaign is None:  # unknown, or not a code at all: offer to subscribe without a source
                return await join_page(404, code=None, label=None, not_found=True)
        known, label = (campaign.code, campaign.label) if campaign is not None else (None, None)
        if request.method == "GET":
            return await join_page(200, code=known, label=label)
        if not email_on():
            return message("メールでの配信は現在ご利用いただけません", ["LINE または Telegram でご登録ください。"], 404)
        if int(request.headers.get("content-length") or 0) > MAX_FORM_BYTES:
            return message("リクエストが大きすぎます", ["メールアドレスだけを入力して送信してください。"], 413)
        try:
            form = await request.form(max_files=0, max_fields=10, max_part_size=MAX_FORM_BYTES)
        except Exception:  # a malformed or oversized form body: a page, never a stack trace
            return message("送信内容を読み取れませんでした", ["メールアドレスだけを入力して送信してください。"], 400)
        address = str(form.get("address") or "")
        result = await runtime.email.request(address, via="web", requester_id=None, campaign=known,
                                             evidence=_evidence(request))
        if result.kind == "invalid":
            return await join_page(400, code=known, label=label, address=address,
                                   error="メールアドレスの形式が正しくありません。@ の前後やスペースをお確かめください。")
        if result.kind == "rate_limited":
            return message("確認メールの送信回数の上限です", ["このアドレスへの確認メールは1日3通までです。届いたメールをご確認ください。"], 429)
        if result.kind == "send_failed":
            return message("確認メールを送れませんでした", ["しばらくしてからもう一度お試しください。"], 503)
        # "already subscribed" is answered like a new request: the form must not reveal who is subscribed.
        return message("確認メールを送りました", [
            f"{result.address} に確認メールを送りました。メール内のボタンで登録を確定してください。",
            "確定するまでニュースレターはお送りしません。",
        ])

    async def confirm(request: Request) -> Response:
        if runtime.email is None:
            return message("ページが見つかりません", [], 404)
        token = request.path_params["token"]
        if request.method == "GET":
            result, confirmation = await runtime.email.inspect_token(token)
            if result.kind == "confirmed" and confirmation is not None:
                return render("confirm.html", address=confirmation.address, action=f"/email/confirm/{token}")
        else:
            result = await runtime.email.confirm_token(token, _evidence(request))
        heading, paragraphs = _CONFIRM_PAGES[result.kind]
        status = 200 if result.kind in ("confirmed", "already") else 400
        return message(heading, [p.format(address=result.address or "") for p in paragraphs], status)

    async def unsubscribe(request: Request) -> Response:
        token = request.path_params["token"]
        action = f"/unsubscribe/{token}"
        if request.method == "GET":
            view = await runtime.optouts.describe(token)
            if view is None:
                return message("リンクが正しくありません", ["何も変更されていません。"], 400)
            return _unsubscribe_page(view, action)
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return message("リクエストが大きすぎます", [], 413)
        fields: dict[str, str] = {}
        if body:
            form = await request.form(max_files=0, max_fields=10)
            fields = {key: str(value) for key, value in form.items()}
        one_click = not body or fields.get("List-Unsubscribe") == "One-Click"
        result = await runtime.optouts.unsubscribe(
            token, source="one_click" if one_click else "web", scope_all=fields.get("scope") == "all",
            evidence=_evidence(request),
        )
        if result.kind == "invalid":
            return message("リンクが正しくありません", ["何も変更されていません。"], 400)
        assert result.view is not None
        done = ["ニュースレターの配信を停止しました。今後このアドレスにはお送りしません。"]
        if fields.get("scope") == "all":
            done = ["すべての配信を停止しました。"]
        return message("配信を停止しました", done)

    def _unsubscribe_page(view: Any, action: str) -> HTMLResponse:
        names = texts.CHANNEL_NAMES
        states = texts.STATE_NAMES
        receiving = view.state in (EndpointState.ACTIVE.value, EndpointState.PENDING.value)
        others = [(names[c]["ja"], states[s]["ja"]) for c, s in view.other_channels]
        others_receiving = any(s in (EndpointState.ACTIVE.value, EndpointState.PENDING.value)
                               for _c, s in view.other_channels)
        return render("unsubscribe.html", channel_name=names[view.channel]["ja"], address=view.address or "(削除済み)",
                      state_name=states[view.state]["ja"], receiving=receiving, others=others,
                      others_receiving=others_receiving, action=action)

    async def archive(request: Request) -> Response:
        issues = [issue_item(issue) for issue in await published_issues(runtime.db, limit=ARCHIVE_LIMIT)]
        return render("issues.html", issues=issues)

    async def archived_issue(request: Request) -> Response:
        issue = await published_issue(runtime.db, request.path_params["issue_id"])
        if issue is None:
            return message("この号は公開されていません", ["配信済みの号は一覧からご覧いただけます。"], 404)
        return render("issue.html", issue=issue_item(issue), image=await image_path(issue),
                      body_html=Markup(render_email_html(issue.body_md)))  # escapes raw HTML in the Markdown

    async def image_path(issue: PublishedIssue) -> str | None:
        if not issue.image_sha256:
            return None
        from core.media import image_ref

        async with runtime.db.read() as session:
            row = await session.get(MediaImage, issue.image_sha256)
        return None if row is None else "/media/" + image_ref(settings, row).url.rsplit("/", 1)[1]

    return [
        Route("/join", join, methods=["GET", "POST"]),
        Route("/join/{campaign}", join, methods=["GET", "POST"]),
        Route("/join/{rest:path}", join_not_found, methods=["GET", "POST"]),
        Route("/issues", archive, methods=["GET"]),
        Route("/issues/{issue_id:int}", archived_issue, methods=["GET"]),
        Route("/email/confirm/{token}", confirm, methods=["GET", "POST"]),
        Route("/unsubscribe/{token}", unsubscribe, methods=["GET", "POST"]),
    ]
