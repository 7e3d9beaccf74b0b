"""The pages in a real browser (the system's Chromium through Playwright), at 360 px wide and with JavaScript off:
a seminar attendee opens ``/join/CODE``, asks for email, confirms from the mail the SMTP sink received, and later
unsubscribes from a newsletter's link. A screenshot of each page is kept under ``test-output/browser/``."""

from __future__ import annotations

import io
import re

import zxingcpp
from PIL import Image
from sqlmodel import select

from bots.broadcasting import broadcast_with
from bots.campaign_kit import write_campaign_kit
from core.broadcast import IssueDraft
from core.campaigns import add_campaign
from storage.models import ConsentEvent, Endpoint
from tests.browser.conftest import PHONE

CODE = "seminar-2026-12"
LABEL = "12月 東京セミナー"


def mail_link(stack, address: str, pattern: str) -> str:
    """The first URL matching ``pattern`` in the newest mail to ``address`` (its plain-text part)."""
    message = [m for m in stack.smtp.messages if address in m.rcpt_tos][-1]
    text = message.parsed().get_body(("plain",)).get_content()
    return re.search(pattern, text).group(0)


async def phone_page(browser, *, javascript: bool = False):
    context = await browser.new_context(viewport=PHONE, java_script_enabled=javascript, locale="ja-JP",
                                        device_scale_factor=1)
    return context, await context.new_page()


async def fits_the_phone(page) -> None:
    """Nothing sticks out sideways at 360 px (no horizontal scrolling)."""
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{page.url}: {width} px wide"


async def shoot(page, output_dir, name: str) -> None:
    path = output_dir / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000  # a real picture, not an empty page


async def test_attendee_subscribes_by_email_from_the_landing_page_and_unsubscribes(stack, browser, output_dir):
    await add_campaign(stack.runtime.db, CODE, LABEL)
    context, page = await phone_page(browser)  # JavaScript off: every step must work without it

    await page.goto(f"{stack.web_url}/join/{CODE}")
    assert await page.locator("html").get_attribute("lang") == "ja"
    assert LABEL in await page.locator(".campaign").inner_text()
    telegram = page.get_by_role("link", name="Telegram で登録")
    line = page.get_by_role("link", name="LINE で友だち追加して登録")
    assert await telegram.get_attribute("href") == f"https://t.me/otayori_sandbox_bot?start={CODE}"
    assert await line.get_attribute("href") == "https://line.me/R/ti/p/%40otayori-sandbox"
    for button in (telegram, line):  # big enough to tap: at least 48 px high, nearly the full width
        box = await button.bounding_box()
        assert box is not None and box["height"] >= 48 and box["width"] >= 300, box
    await fits_the_phone(page)
    await shoot(page, output_dir, "01-join")

    # Typed the way a Japanese keyboard may type it; the browser must let it through for the server to normalise.
    await page.get_by_label("メールアドレス").fill("ｈａｎａｋｏ＠ｅｘａｍｐｌｅ．ｊｐ")
    await page.get_by_role("button", name="確認メールを受け取る").click()
    await page.wait_for_load_state()
    assert "確認メールを送りました" in await page.locator("h1").inner_text()
    assert "hanako@example.jp" in await page.locator("main").inner_text()
    await fits_the_phone(page)
    await shoot(page, output_dir, "02-join-sent")

    confirm_url = mail_link(stack, "hanako@example.jp", r"https?://\S+/email/confirm/[A-Za-z0-9._-]+")
    await page.goto(confirm_url)
    assert "hanako@example.jp" in await page.locator("main").inner_text()
    await fits_the_phone(page)
    await shoot(page, output_dir, "03-confirm")
    await page.get_by_role("button", name="登録を確定する").click()
    await page.wait_for_load_state()
    assert "登録が完了しました" in await page.locator("h1").inner_text()
    await shoot(page, output_dir, "04-confirmed")

    async with stack.runtime.db.read() as session:
        email = (await session.exec(select(Endpoint).where(Endpoint.channel == "email"))).one()
        confirm = (await session.exec(select(ConsentEvent).where(ConsentEvent.action == "confirm"))).one()
    assert (email.address, email.state) == ("hanako@example.jp", "active")
    assert (confirm.campaign, confirm.source, confirm.endpoint_id) == (CODE, "web", email.id)
    assert "HeadlessChrome" in confirm.evidence["user_agent"]  # the browser's own request, recorded as evidence

    result = await broadcast_with(stack.runtime, IssueDraft("12月のIT通信", "**二段階認証**を有効にしましょう。"))
    assert result.report.by_status() == {"sent": 1}
    unsubscribe_url = mail_link(stack, "hanako@example.jp", r"https?://\S+/unsubscribe/[A-Za-z0-9._-]+")
    await page.goto(unsubscribe_url)
    assert "hanako@example.jp" in await page.locator("main").inner_text()
    await fits_the_phone(page)
    await shoot(page, output_dir, "05-unsubscribe")
    await page.get_by_role("button", name="このアドレスへの配信を停止する").click()
    await page.wait_for_load_state()
    assert "配信を停止しました" in await page.locator("h1").inner_text()
    await shoot(page, output_dir, "06-unsubscribed")
    async with stack.runtime.db.read() as session:
        assert (await session.get(Endpoint, email.id)).state == "unsubscribed"
        withdraw = (await session.exec(select(ConsentEvent).where(ConsentEvent.action == "withdraw"))).one()
    assert (withdraw.endpoint_id, withdraw.source) == (email.id, "web")

    await page.goto(f"{stack.web_url}/issues")
    await page.get_by_role("link", name="12月のIT通信").click()
    await page.wait_for_load_state()
    assert "二段階認証" in await page.locator("article").inner_text()
    await fits_the_phone(page)
    await shoot(page, output_dir, "07-issue")
    await context.close()


