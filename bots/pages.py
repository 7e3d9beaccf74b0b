"""Human-facing pages: the landing page with the email form, email confirmation, unsubscribe.

Routes (DESIGN.md "Outside contract" -> HTTP): ``GET|POST /join`` and ``/join/{campaign}``,
``GET|POST /email/confirm/{token}``, ``GET|POST /unsubscribe/{token}``. A GET never changes state: mail security
scanners open links (reference/email-and-law.md). The unsubscribe POST follows RFC 8058: it needs no cookie or
login, accepts ``List-Unsubscribe=One-Click`` as ``application/x-www-form-urlencoded``, ``multipart/form-data`` or an
empty body, answers 200 and never redirects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from core import texts
from storage.models import EndpointState

if TYPE_CHECKING:
    from bots.app import Runtime

MAX_FORM_BYTES = 16_384

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

    def render(name: str, status: int = 200, **values: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**base, **values), status_code=status)

    def message(heading: str, paragraphs: list[str], status: int = 200) -> HTMLResponse:
        return render("message.html", status, heading=heading, paragraphs=paragraphs)

    async def campaign_label(code: str | None) -> tuple[str | None, str | None]:
        if not code:
            return None, None
        from core.campaigns import list_campaigns

        for campaign in await list_campaigns(runtime.db):
            if campaign.code_key == code.lower():
                return campaign.code, campaign.label
        return None, None

    async def join(request: Request) -> Response:
        code = request.path_params.get("campaign")
        known, label = await campaign_label(code)
        action = f"/join/{known}" if known else "/join"
        if code and not known:
            return render("join.html", 404, campaign_label=None, action="/join", address=None,
                          email_on=runtime.email is not None and runtime.email.mailer is not None,
                          error="このキャンペーンは見つかりませんでした。下のフォームから登録できます。")
        email_on = runtime.email is not None and runtime.email.mailer is not None
        if request.method == "GET":
            return render("join.html", campaign_label=label, action=action, address=None, error=None,
                          email_on=email_on)
        if not email_on:
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
            return render("join.html", 400, campaign_label=label, action=action, address=address, email_on=True,
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

    return [
        Route("/join", join, methods=["GET", "POST"]),
        Route("/join/{campaign}", join, methods=["GET", "POST"]),
        Route("/email/confirm/{token}", confirm, methods=["GET", "POST"]),
        Route("/unsubscribe/{token}", unsubscribe, methods=["GET", "POST"]),
    ]
