"""The emulators' user-side features the author's desk needs, checked against the real SDK clients: Telegram users'
formatted and forwarded messages, photos with getFile and downloads; LINE users quoting a message
(``quotedMessageId``), the ids of sent messages, quote tokens, and image content from the data API."""

from __future__ import annotations

import pytest
from linebot.v3.messaging import (
    ApiException,
    AsyncApiClient,
    AsyncMessagingApi,
    AsyncMessagingApiBlob,
    Configuration,
    PushMessageRequest,
    TextMessage,
)
from telegram import Bot, Update

from bots.sandbox.line_api import LineEmulator
from bots.sandbox.server import LocalServer
from bots.sandbox.telegram_api import TelegramEmulator
from tests.pictures import picture

TOKEN = "123456789:TEST-otayori_sandbox"


async def updates(bot: Bot) -> list[Update]:
    return list(await bot.get_updates(timeout=0))


async def test_telegram_users_send_formatting_forwarded_messages_and_photos():
    async with TelegramEmulator(TOKEN) as emulator:
        async with Bot(TOKEN, base_url=emulator.api_url, base_file_url=emulator.file_url) as bot:
            user = emulator.add_user(first_name="著者").id
            emulator.send_text(user, "😀<b>太字</b> と <a href='https://e.jp'>リンク</a>", parse_mode="HTML")
            emulator.send_text(user, "転送された告知", forward_origin={
                "type": "channel", "chat": {"id": -1001, "type": "channel", "title": "告知"}, "message_id": 7})
            flyer = picture(400, 300)
            emulator.send_photo(user, flyer, caption="<b>チラシ</b>です", parse_mode="HTML")
            formatted, forwarded, photo = [u.message for u in await updates(bot)]
            assert formatted.text == "😀太字 と リンク"
            assert formatted.parse_entities() == {formatted.entities[0]: "太字", formatted.entities[1]: "リンク"}
            assert formatted.entities[0].offset == 2  # UTF-16: the emoji counts 2
            assert forwarded.forward_origin.type == "channel" and forwarded.forward_origin.message_id == 7
            assert photo.caption == "チラシです" and photo.caption_entities[0].type == "bold"
            file = await photo.photo[-1].get_file()
            assert bytes(await file.download_as_bytearray()) == flyer
            with pytest.raises(ValueError):
                emulator.send_photo(user, b"not a picture")
            with pytest.raises(ValueError):
                emulator.send_text(user, "x", forward_origin={"type": "alien"})


async def test_line_users_quote_messages_and_send_images():
    from tests.integration.test_line_emulator import SECRET, Receiver

    receiver = Receiver()
    server = LocalServer(receiver.app)
    emulator = LineEmulator("token", SECRET, webhook_url=f"{await server.start()}/webhooks/line")
    await emulator.start()
    try:
        user = await emulator.add_user(display_name="著者", friend=True)
        async with AsyncApiClient(Configuration(host=emulator.url, access_token="token")) as client:
            api = AsyncMessagingApi(client)
            sent = await api.push_message(PushMessageRequest(to=user, messages=[TextMessage(text="転送")]))
            [delivered] = emulator.deliveries_to(user)
            assert delivered.message_ids == (sent.sent_messages[0].id,)
            await emulator.send_text(user, "返事です", quoted_message_id=sent.sent_messages[0].id)
            assert receiver.events[-1].message.quoted_message_id == sent.sent_messages[0].id  # the SDK reads it
            # A quote token the platform issued works; a made-up one is refused like LINE does.
            await api.push_message(PushMessageRequest(to=user, messages=[
                TextMessage(text="引用", quoteToken=sent.sent_messages[0].quote_token)]))
            with pytest.raises(ApiException) as refused:
                await api.push_message(PushMessageRequest(to=user, messages=[
                    TextMessage(text="引用", quoteToken="made-up")]))
            assert refused.value.status == 400 and "quoteToken" in (refused.value.body or "")
            flyer = picture(10, 10)
            await emulator.send_image(user, flyer)
            image = receiver.events[-1].message
            assert image.type == "image" and image.content_provider.type == "line"
            blob = AsyncMessagingApiBlob(client)  # the data API (one host in the emulator)
            assert bytes(await blob.get_message_content(image.id)) == flyer
            with pytest.raises(ApiException) as missing:
                await blob.get_message_content("43")
            assert missing.value.status == 404
    finally:
        await emulator.stop()
        await server.stop()
