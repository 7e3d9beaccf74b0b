"""The landing page ``/join[/CODE]`` and the archive ``/issues`` over real HTTP against the running stack: the terms,
the channel buttons (links built from getMe and the LINE bot info), the email form, recent issues; unknown campaigns
and hostile paths answer a Japanese 404 page that still offers to subscribe and shows nothing of the path."""

from __future__ import annotations

import html
import re

import httpx
import pytest
from sqlmodel import select

from bots.broadcasting import broadcast_with
from bots.channel_ids import CachedChannelIds, ChannelIds
from bots.sandbox.stack import running_stack, sandbox_settings
from core.broadcast import IssueDraft, create_issue
from core.campaigns import add_campaign
from storage.models import Issue

CODE = "seminar-2026-12"
BOT = "otayori_sandbox_bot"
LINE_FRIEND = "https://line.me/R/ti/p/%40otayori-sandbox"


async def get(stack, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.web_url, trust_env=False, timeout=10) as client:
        return await client.get(path)


def hrefs(page: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'href="([^"]*)"', page)]


async def test_campaign_landing_page_shows_terms_buttons_and_form(stack):
    await add_campaign(stack.runtime.db, CODE, "12月 東京セミナー")
    answer = await get(stack, "/join/SEMINAR-2026-12")  # codes match case-insensitively
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    page = answer.text
    settings = stack.settings
    assert '<html lang="ja">' in page and 'href="/static/site.css"' in page
    assert "12月 東京セミナー" in page
    for shown in (settings.sender_name, settings.purpose_of_use, settings.newsletter_description, "「解除」",
                  "配信停止リンク", settings.privacy_url):
        assert html.escape(shown, quote=False) in page, shown
    links = hrefs(page)
    assert f"https://t.me/{BOT}?start={CODE}" in links  # getMe's username, the campaign as the payload
    assert LINE_FRIEND in links
    assert f"https://line.me/R/oaMessage/%40otayori-sandbox/?%E7%99%BB%E9%8C%B2%20{CODE}" in links
    assert "/privacy" in links and "/issues" in links
    assert f'action="/join/{CODE}"' in page and 'method="post"' in page
    assert '<label for="address">' in page and 'id="address"' in page  # every control has a label
    assert "最近お届けした号" not in page  # nothing sent yet


async def test_general_landing_page_has_no_campaign(stack):
    for path in ("/join", "/join/"):
        answer = await get(stack, path)
        assert answer.status_code == 200, path
        links = hrefs(answer.text)
        assert f"https://t.me/{BOT}" in links and not any("start=" in link for link in links)
        assert 'action="/join"' in answer.text


async def test_campaign_label_with_html_is_escaped(stack):
    await add_campaign(stack.runtime.db, "xss", '<script>alert("x")</script>&<b>太字</b>')
    page = (await get(stack, "/join/xss")).text
    assert "<script>alert" not in page and "<b>太字" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;&lt;b&gt;太字&lt;/b&gt;" in page
    title = re.search(r"<title>(.*?)</title>", page, re.S).group(1)
    assert "<script>" not in title and "&lt;script&gt;" in title


@pytest.mark.parametrize("path", [
    "/join/unknown-code",
    "/join/" + "a" * 65,
    "/join/ＳＥＭＩＮＡＲ",
    "/join/seminar.2026",
    "/join/..%2F..%2Fetc%2Fpasswd",
    "/join/%2E%2E/%2E%2E/etc/passwd",
    "/join/seminar-2026-12/extra",
    "/join/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    "/join/%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E",
    "/join/x%00y",
])
async def test_unknown_or_hostile_campaign_is_a_404_that_still_offers_to_subscribe(stack, path):
    await add_campaign(stack.runtime.db, CODE, "12月 東京セミナー")
    async with httpx.AsyncClient(base_url=stack.web_url, trust_env=False, timeout=10) as client:
        # Sent as written: httpx would otherwise resolve the dot segments itself.
        request = client.build_request("GET", "/")
        request.url = request.url.copy_with(raw_path=path.encode("ascii", "backslashreplace"))
        answer = await client.send(request)
    page = answer.text
    assert answer.status_code == 404, (path, answer.status_code)
    assert '<html lang="ja">' in page
    for hostile in ("<script", "onerror", "<img", "passwd", "unknown-code", "ＳＥＭＩＮＡＲ"):
        assert hostile not in page, (path, hostile)  # nothing of the path is shown back
    if path.startswith("/join/seminar-2026-12/"):  # no campaign leaks through a longer path either
        assert "12月 東京セミナー" not in page
    links = hrefs(page)
    assert f"https://t.me/{BOT}" in links and LINE_FRIEND in links  # still offers to subscribe, without a source
    assert 'action="/join"' in page


async def test_form_on_an_unknown_campaign_sends_nothing(stack):
    async with httpx.AsyncClient(base_url=stack.web_url, trust_env=False, timeout=10) as client:
        answer = await client.post("/join/unknown-code", data={"address": "hanako@example.jp"})
    assert answer.status_code == 404 and stack.smtp.messages == []


