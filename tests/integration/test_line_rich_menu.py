"""``otayori line rich-menu`` in a separate process against the LINE emulator (create, upload, set default; a second
run replaces the first), and the emulator's rich menu rules as the real line-bot-sdk meets them."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from linebot.v3.messaging import (
    ApiException,
    AsyncApiClient,
    AsyncMessagingApi,
    AsyncMessagingApiBlob,
    Configuration,
    MessageAction,
    RichMenuArea,
    RichMenuBounds,
    RichMenuRequest,
    RichMenuSize,
)
from PIL import Image

from bots.line_rich_menu import draw_image, rich_menu_request
from bots.sandbox.line_api import LineEmulator
from core.commands import IntentKind, parse
from tests.integration.test_cli import env_from, otayori
from tests.integration.test_qr import need_japanese_font

TOKEN = "rich-menu-token"
KEYWORDS = ["登録", "解除", "状態", "トピック"]


async def test_rich_menu_command_creates_uploads_sets_default_and_replaces(stack, tmp_path: Path):
    need_japanese_font()
    line = stack.line
    env = env_from(stack.settings)
    first = await otayori("line", "rich-menu", cwd=tmp_path, env=env)
    assert first.code == 0, first.err
    assert len(line.rich_menus) == 1
    menu = next(iter(line.rich_menus.values()))
    assert line.default_rich_menu_id == menu.rich_menu_id and menu.rich_menu_id in first.out
    assert menu.body["size"] == {"width": 2500, "height": 843}
    actions = [area["action"] for area in menu.body["areas"]]
    assert [(a["type"], a["text"]) for a in actions] == [("message", k) for k in KEYWORDS]
    assert [parse(a["text"]).kind for a in actions] == [IntentKind.SUBSCRIBE, IntentKind.WITHDRAW,
                                                        IntentKind.STATUS, IntentKind.TOPICS]
    assert menu.image_type == "image/png"
    with Image.open(io.BytesIO(menu.image)) as picture:
        assert picture.format == "PNG" and picture.size == (2500, 843)
        # The labels are drawn: the picture is not one flat colour.
        assert len(picture.convert("L").getcolors(maxcolors=100_000) or []) > 10
    uploads = [r for r in line.requests if r.path.endswith(f"/richmenu/{menu.rich_menu_id}/content")]
    assert [r.status for r in uploads] == [200]

    second = await otayori("line", "rich-menu", cwd=tmp_path, env=env)
    assert second.code == 0, second.err
    assert list(line.rich_menus) != [menu.rich_menu_id] and len(line.rich_menus) == 1
    assert line.default_rich_menu_id == next(iter(line.rich_menus))
    assert f"deleted the earlier menu {menu.rich_menu_id}" in second.out


async def test_rich_menu_command_without_line_says_so(tmp_path: Path):
    from tests.conftest import TEST_SECRET
    from tests.integration.test_cli import cli_env

    result = await otayori("line", "rich-menu", cwd=tmp_path, env=cli_env(secret_key=TEST_SECRET))
    assert result.code != 0
    assert "OTAYORI_LINE_CHANNEL_ACCESS_TOKEN" in result.err and "Traceback" not in result.err


def menu(width: int = 2500, height: int = 843, areas: list[RichMenuArea] | None = None) -> RichMenuRequest:
    return RichMenuRequest(size=RichMenuSize(width=width, height=height), selected=False, name="テスト",
                           chatBarText="メニュー", areas=areas if areas is not None else [])


def area(x: int, y: int, width: int, height: int, text: str = "登録") -> RichMenuArea:
    return RichMenuArea(bounds=RichMenuBounds(x=x, y=y, width=width, height=height),
                        action=MessageAction(label=text, text=text))


@pytest.fixture
async def apis():
    async with LineEmulator(TOKEN, "secret") as emulator:
        config = Configuration(host=emulator.url, access_token=TOKEN)
        async with AsyncApiClient(config) as client:
            yield emulator, AsyncMessagingApi(client), AsyncMessagingApiBlob(client)


async def refused(call, status: int) -> str:
    with pytest.raises(ApiException) as caught:
        await call
    assert caught.value.status == status, caught.value.body
    return caught.value.body or ""


async def test_emulator_validates_rich_menus_like_line(apis):
    emulator, api, blob = apis
    body = await refused(api.create_rich_menu(menu(areas=[area(0, 0, 100, 100)] * 21)), 400)
    assert '"areas"' in body
    assert '"areas[0].bounds"' in await refused(api.create_rich_menu(menu(areas=[area(2400, 0, 101, 843)])), 400)
    assert '"size"' in await refused(api.create_rich_menu(menu(1200, 1000)), 400)  # narrower than 1.45 : 1
    assert '"size"' in await refused(api.create_rich_menu(menu(700, 250)), 400)
    camera = RichMenuArea.from_dict({"bounds": {"x": 0, "y": 0, "width": 10, "height": 10},
                                     "action": {"type": "camera", "label": "カメラ"}})
    assert "action.type" in await refused(api.create_rich_menu(menu(areas=[camera])), 400)
    assert emulator.rich_menus == {}

    created = await api.create_rich_menu(rich_menu_request())
    menu_id = created.rich_menu_id
    await refused(api.get_default_rich_menu_id(), 404)
    assert "upload" in await refused(api.set_default_rich_menu(menu_id), 400)  # no image yet
    png = draw_image() if _has_font() else _blank_png(2500, 843)
    await refused(blob.set_rich_menu_image(menu_id, png, _headers={"Content-Type": "image/gif"}), 415)
    await refused(blob.set_rich_menu_image(menu_id, _blank_png(1200, 405),
                                           _headers={"Content-Type": "image/png"}), 400)  # not the menu's size
    await refused(blob.set_rich_menu_image(menu_id, png, _headers={"Content-Type": "image/jpeg"}), 400)  # a PNG
    await refused(blob.set_rich_menu_image(menu_id, b"\x00" * (1024 * 1024 + 1),
                                           _headers={"Content-Type": "image/png"}), 413)
    await blob.set_rich_menu_image(menu_id, png, _headers={"Content-Type": "image/png"})
    assert "already" in await refused(blob.set_rich_menu_image(menu_id, png,
                                                               _headers={"Content-Type": "image/png"}), 400)
    await api.set_default_rich_menu(menu_id)
    assert (await api.get_default_rich_menu_id()).rich_menu_id == menu_id
    await refused(api.set_default_rich_menu("richmenu-" + "0" * 32), 404)
    await api.delete_rich_menu(menu_id)
    await refused(api.get_default_rich_menu_id(), 404)  # deleting the default leaves none


def _has_font() -> bool:
    from bots.fonts import FontMissing, japanese_font

    try:
        japanese_font(10)
    except FontMissing:
        return False
    return True


def _blank_png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (255, 255, 255)).save(out, format="PNG")
    return out.getvalue()
