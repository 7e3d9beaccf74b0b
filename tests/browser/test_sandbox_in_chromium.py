"""The rehearsal sandbox page in a real browser (the system's Chromium, 360 px, JavaScript on: the one page that
needs it): a Telegram user and a LINE user each type 登録, press the consent button, and type 解除 — through the real
bots, SDKs and database. A screenshot is kept under ``test-output/browser/``."""

from __future__ import annotations

import pytest
from sqlmodel import select

from bots.sandbox.rehearsal_run import rehearsal_settings
from bots.sandbox.stack import free_loopback_port, running_stack
from core.texts import CONSENT_BUTTON
from storage.models import Endpoint
from tests.browser.conftest import PHONE

#: Playwright waits (ms): the bot answers within a poll or two (the page polls every 0.7 s).
WAIT_MS = 15_000


@pytest.fixture
async def sandbox(tmp_path):
    async with running_stack(rehearsal_settings(tmp_path, free_loopback_port()), sandbox_page=True) as running:
        yield running


async def states(stack, channel: str) -> list[str]:
    async with stack.runtime.db.read() as session:
        rows = (await session.exec(select(Endpoint).where(Endpoint.channel == channel))).all()
        return [row.state for row in rows]


async def chat_round(page, name: str, platform_label: str) -> None:
    await page.get_by_label(platform_label, exact=True).check()
    await page.get_by_label("名前").fill(name)
    await page.get_by_role("button", name="この名前ではじめる").click()
    chosen = page.get_by_label("話している人")
    await page.wait_for_function(
        "name => document.getElementById('person').selectedOptions[0]?.textContent.startsWith(name)", arg=name,
        timeout=WAIT_MS)
    assert name in await chosen.locator("option:checked").inner_text()
    chat = page.locator("#chat")
    await page.get_by_label("メッセージ").fill("登録")
    await page.get_by_role("button", name="送信", exact=True).click()
    consent = chat.get_by_role("button", name=CONSENT_BUTTON["ja"]).last
    await consent.wait_for(timeout=WAIT_MS)
    await consent.click()
    await chat.get_by_text("ご登録ありがとうございます").first.wait_for(timeout=WAIT_MS)
    await page.get_by_label("メッセージ").fill("解除")
    await page.get_by_role("button", name="送信", exact=True).click()
    await chat.get_by_text("配信を停止しました").first.wait_for(timeout=WAIT_MS)


async def test_sandbox_chat_subscribe_and_leave_in_chromium(sandbox, browser, output_dir):
    context = await browser.new_context(viewport=PHONE, locale="ja-JP", device_scale_factor=1)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        await page.goto(f"{sandbox.web_url}/sandbox")
        assert await page.locator("html").get_attribute("lang") == "ja"
        assert "リハーサル" in await page.locator(".rehearsal").inner_text()

        await chat_round(page, "佐藤 <b>太郎</b>", "Telegram")
        assert await states(sandbox, "telegram") == ["unsubscribed"]
        # The name is shown as text, never as markup.
        assert await page.locator("#person option:checked").inner_text() == "佐藤 <b>太郎</b>(Telegram)"

        await chat_round(page, "山田 花子", "LINE")
        assert await states(sandbox, "line") == ["unsubscribed"]

        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{width} px wide"
        path = output_dir / "sandbox.png"
        await page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 5_000
        assert errors == []
    finally:
        await context.close()