async def test_any_other_unknown_path_is_a_japanese_404_page(stack):
    answer = await get(stack, "/nope/%3Cscript%3E")
    assert answer.status_code == 404 and '<html lang="ja">' in answer.text
    assert "<script" not in answer.text and 'href="/join"' in answer.text


async def test_archive_lists_only_sent_issues_newest_first(stack):
    tg = stack.telegram
    user = tg.add_user(first_name="花子").id
    tg.send_text(user, "登録")
    terms = (await tg.wait_for_messages(user, 1))[-1]
    tg.press_button(user, terms.message_id, terms.buttons[0]["callback_data"])
    await tg.wait_for_messages(user, 2)
    sent = []
    for number in (9, 10, 11, 12):
        result = await broadcast_with(stack.runtime, IssueDraft(f"{number}月のIT通信 <i>号外</i>",
                                                                 f"## {number}月\n\n**本文**です。<script>x</script>"))
        sent.append(result.issue_id)
    draft = await create_issue(stack.runtime.db, IssueDraft("まだ下書き", "未送信"))
    async with stack.runtime.db.write() as session:  # a test copy of a sent issue: never public
        session.add(Issue(title="テスト送信", body_md="x", status="sent", test_of=sent[0],
                          started_at=(await session.get(Issue, sent[0])).started_at))

    archive = await get(stack, "/issues")
    assert archive.status_code == 200
    titles = re.findall(r'<a href="/issues/(\d+)">(.*?)</a>', archive.text)
    assert [int(i) for i, _ in titles] == list(reversed(sent))  # newest first, sent ones only
    assert all("&lt;i&gt;号外&lt;/i&gt;" in title for _, title in titles)  # titles escaped
    assert "まだ下書き" not in archive.text and "テスト送信" not in archive.text
    assert re.search(r'<time datetime="\d{4}-\d{2}-\d{2}">\d{4}年\d{1,2}月\d{1,2}日</time>', archive.text)

    landing = (await get(stack, "/join")).text
    recent = re.findall(r'<a href="/issues/(\d+)">', landing)
    assert [int(i) for i in recent] == list(reversed(sent))[:3]  # the last three

    issue = await get(stack, f"/issues/{sent[-1]}")
    assert issue.status_code == 200
    assert "<h3>12月</h3>" in issue.text and "<strong>本文</strong>" in issue.text  # Markdown rendered (## is one level below the title)
    assert "<script>x</script>" not in issue.text and "&lt;script&gt;x&lt;/script&gt;" in issue.text
    async with stack.runtime.db.read() as session:
        test_copy = (await session.exec(select(Issue).where(Issue.test_of.is_not(None)))).one()
    for hidden in (draft.id, test_copy.id, 999_999):
        answer = await get(stack, f"/issues/{hidden}")
        assert answer.status_code == 404 and '<html lang="ja">' in answer.text, hidden
    assert (await get(stack, "/issues/abc")).status_code == 404


@pytest.mark.parametrize("issue_id", ["99999999999999999999999", str(2**63), str(2**63 - 1), "0", "00"])
async def test_issue_ids_outside_the_row_id_range_get_the_japanese_404(stack, issue_id):
    answer = await get(stack, f"/issues/{issue_id}")  # SQLite cannot even bind a number beyond 64 bits
    assert answer.status_code == 404 and '<html lang="ja">' in answer.text
    assert "この号は公開されていません" in answer.text


async def test_landing_page_without_email_offers_the_chats(tmp_path):
    settings = sandbox_settings(tmp_path, smtp_host=None)
    async with running_stack(settings) as stack:
        page = (await get(stack, "/join")).text
    assert 'name="address"' not in page
    assert f"https://t.me/{BOT}" in hrefs(page)


async def test_a_failing_get_me_leaves_telegram_out_without_a_lookup_per_request(stack):
    stack.telegram.fail_next("getMe", 502, "Bad Gateway")
    first = await get(stack, "/join")
    assert first.status_code == 200  # the page never fails because an API did
    assert not any("t.me/" in link for link in hrefs(first.text)) and LINE_FRIEND in hrefs(first.text)
    calls = sum(1 for call in stack.telegram.calls if call.method == "getMe")
    second = await get(stack, "/join")
    assert sum(1 for call in stack.telegram.calls if call.method == "getMe") == calls  # not looked up again at once
    assert not any("t.me/" in link for link in hrefs(second.text))


async def test_channel_ids_heal_after_the_retry_interval(stack):
    ids = CachedChannelIds(stack.runtime)
    stack.telegram.fail_next("getMe", 502, "Bad Gateway")
    assert await ids.get() == ChannelIds(None, "@otayori-sandbox")
    assert (await ids.get()).telegram_username is None  # within the interval: the partial answer
    ids._looked_at -= CachedChannelIds.RETRY_SECONDS  # the interval has passed
    assert await ids.get() == ChannelIds(BOT, "@otayori-sandbox")
    calls = sum(1 for call in stack.telegram.calls if call.method == "getMe")
    assert await ids.get() == ChannelIds(BOT, "@otayori-sandbox")
    assert sum(1 for call in stack.telegram.calls if call.method == "getMe") == calls  # complete: kept for good
