"""Reader replies (issue 5 item 6): a subscriber's free text reaches each admin's private chat with who sent it and
on which channel; the author answers by replying to it (Telegram), by quoting it (LINE) or with ``返信 <番号>``, and
the answer reaches the reader on their channel — through the real SDKs against the emulators.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlmodel import select

from bots.sandbox.stack import REHEARSAL_SENDER
from core import texts
from storage.models import ReaderMessage, ReaderMessageNotice
from tests.integration.desk_helpers import (
    ADMIN_LINE,
    ADMIN_TG,
    LineChat,
    TgChat,
    desk_stack,
    line_subscribe,
    tg_subscribe,
)

ANSWER_HEAD = f"【{REHEARSAL_SENDER}からのお返事】\n"


def number_of(notice_text: str) -> int:
    return int(re.search(r"番号 (\d+)", notice_text).group(1))


async def rows(stack) -> list[ReaderMessage]:
    async with stack.runtime.db.read() as session:
        return list((await session.exec(select(ReaderMessage).order_by(ReaderMessage.id))).all())


async def test_a_reader_reply_reaches_the_admins_and_the_answer_reaches_the_reader(tmp_path: Path):
    async with desk_stack(tmp_path) as stack:
        tg, line = stack.telegram, stack.line
        reader_tg = tg.add_user(first_name="花子", last_name="山田").id
        reader_line = await line.add_user(display_name="鈴木 太郎")
        await tg_subscribe(stack, reader_tg)
        await line_subscribe(stack, reader_line)
        await line_subscribe(stack, ADMIN_LINE)  # the LINE admin has the account as a friend: pushes reach them
        admin_tg, admin_line = TgChat(tg, ADMIN_TG), LineChat(line, ADMIN_LINE)

        # A Telegram reader asks: a short acknowledgement instead of the help text …
        question = "セミナーの資料は\u3000どこで見られますか？🙏"
        [ack] = await TgChat(tg, reader_tg).say(question)
        assert ack.text == texts.text("reader_ack", sender=REHEARSAL_SENDER)
        asked = tg.messages_to(reader_tg)  # (the bot's messages; the reader's own message id comes from the notice)
        # … and each admin's private chat gets it with who sent it and on which channel.
        notice = (await tg.wait_for_messages(ADMIN_TG, 1))[-1]
        assert "読者からのメッセージ" in notice.text and "花子 山田 さん(Telegram)" in notice.text
        assert question in notice.text
        [line_notice] = await admin_line.wait_for(lambda m: question in m.get("text", ""), what="the LINE notice")
        assert "花子 山田 さん(Telegram)" in line_notice["text"]
        number = number_of(notice.text)

        # The Telegram admin answers by replying to the forwarded message.
        [done] = await admin_tg.say("資料は明日メールでお送りします。", reply_to_message_id=notice.message_id)
        assert done.text == f"お返事を送りました(番号 {number} → Telegramの 花子 山田 さん)。"
        answer = tg.messages_to(reader_tg)[-1]
        assert answer.text == ANSWER_HEAD + "資料は明日メールでお送りします。"
        assert answer.reply_to_message_id is not None and len(tg.messages_to(reader_tg)) == len(asked) + 1

        # A LINE reader asks; the LINE admin answers by quoting the forwarded message (quotedMessageId).
        _, event = await line.send_text(reader_line, "駐車場はありますか？")
        [ack] = await LineChat(line, reader_line).wait_for(lambda m: "受け取りました" in m.get("text", ""), what="ack")
        [pushed] = await admin_line.wait_for(lambda m: "駐車場はありますか？" in m.get("text", ""), what="notice")
        assert "鈴木 太郎 さん(LINE)" in pushed["text"]  # the name from LINE's profile API
        delivered = [d for d in line.deliveries_to(ADMIN_LINE) if "駐車場" in d.messages[0].get("text", "")][-1]
        assert delivered.via == "push" and delivered.message_ids
        [done] = await admin_line.say("近くにコインパーキングがあります。", quoted_message_id=delivered.message_ids[0])
        assert "お返事を送りました" in done["text"] and "鈴木 太郎" in done["text"]
        reply = line.deliveries_to(reader_line)[-1]
        assert reply.via == "push" and reply.messages[0]["text"] == ANSWER_HEAD + "近くにコインパーキングがあります。"
        assert reply.messages[0]["quoteToken"] == event["message"]["quoteToken"]  # it quotes the reader's question
        second = number_of(pushed["text"])

        # 返信 <番号> works from any admin chat and any channel: the Telegram admin answers the LINE reader again.
        [done] = await admin_tg.say(f"返信 {second} 追伸: 土日は満車になりがちです。\n公共交通機関もどうぞ。")
        assert "お返事を送りました" in done.text
        assert line.texts_to(reader_line)[-1] == ANSWER_HEAD + "追伸: 土日は満車になりがちです。\n公共交通機関もどうぞ。"
        [unknown] = await admin_tg.say("返信 999 もしもし")
        assert unknown.text == "番号 999 の読者メッセージはありません。"

        stored = await rows(stack)
        assert [(r.direction, r.channel, r.status) for r in stored] == [
            ("in", "telegram", "forwarded"), ("out", "telegram", "sent"),
            ("in", "line", "forwarded"), ("out", "line", "sent"), ("out", "line", "sent")]
        assert stored[0].text == question and stored[1].actor == f"telegram:{ADMIN_TG}"
        async with stack.runtime.db.read() as session:
            notices = (await session.exec(select(ReaderMessageNotice))).all()
        assert {(n.message_id, n.channel) for n in notices} == {
            (number, "telegram"), (number, "line"), (second, "telegram"), (second, "line")}


async def test_with_forwarding_off_a_reader_gets_the_help_and_nothing_is_kept(tmp_path: Path):
    async with desk_stack(tmp_path, forward_replies=False) as stack:
        tg = stack.telegram
        reader = tg.add_user(first_name="読者").id
        stranger = tg.add_user(first_name="未登録").id
        await tg_subscribe(stack, reader)
        [reply] = await TgChat(tg, reader).say("質問です")
        assert reply.text == texts.text("help")
        [reply] = await TgChat(tg, stranger).say("質問です")  # not a subscriber: help, whatever the setting
        assert reply.text == texts.text("help")
        assert await rows(stack) == [] and tg.messages_to(ADMIN_TG) == []
