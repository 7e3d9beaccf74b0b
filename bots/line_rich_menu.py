"""The LINE rich menu (``otayori line rich-menu``): four areas 登録 / 解除 / 状態 / トピック, each a message action that
sends its keyword (so the chat grammar handles it like typed text), on a picture drawn here with Pillow in Noto Sans
CJK JP, set as the account's default menu.

Through line-bot-sdk: ``MessagingApi.create_rich_menu`` -> ``MessagingApiBlob.set_rich_menu_image`` (the data API
host, ``OTAYORI_LINE_DATA_API_URL``; the SDK sends no Content-Type of its own, so ``image/png`` is given) ->
``MessagingApi.set_default_rich_menu``; then earlier menus of ours (same name) are deleted, so running it again
replaces the default cleanly. Menus made by anything else are left alone. LINE's rules ("Rich menu" reference):
2500 x 843 px is one of the recommended sizes (width 800..2500, height >= 250, width/height >= 1.45); the image is
PNG or JPEG of exactly that size and at most 1 MB; at most 20 areas.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any

from linebot.v3.messaging import (
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
from PIL import Image, ImageDraw

from bots.fonts import japanese_font
from core import texts
from core.settings import ConfigError, Settings

#: Our menus carry this name: a second run deletes the earlier ones by it (and nothing else).
RICH_MENU_NAME = "otayori"
WIDTH, HEIGHT = 2500, 843
MAX_IMAGE_BYTES = 1024 * 1024
BACKGROUND = (255, 255, 255)
ACCENT = (6, 199, 85)  # LINE green: the menu belongs to the LINE chat
INK = (40, 40, 40)
MUTED = (110, 110, 110)
MARGIN = 40  # px kept free on each side of an area's text


def areas(width: int = WIDTH, height: int = HEIGHT) -> list[tuple[RichMenuBounds, str]]:
    """The areas left to right, equal widths (the last takes the remainder), each with the keyword it sends."""
    keywords = [keyword for keyword, _caption in texts.RICH_MENU_ITEMS]
    step = width // len(keywords)
    return [(RichMenuBounds(x=i * step, y=0, width=step if i < len(keywords) - 1 else width - i * step,
                            height=height), keyword)
            for i, keyword in enumerate(keywords)]


def rich_menu_request() -> RichMenuRequest:
    """The rich menu object: 2500 x 843, shown at once (``selected``), message actions sending the keywords."""
    return RichMenuRequest(
        size=RichMenuSize(width=WIDTH, height=HEIGHT),
        selected=True,
        name=RICH_MENU_NAME,
        chatBarText=texts.RICH_MENU_CHAT_BAR,
        areas=[RichMenuArea(bounds=bounds, action=MessageAction(label=keyword, text=keyword))
               for bounds, keyword in areas()],
    )


def _fitting(draw: ImageDraw.ImageDraw, text: str, room: int, size: int, *, bold: bool = False) -> Any:
    """The Japanese font at ``size`` px, or smaller (steps of 4 px, down to a quarter) until ``text`` fits in
    ``room`` px."""
    font = japanese_font(size, bold=bold)
    for smaller in range(size, size // 4, -4):  # bounded: a quarter of the size at most
        font = japanese_font(smaller, bold=bold)
        if draw.textlength(text, font=font) <= room:
            break
    return font


def draw_image() -> bytes:
    """The menu picture as PNG bytes (WIDTH x HEIGHT, < 1 MB): per area its keyword large and its caption below, in
    Noto Sans CJK JP. Raises :class:`bots.fonts.FontMissing` without the font."""
    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, WIDTH, 24), fill=ACCENT)
    captions = dict(texts.RICH_MENU_ITEMS)
    for index, (bounds, keyword) in enumerate(areas()):
        centre, room = bounds.x + bounds.width // 2, bounds.width - 2 * MARGIN
        if index:
            draw.line((bounds.x, 120, bounds.x, HEIGHT - 120), fill=(215, 215, 215), width=6)
        label_font = _fitting(draw, keyword, room, 170, bold=True)
        caption_font = _fitting(draw, captions[keyword], room, 60)
        draw.text((centre, HEIGHT // 2 - 40), keyword, font=label_font, fill=INK, anchor="mm")
        draw.text((centre, HEIGHT // 2 + 150), captions[keyword], font=caption_font, fill=MUTED, anchor="mm")
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    data = out.getvalue()
    if len(data) > MAX_IMAGE_BYTES:  # flat colours compress to ~100 KB; guard LINE's limit all the same
        raise ValueError(f"the rich menu picture is {len(data)} bytes; LINE accepts at most {MAX_IMAGE_BYTES}")
    return data


@dataclass(frozen=True)
class InstalledMenu:
    """What :func:`install` did: the new default ``rich_menu_id``, the ``replaced`` ids of earlier menus of ours
    (deleted), and the picture's size in bytes (``image_bytes``)."""

    rich_menu_id: str
    replaced: list[str]
    image_bytes: int


async def install(settings: Settings) -> InstalledMenu:
    """Create the rich menu, upload its picture, make it the default, delete our earlier menus.

    Raises :class:`ConfigError` when LINE is not configured, ``linebot.v3.messaging.ApiException`` when LINE refuses
    a step (a menu created before the failing step is deleted again, so nothing half-made stays), FontMissing without
    the Japanese font, and aiohttp/asyncio errors for the network.
    """
    if not settings.line_enabled:
        raise ConfigError("OTAYORI_LINE_CHANNEL_ACCESS_TOKEN",
                          "LINE is not configured (set it and OTAYORI_LINE_CHANNEL_SECRET)")
    picture = draw_image()  # before any request: a missing font changes nothing at LINE
    token = settings.line_channel_access_token
    async with AsyncApiClient(Configuration(host=settings.line_api_url, access_token=token)) as client, \
            AsyncApiClient(Configuration(host=settings.line_data_api_url, access_token=token)) as data_client:
        api, blob = AsyncMessagingApi(client), AsyncMessagingApiBlob(data_client)
        created = await api.create_rich_menu(rich_menu_request())
        menu_id = created.rich_menu_id
        try:
            await blob.set_rich_menu_image(menu_id, picture, _headers={"Content-Type": "image/png"})
            await api.set_default_rich_menu(menu_id)
        except Exception:
            with contextlib.suppress(Exception):  # the first error is the one to report
                await api.delete_rich_menu(menu_id)
            raise
        existing = await api.get_rich_menu_list()
        replaced = [m.rich_menu_id for m in existing.richmenus
                    if m.name == RICH_MENU_NAME and m.rich_menu_id != menu_id]
        for old in replaced:
            await api.delete_rich_menu(old)
    return InstalledMenu(menu_id, replaced, len(picture))
