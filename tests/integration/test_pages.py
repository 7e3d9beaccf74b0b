"""The web app's plain pages over real HTTP (httpx against the running stack): privacy policy, health, wrong verbs.

DESIGN.md "Outside contract" -> HTTP: ``GET /privacy`` (APPI Art. 21: the purpose of use, who sends, how to stop, how
to ask for disclosure or deletion), ``GET /healthz``; a webhook URL answers only POST.
"""

from __future__ import annotations

import html
import re

import httpx

from bots.sandbox.stack import running_stack, sandbox_settings


async def get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        return await client.get(url)


async def test_privacy_page_says_who_why_what_how_to_stop_and_how_to_ask(stack):
    settings = stack.settings
    answer = await get(f"{stack.web_url}/privacy")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert "charset=utf-8" in answer.headers["content-type"].lower()
    page = answer.text
    assert '<html lang="ja">' in page
    assert html.escape(settings.sender_name) in page
    assert html.escape(settings.purpose_of_use) in page  # 利用目的 (APPI Art. 21)
    assert html.escape(settings.newsletter_description) in page
    assert "利用目的" in page
    assert "「解除」" in page  # how to stop
    assert "開示" in page and "削除" in page  # how to ask for disclosure and deletion
    assert html.escape(settings.sender_contact) in page
    for label in settings.topic_labels.values():
        assert label in page


async def test_the_terms_link_to_the_privacy_page_that_is_served(stack):
    line = stack.line
    user = await line.add_user()
    await line.send_text(user, "登録")
    terms = (await line.wait_for_messages(user, 1))[-1]["text"]
    link = re.search(r"プライバシーポリシー: (\S+)", terms)
    assert link is not None, terms
    assert link.group(1) == f"{stack.web_url}/privacy"
    answer = await get(link.group(1))
    assert answer.status_code == 200 and stack.settings.sender_name in html.unescape(answer.text)


async def test_privacy_page_escapes_html_in_settings(tmp_path):
    sender = '<script>alert("x")</script>山田&Co'
    purpose = "<b>ニュースレター</b>の配信のため"
    async with running_stack(sandbox_settings(tmp_path, sender_name=sender, purpose_of_use=purpose)) as stack:
        answer = await get(f"{stack.web_url}/privacy")
    assert answer.status_code == 200
    page = answer.text
    assert "<script>" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;山田&amp;Co" in page  # Jinja2's escaping of the name
    assert "&lt;b&gt;ニュースレター&lt;/b&gt;の配信のため" in page
    title = re.search(r"<title>(.*?)</title>", page, re.S)
    assert title is not None and "&lt;script&gt;" in title.group(1)


async def test_healthz_reports_ok_as_json(stack):
    answer = await get(f"{stack.web_url}/healthz")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert body["status"] == "ok"
    assert {"line", "telegram"} <= set(body["channels"])


async def test_webhook_url_answers_only_post(stack):
    answer = await get(f"{stack.web_url}/webhooks/line")
    assert answer.status_code == 405
    assert "POST" in answer.headers.get("allow", "")


async def test_unknown_path_is_404(stack):
    for path in ("/nope", "/privacy/../admin", "/webhooks/line/extra", "/%E7%99%BB%E9%8C%B2"):
        answer = await get(f"{stack.web_url}{path}")
        assert answer.status_code == 404, path
