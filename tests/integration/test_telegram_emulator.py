"""The Telegram emulator answers the real python-telegram-bot (v22) client the way the Bot API does."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dtm
import html
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
)
from telegram.ext import (
    Application,
    ApplicationBuilder,
    BaseHandler,
    CallbackQueryHandler,
    ChatMemberHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bots.sandbox.server import LocalServer
from bots.sandbox.telegram_api import TelegramEmulator
from tests.pictures import picture

TOKEN = "123456789:TEST-otayori_sandbox"


@pytest.fixture
async def emulator() -> AsyncIterator[TelegramEmulator]:
    emu = TelegramEmulator(TOKEN)
    await emu.start()
    try:
        yield emu
    finally:
        await emu.stop()


@pytest.fixture
async def bot(emulator: TelegramEmulator) -> AsyncIterator[Bot]:
    async with Bot(TOKEN, base_url=emulator.api_url, base_file_url=emulator.file_url) as client:
        yield client


@contextlib.asynccontextmanager
async def polling_application(emulator: TelegramEmulator, *handlers: BaseHandler) -> AsyncIterator[Application]:
    """A real PTB Application polling the emulator inside the test's event loop, always shut down."""
    app = ApplicationBuilder().token(TOKEN).base_url(emulator.api_url).base_file_url(emulator.file_url).build()
    for handler in handlers:
        app.add_handler(handler)
    await app.initialize()
    try:
        await app.start()
        try:
            await app.updater.start_polling(poll_interval=0.0, timeout=1)
            try:
                yield app
            finally:
                await app.updater.stop()
        finally:
            await app.stop()
    finally:
        await app.shutdown()


def retry_seconds(exc: RetryAfter) -> float:
    # PTB 22 returns int seconds, or a timedelta when PTB_TIMEDELTA is set.
    value = exc.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


# -- the bot itself ---------------------------------------------------------------------------------------------------


async def test_get_me_describes_the_bot(emulator: TelegramEmulator, bot: Bot) -> None:
    me = await bot.get_me()
    assert me.id == 123456789
    assert me.is_bot
    assert me.username == "otayori_sandbox_bot"
    assert me.can_read_all_group_messages is False  # privacy mode, Telegram's default


async def test_wrong_token_is_rejected(emulator: TelegramEmulator) -> None:
    for token in ("123456789:WRONG", "not-a-token"):  # 401 Unauthorized, 404 Not Found: both InvalidToken
        client = Bot(token, base_url=emulator.api_url)
        try:
            with pytest.raises(InvalidToken):
                await client.initialize()
        finally:
            await client.shutdown()
    assert [c.status for c in emulator.calls] == []  # rejected before any method ran


async def test_unknown_and_unimplemented_methods(bot: Bot) -> None:
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("noSuchMethod")
    # Method names are case-insensitive on the Bot API (and this spelling keeps PTB from suggesting its own method).
    with pytest.raises(BadRequest, match="Method not supported by emulator"):
        await bot.do_api_request("GetChatMemberCount", api_kwargs={"chat_id": 1})


# -- updates ----------------------------------------------------------------------------------------------------------


async def test_get_updates_offsets_limits_and_long_polling(emulator: TelegramEmulator, bot: Bot) -> None:
    user = emulator.add_user(first_name="花子")
    ids = [emulator.send_text(user.id, f"メッセージ{n}") for n in range(3)]
    assert ids == [ids[0], ids[0] + 1, ids[0] + 2]

    first = await bot.get_updates(limit=2)
    assert [u.update_id for u in first] == ids[:2]
    again = await bot.get_updates()  # nothing confirmed yet: the same updates come back
    assert [u.update_id for u in again] == ids
    assert again[0].message.text == "メッセージ0" and again[0].message.chat.type == "private"

    assert await bot.get_updates(offset=ids[-1] + 1) == ()
    assert emulator.pending_updates == []

    async def later() -> None:
        await asyncio.sleep(0.2)
        emulator.send_text(user.id, "遅れて届く")

    started = time.monotonic()
    task = asyncio.create_task(later())
    waited = await bot.get_updates(offset=ids[-1] + 1, timeout=5)
    await task
    assert [u.message.text for u in waited] == ["遅れて届く"]
    assert time.monotonic() - started < 2.0  # woke up on arrival, not at the timeout