async def test_other_pages_fit_a_phone(stack, browser, output_dir):
    context, page = await phone_page(browser)
    for name, path, status in (("08-privacy", "/privacy", 200), ("09-issues-empty", "/issues", 200),
                               ("10-join-unknown-campaign", "/join/%3Cscript%3Ealert(1)%3C%2Fscript%3E", 404),
                               ("11-not-found", "/nope", 404)):
        answer = await page.goto(f"{stack.web_url}{path}")
        assert answer is not None and answer.status == status, path
        assert await page.locator("html").get_attribute("lang") == "ja"
        await fits_the_phone(page)
        await shoot(page, output_dir, name)
    # The unknown campaign's page still offers every way in, without a source.
    await page.goto(f"{stack.web_url}/join/unknown")
    assert await page.get_by_role("link", name="Telegram で登録").get_attribute("href") == \
        "https://t.me/otayori_sandbox_bot"
    assert await page.get_by_label("メールアドレス").count() == 1
    await context.close()


async def test_keyboard_focus_is_visible(stack, browser):
    context, page = await phone_page(browser, javascript=True)  # only to read the computed style
    await page.goto(f"{stack.web_url}/join")
    seen = []
    for _ in range(12):  # bounded: the skip link, the nav... then the channel buttons
        await page.keyboard.press("Tab")
        focused = await page.evaluate("""() => {
            const e = document.activeElement, s = getComputedStyle(e);
            return {text: e.textContent.trim(), style: s.outlineStyle, width: parseFloat(s.outlineWidth)};
        }""")
        seen.append(focused["text"])
        assert focused["style"] != "none" and focused["width"] >= 2, focused
        if focused["text"] == "確認メールを受け取る":
            break
    assert "本文へ移動" in seen and "LINE で友だち追加して登録" in seen and "Telegram で登録" in seen, seen
    await context.close()


async def test_svg_qr_codes_read_back_when_a_browser_draws_them(stack, browser, tmp_path):
    await add_campaign(stack.runtime.db, CODE, LABEL)
    kit = await write_campaign_kit(stack.settings, CODE, tmp_path / "qr", poster=False)
    assert {code.kind for code in kit.codes} == {"join", "telegram", "line-friend", "line-message"}
    context = await browser.new_context(viewport={"width": 600, "height": 600})
    page = await context.new_page()
    for code in kit.codes:
        svg = code.svg.read_text(encoding="utf-8").split("?>", 1)[-1]
        await page.set_content(f'<body style="margin:40px;background:#fff">{svg}</body>')
        picture = Image.open(io.BytesIO(await page.locator("svg").screenshot()))
        found = [r.text for r in zxingcpp.read_barcodes(picture.convert("L"))]
        assert found == [code.url], code.kind
    await context.close()
