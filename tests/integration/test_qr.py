"""``otayori qr CODE --out DIR`` in a separate process against the emulators: every QR code it writes (PNG files and
the poster) is decoded with zxing-cpp and compared with the link it must carry; the Telegram username comes from
getMe and the LINE basic id from the bot info API (or OTAYORI_LINE_BASIC_ID); the poster is A4 at 300 dpi."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image

from bots.fonts import FontMissing, japanese_font
from core.campaigns import add_campaign
from tests.integration.test_cli import cli_env, env_from, otayori

CODE = "seminar-2026-12"
BOT = "otayori_sandbox_bot"  # the Telegram emulator's getMe username
BASIC = "otayori-sandbox"  # the LINE emulator's basic id (GET /v2/bot/info), without "@"


def decode(path: Path) -> list[str]:
    """The texts of every QR code zxing-cpp finds in the picture at ``path``."""
    with Image.open(path) as image:
        return sorted(result.text for result in zxingcpp.read_barcodes(image.convert("L"))
                      if result.format == zxingcpp.BarcodeFormat.QRCode)


def expected_links(public_url: str, basic: str = BASIC, bot: str | None = BOT) -> dict[str, str]:
    links = {
        "join": f"{public_url}/join/{CODE}",
        "line-friend": f"https://line.me/R/ti/p/%40{basic}",
        # 登録 seminar-2026-12 as percent-encoded UTF-8 (reference/line.md "Links for QR codes")
        "line-message": f"https://line.me/R/oaMessage/%40{basic}/?%E7%99%BB%E9%8C%B2%20{CODE}",
    }
    if bot:
        links["telegram"] = f"https://t.me/{bot}?start={CODE}"
    return links


def need_japanese_font() -> None:
    try:
        japanese_font(12)
    except FontMissing:
        pytest.skip("fonts-noto-cjk is not installed (run `make fonts`)")


async def test_qr_codes_and_poster_decode_to_the_campaign_links(stack, tmp_path: Path):
    need_japanese_font()
    await add_campaign(stack.runtime.db, CODE, "12月 東京セミナー <b>特別編</b>", "2026-12-05")
    get_me_before = sum(1 for call in stack.telegram.calls if call.method == "getMe")
    out = tmp_path / "print"
    result = await otayori("qr", "SEMINAR-2026-12", "--out", str(out), cwd=tmp_path, env=env_from(stack.settings))
    assert result.code == 0, result

    expected = expected_links(stack.settings.public_url)
    for kind, url in expected.items():
        png, svg = out / f"{CODE}-{kind}.png", out / f"{CODE}-{kind}.svg"
        assert decode(png) == [url], kind
        assert url in result.out
        text = svg.read_text(encoding="utf-8")
        assert text.startswith("<?xml") and "<svg" in text and "<path" in text, kind
        assert re.search(r"<title>(.*?)</title>", text).group(1) == url.replace("&", "&amp;"), kind
    # getMe went through python-telegram-bot to the emulator; the basic id came from LINE's bot info API.
    assert sum(1 for call in stack.telegram.calls if call.method == "getMe") > get_me_before
    assert any(r.path == "/v2/bot/info" for r in stack.line.requests)

    poster = out / f"{CODE}-poster.png"
    with Image.open(poster) as image:
        assert image.size == (2480, 3508)  # A4 at 300 dpi
        assert [round(v) for v in image.info["dpi"]] == [300, 300]
    assert decode(poster) == sorted(expected.values())  # every code on the poster reads back as its link
    pdf = (out / f"{CODE}-poster.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page\n") + pdf.count(b"/Type /Page ") >= 1
    media_box = re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf)
    assert media_box is not None and [round(float(v)) for v in media_box.groups()] == [595, 842]  # A4 in points


async def test_configured_basic_id_wins_and_missing_channels_are_named(tmp_path: Path):
    database = tmp_path / "otayori.sqlite3"
    env = cli_env(database_url=f"sqlite+aiosqlite:///{database}", line_basic_id="abc1234",
                  public_url="https://news.example.jp", sender_name="山田IT事務所")
    assert (await otayori("campaign", "add", CODE, "--label", "12月 東京セミナー", cwd=tmp_path, env=env)).code == 0
    out = tmp_path / "qr"
    result = await otayori("qr", CODE, "--out", str(out), "--no-poster", cwd=tmp_path, env=env)
    assert result.code == 0, result
    assert "Telegram is not configured" in result.err  # said, not silently left out
    expected = expected_links("https://news.example.jp", basic="abc1234", bot=None)
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"{CODE}-{kind}.png" for kind in expected)
    for kind, url in expected.items():
        assert decode(out / f"{CODE}-{kind}.png") == [url], kind
    assert not list(out.glob("*poster*"))


@pytest.mark.parametrize("code, reason", [("unknown-code", "no campaign"), ("東京セミナー", "A-Z a-z 0-9 _ -")])
async def test_qr_refuses_unregistered_or_invalid_codes(tmp_path: Path, code: str, reason: str):
    env = cli_env(database_url=f"sqlite+aiosqlite:///{tmp_path / 'otayori.sqlite3'}")
    assert (await otayori("db", "upgrade", cwd=tmp_path, env=env)).code == 0
    result = await otayori("qr", code, "--out", str(tmp_path / "qr"), cwd=tmp_path, env=env)
    assert result.code == 2 and len(result.err_lines) == 1 and reason in result.err, result
    assert not (tmp_path / "qr").exists()


async def test_the_poster_needs_a_sender_name(tmp_path: Path):
    """A poster without OTAYORI_SENDER_NAME would not say who sends: refused in one line, nothing written."""
    env = cli_env(database_url=f"sqlite+aiosqlite:///{tmp_path / 'otayori.sqlite3'}", line_basic_id="abc1234",
                  public_url="https://news.example.jp")
    env.pop("OTAYORI_SENDER_NAME", None)
    assert (await otayori("campaign", "add", CODE, "--label", "12月 東京セミナー", cwd=tmp_path, env=env)).code == 0
    result = await otayori("qr", CODE, "--out", str(tmp_path / "qr"), cwd=tmp_path, env=env)
    assert result.code == 2 and len(result.err_lines) == 1 and "OTAYORI_SENDER_NAME" in result.err, result
    assert not (tmp_path / "qr").exists()