async def test_a_second_poller_ends_the_first_with_conflict(emulator: TelegramEmulator, bot: Bot) -> None:
    # Two bot instances with one token (PTB keeps one getUpdates connection per Bot, so a second Bot is needed).
    first = asyncio.create_task(bot.get_updates(timeout=3))
    await emulator.wait_until(lambda: emulator.polls_in_progress == 1, 2.0, "the first poll")
    async with Bot(TOKEN, base_url=emulator.api_url) as other:
        assert await other.get_updates(timeout=0) == ()
    with pytest.raises(Conflict, match="terminated by other getUpdates request"):
        await first


async def test_webhook_receives_updates_with_secret_header(emulator: TelegramEmulator, bot: Bot) -> None:
    received: list[tuple[dict, str | None]] = []
    failures = {"left": 1}

    async def hook(request: Request) -> Response:
        if failures["left"]:  # Telegram resends an update the webhook did not accept
            failures["left"] -= 1
            return Response(status_code=500)
        received.append((await request.json(), request.headers.get("x-telegram-bot-api-secret-token")))
        return Response(status_code=200)

    async with LocalServer(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as hook_url:
        assert await bot.set_webhook(f"{hook_url}/hook", secret_token="s3cret_token-1")
        with pytest.raises(Conflict, match="webhook is active"):
            await bot.get_updates()
        user = emulator.add_user()
        update_id = emulator.send_text(user.id, "ウェブフック経由")
        await emulator.wait_for_updates_consumed(timeout=5.0)
        info = await bot.get_webhook_info()
        assert await bot.delete_webhook()

    assert [(u["update_id"], u["message"]["text"], secret) for u, secret in received] == [
        (update_id, "ウェブフック経由", "s3cret_token-1")
    ]
    assert [d.status for d in emulator.webhook_deliveries] == [500, 200]
    assert info.url == f"{hook_url}/hook" and info.pending_update_count == 0
    assert info.last_error_message == "Wrong response from the webhook: 500"
    assert await bot.get_updates() == ()  # polling works again


# -- PTB Application handlers ----------------------------------------------------------------------------------------


async def test_start_command_with_deep_link_payload(emulator: TelegramEmulator) -> None:
    seen: list[list[str]] = []

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        seen.append(list(context.args))
        await update.effective_message.reply_text(f"ようこそ {','.join(context.args)}")

    user = emulator.add_user(first_name="太郎", username="taro")
    async with polling_application(emulator, CommandHandler("start", start)):
        emulator.send_text(user.id, "/start seminar1")
        [reply] = await emulator.wait_for_messages(user.id, 1)
    assert seen == [["seminar1"]]
    assert reply.text == "ようこそ seminar1"
    assert reply.method == "sendMessage" and reply.parse_mode is None


async def test_text_handler_gets_japanese_text_with_emoji(emulator: TelegramEmulator) -> None:
    text = "登録したい　です🙇‍♀️ ｶﾀｶﾅ\u200b👍🏽"

    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await update.effective_message.reply_text(f"<b>受信</b>: {html.escape(update.effective_message.text)}",
                                                  parse_mode="HTML")

    user = emulator.add_user()
    async with polling_application(emulator, MessageHandler(filters.TEXT & ~filters.COMMAND, echo)):
        emulator.send_text(user.id, text)
        [reply] = await emulator.wait_for_messages(user.id, 1)
    assert reply.text == f"受信: {text}"
    assert reply.raw_text.startswith("<b>受信</b>")
    assert reply.entities == [{"type": "bold", "offset": 0, "length": 2}]


async def test_inline_button_press_is_answered_and_edits_the_message(emulator: TelegramEmulator) -> None:
    pressed: list[str] = []

    async def menu(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("IT関連情報", callback_data="topic:it"),
                                          InlineKeyboardButton("イベント情報", callback_data="topic:events")]])
        await update.effective_message.reply_text("トピックを選んでください", reply_markup=keyboard)

    async def chosen(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        pressed.append(query.data)
        await query.answer("選択しました")
        await query.edit_message_text(f"選択: {query.data}")

    user = emulator.add_user()
    async with polling_application(emulator, CommandHandler("menu", menu), CallbackQueryHandler(chosen)):
        emulator.send_text(user.id, "/menu")
        [message] = await emulator.wait_for_messages(user.id, 1)
        update_id = emulator.press_button(user.id, message.message_id, message.callback_data_for("IT関連情報"))
        answer = await emulator.wait_for_callback_answer(update_id)
        await emulator.wait_until(lambda: message.edited, 5.0, "the edit")

    assert pressed == ["topic:it"]
    assert (answer.user_id, answer.message_id, answer.data, answer.text) == (
        user.id, message.message_id, "topic:it", "選択しました"
    )
    assert message.text == "選択: topic:it"
    assert message.reply_markup is None  # an edit without reply_markup removes the keyboard, as on Telegram
    assert [e.text for e in message.edits] == ["トピックを選んでください"]
    with pytest.raises(ValueError, match="no button"):
        emulator.press_button(user.id, message.message_id, "topic:it")


async def test_block_and_unblock_reach_my_chat_member_handler(emulator: TelegramEmulator) -> None:
    changes: list[tuple[str, str, int]] = []

    async def member(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        change = update.my_chat_member
        changes.append((change.old_chat_member.status, change.new_chat_member.status, change.from_user.id))
        if change.new_chat_member.status == "member":
            await context.bot.send_message(change.chat.id, "おかえりなさい")

    user = emulator.add_user()
    async with polling_application(emulator, ChatMemberHandler(member, ChatMemberHandler.MY_CHAT_MEMBER)):
        emulator.block(user.id)
        await emulator.wait_for_updates_consumed()
        emulator.unblock(user.id)
        [welcome] = await emulator.wait_for_messages(user.id, 1)
    assert changes == [("member", "kicked", user.id), ("kicked", "member", user.id)]
    assert welcome.text == "おかえりなさい"


# -- errors, as PTB raises them ---------------------------------------------------------------------------------------


async def test_unreachable_users_raise_forbidden(emulator: TelegramEmulator, bot: Bot) -> None:
    blocked, gone, shy = emulator.add_user(), emulator.add_user(), emulator.add_user(started=False)
    emulator.block(blocked.id)
    emulator.deactivate(gone.id)
    cases = {
        blocked.id: "Forbidden: bot was blocked by the user",
        gone.id: "Forbidden: user is deactivated",
        shy.id: "Forbidden: bot can't initiate conversation with a user",
        42: "Forbidden: bot can't initiate conversation with a user",
    }
    for chat_id, message in cases.items():
        with pytest.raises(Forbidden) as caught:
            await bot.send_message(chat_id, "お知らせ")
        assert caught.value.message == message
    assert emulator.sent == []
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(-1001, "グループ")


async def test_flood_control_raises_retry_after(emulator: TelegramEmulator, bot: Bot) -> None:
    user = emulator.add_user()
    emulator.rate_limit(overall_per_second=2, per_chat_per_second=None, retry_after=7)
    await bot.send_message(user.id, "1")
    await bot.send_message(user.id, "2")
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(user.id, "3")
    assert retry_seconds(caught.value) == 7
    with pytest.raises(RetryAfter) as again:  # still inside the 7 s: refused, with the time left
        await bot.send_message(user.id, "3")
    assert 1 <= retry_seconds(again.value) <= 7
    assert (emulator.too_many_requests, emulator.retry_after_violations) == (2, 1)
    assert [m.text for m in emulator.sent] == ["1", "2"]

    emulator.rate_limit(None, None)
    await bot.send_message(user.id, "3")
    assert [m.text for m in emulator.messages_to(user.id)] == ["1", "2", "3"]


async def test_migrated_group_raises_chat_migrated(emulator: TelegramEmulator, bot: Bot) -> None:
    emulator.add_group(-4001, "勉強会")
    emulator.migrate_chat(-4001, -1001000004001)
    with pytest.raises(ChatMigrated) as caught:
        await bot.send_message(-4001, "こんにちは")
    assert caught.value.new_chat_id == -1001000004001
    sent = await bot.send_message(caught.value.new_chat_id, "こんにちは")
    assert sent.chat.type == "supergroup"
    [service] = (await bot.get_updates())
    assert service.message.migrate_to_chat_id == -1001000004001


async def test_bad_html_raises_cant_parse_entities(emulator: TelegramEmulator, bot: Bot) -> None:
    user = emulator.add_user()
    for text, detail in [
        ("<b>太字", 'can\'t find end tag corresponding to start tag "b"'),
        ("1 < 2", 'unsupported start tag "" at byte offset 2'),
        ("<br>改行", 'unsupported start tag "br" at byte offset 0'),
        ("<b>a</i>", 'unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
    ]:
        with pytest.raises(BadRequest) as caught:
            await bot.send_message(user.id, text, parse_mode="HTML")
        # PTB strips "Bad Request: " and capitalize()s the rest, which lower-cases tdlib's own capitals.
        assert caught.value.message == f"Can't parse entities: {detail}"

    author_text = "AT&T <script> 🙂 & 太郎"
    sent = await bot.send_message(user.id, f"<i>{html.escape(author_text)}</i> <a href='https://example.com'>リンク</a>",
                                  parse_mode="HTML")
    assert sent.text == f"{author_text} リンク"
    # Entity offsets are UTF-16 code units: the emoji counts twice.
    assert [(e.type, e.offset, e.length) for e in sent.entities] == [("italic", 0, 21), ("text_link", 22, 3)]
    assert sent.parse_entity(sent.entities[1]) == "リンク"


async def test_text_length_is_counted_after_parsing(emulator: TelegramEmulator, bot: Bot) -> None:
    user = emulator.add_user()
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(user.id, "あ" * 4097)
    with pytest.raises(BadRequest, match="Message text is empty"):
        await bot.send_message(user.id, " \n ")
    with pytest.raises(BadRequest, match="Message text is empty"):
        await bot.send_message(user.id, "<b></b>", parse_mode="HTML")
    fits = await bot.send_message(user.id, "<b>" + "&amp;" * 4096 + "</b>", parse_mode="HTML")
    assert fits.text == "&" * 4096
    assert len(emulator.sent) == 1


async def test_callback_data_limits(emulator: TelegramEmulator, bot: Bot) -> None:
    user = emulator.add_user()
    ok = InlineKeyboardMarkup([[InlineKeyboardButton("は", callback_data="あ" * 21)]])  # 63 bytes
    too_long = InlineKeyboardMarkup([[InlineKeyboardButton("は", callback_data="あ" * 22)]])  # 66 bytes
    await bot.send_message(user.id, "選択", reply_markup=ok)
    with pytest.raises(BadRequest, match="(?i)button_data_invalid"):
        await bot.send_message(user.id, "選択", reply_markup=too_long)


async def test_injected_failures(emulator: TelegramEmulator, bot: Bot) -> None:
    user = emulator.add_user()
    emulator.fail_next("sendMessage", 502, "Bad Gateway")
    with pytest.raises(NetworkError, match="Bad Gateway"):
        await bot.send_message(user.id, "1回目")
    await bot.send_message(user.id, "2回目")
    assert [m.text for m in emulator.sent] == ["2回目"]


# -- other methods ----------------------------------------------------------------------------------------------------


async def test_commands_photo_and_reply(emulator: TelegramEmulator, bot: Bot) -> None:
    assert await bot.set_my_commands([("start", "はじめる"), ("stop", "配信停止")])
    assert [(c.command, c.description) for c in await bot.get_my_commands()] == [
        ("start", "はじめる"), ("stop", "配信停止")
    ]
    with pytest.raises(BadRequest, match="(?i)bot_command_invalid"):
        await bot.set_my_commands([("登録", "日本語のコマンド名は不可")])
    assert await bot.delete_my_commands()
    assert await bot.get_my_commands() == ()

    user = emulator.add_user()
    emulator.send_text(user.id, "写真ください")
    [update] = await bot.get_updates()
    png = picture(300, 200, fmt="PNG")
    photo = await bot.send_photo(user.id, png, caption="<b>今週</b>の写真",
                                 parse_mode="HTML", reply_to_message_id=update.message.message_id)
    assert photo.photo[-1].file_size == len(png) and (photo.photo[-1].width, photo.photo[-1].height) == (300, 200)
    assert photo.reply_to_message.text == "写真ください"
    [record] = emulator.messages_to(user.id)
    assert (record.method, record.caption, record.photo.data) == ("sendPhoto", "今週の写真", png)
    with pytest.raises(BadRequest, match="Message to be replied not found"):
        await bot.send_message(user.id, "返信", reply_to_message_id=999)


async def test_send_photo_checks_the_upload_and_resends_by_file_id(emulator: TelegramEmulator, bot: Bot) -> None:
    user = emulator.add_user()
    with pytest.raises(BadRequest, match="(?i)image_process_failed"):
        await bot.send_photo(user.id, "チラシ(画像ではない)".encode(), caption="x")
    with pytest.raises(BadRequest, match="(?i)photo_invalid_dimensions"):
        await bot.send_photo(user.id, picture(2100, 100), caption="細長すぎ")  # ratio 21 > 20
    with pytest.raises(BadRequest, match="(?i)wrong file identifier"):
        await bot.send_photo(user.id, "AgACnot-a-file-we-issued", caption="x")
    flyer = picture(1600, 2263)
    first = await bot.send_photo(user.id, flyer, caption="<b>12月</b>のチラシ " + "あ" * 1000, parse_mode="HTML")
    assert [(size.width, size.height) for size in first.photo] == [(64, 90), (905, 1280)]
    with pytest.raises(BadRequest, match="(?i)caption is too long"):
        await bot.send_photo(user.id, first.photo[-1].file_id, caption="い" * 1025)
    again = await bot.send_photo(user.id, first.photo[-1].file_id, caption="再送")
    assert again.photo[-1].file_id == first.photo[-1].file_id
    records = emulator.messages_to(user.id)
    assert [r.caption[:7] for r in records] == ["12月のチラシ", "再送"]
    assert records[1].photo.data == flyer and records[1].params["photo"] == first.photo[-1].file_id
    assert len(records[0].caption) == 1008  # "12月のチラシ " + 1,000 characters: entities parsed, within 1,024


async def test_other_clients_may_send_json_or_query_parameters(emulator: TelegramEmulator) -> None:
    user = emulator.add_user()
    base = f"{emulator.url}/bot{TOKEN}"
    async with httpx.AsyncClient(timeout=5.0) as client:
        sent = await client.post(f"{base}/SendMessage", json={
            "chat_id": user.id, "text": "*太字* です\\!", "parse_mode": "MarkdownV2",
            "reply_markup": {"inline_keyboard": [[{"text": "はい", "callback_data": "yes"}]]},
        })
        queried = await client.get(f"{base}/sendMessage", params={"chat_id": user.id, "text": "クエリ"})
        unchanged = await client.post(f"{base}/editMessageText", data={
            "chat_id": str(user.id), "message_id": str(queried.json()["result"]["message_id"]), "text": "クエリ"})
    assert sent.status_code == 200
    assert sent.json()["result"]["text"] == "太字 です!"
    assert sent.json()["result"]["entities"] == [{"type": "bold", "offset": 0, "length": 2}]
    assert sent.json()["result"]["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "yes"
    assert queried.json()["ok"] is True
    assert unchanged.status_code == 400
    assert unchanged.json()["description"].startswith("Bad Request: message is not modified")


async def test_group_privacy_mode_and_allowed_updates(emulator: TelegramEmulator, bot: Bot) -> None:
    user = emulator.add_user()
    assert emulator.send_group_text(-7001, user.id, "雑談です") is None  # privacy mode: the bot never sees it
    command = emulator.send_group_text(-7001, user.id, "/start@otayori_sandbox_bot")
    [update] = await bot.get_updates(allowed_updates=["message"])
    assert update.update_id == command and update.effective_chat.type == "group"
    assert emulator.block(user.id) is None  # my_chat_member is not among allowed_updates: not even queued
    assert await bot.get_updates(offset=command + 1, allowed_updates=[]) == ()  # back to the default set
    unblocked = emulator.unblock(user.id)
    [change] = await bot.get_updates(offset=command + 1)
    assert change.update_id == unblocked and change.my_chat_member.new_chat_member.status == "member"


# -- control surface --------------------------------------------------------------------------------------------------


async def test_control_surface_drives_users_over_http(emulator: TelegramEmulator, bot: Bot) -> None:
    async with httpx.AsyncClient(base_url=f"{emulator.url}/_emulator", timeout=5.0) as control:
        created = (await control.post("/users", json={"user_id": 9001, "first_name": "次郎"})).json()
        assert created["id"] == 9001
        update_id = (await control.post("/users/9001/messages", json={"text": "/start flyer"})).json()["update_id"]
        [update] = await bot.get_updates()
        assert update.update_id == update_id and update.message.text == "/start flyer"

        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("はい", callback_data="yes")]])
        sent = await bot.send_message(9001, "購読しますか？", reply_markup=keyboard)
        listed = (await control.get("/sent", params={"chat_id": 9001})).json()
        assert [m["text"] for m in listed["messages"]] == ["購読しますか？"]
        waited = (await control.post("/wait", json={"chat_id": 9001, "count": 1, "timeout": 1})).json()
        assert waited["messages"][0]["message_id"] == sent.message_id

        press = await control.post("/users/9001/button", json={"message_id": sent.message_id, "callback_data": "yes"})
        [query] = await bot.get_updates(offset=update_id + 1)
        assert query.update_id == press.json()["update_id"] and query.callback_query.data == "yes"
        assert await query.callback_query.answer()
        assert (await control.get("/callbacks")).json()["answered"][0]["data"] == "yes"

        assert (await control.post("/users/9001/block")).json()["update_id"] is not None
        with pytest.raises(Forbidden):
            await bot.send_message(9001, "届かない")
        missing = await control.post("/users/1/messages", json={"text": "x"})
        assert missing.status_code == 404
        timed_out = await control.post("/wait", json={"chat_id": 9001, "count": 5, "timeout": 0.1})
        assert timed_out.status_code == 408 and "got 1 of 5" in timed_out.json()["error"]


async def test_runs_standalone_on_loopback() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.sandbox.telegram_api", "--token", TOKEN, "--port", "0",
        cwd=Path(__file__).resolve().parents[2], stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 10.0)).decode()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url, line
        async with httpx.AsyncClient(timeout=5.0) as client:
            me = (await client.get(f"{url.group()}/bot{TOKEN}/getMe")).json()
            unauthorized = await client.post(f"{url.group()}/bot123:nope/getMe")
        assert me["ok"] and me["result"]["username"] == "otayori_sandbox_bot"
        assert unauthorized.status_code == 401
        assert unauthorized.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
    finally:
        if process.returncode is None:
            process.terminate()
        assert await asyncio.wait_for(process.wait(), 10.0) == 0
