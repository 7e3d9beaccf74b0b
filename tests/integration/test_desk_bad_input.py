"""Bad input at the author's desk (issue 5 "Bad input", each one a test), through the real SDKs and the emulators:
a non-admin pressing an admin button, an admin verb typed by a subscriber, a schedule in the past or malformed, an
empty body, a body over a channel's limit, two 送信 presses, a cancel after completion, and a reply to a forwarded
message from a non-admin.
"""

from __future__ import annotations

from pathlib import Path

from sqlmodel import select

from core import texts
from core.admins import admin_log
from storage.models import AdminAction, Delivery, Issue, ReaderMessage
from tests.integration.desk_helpers import (
    ADMIN_LINE,
    ADMIN_TG,
    LineChat,
    TgChat,
    desk_stack,
    line_subscribe,
    tg_subscribe,
)


async def all_rows(stack, model) -> list:
    async with stack.runtime.db.read() as session:
        return list((await session.exec(select(model).order_by(model.id))).all())


async def refusals(stack) -> list[AdminAction]:
    return [row for row in reversed(await admin_log(stack.runtime.db)) if row.outcome == "refused"]


async def test_a_non_admin_pressing_an_admin_button_changes_nothing(tmp_path: Path):
    async with desk_stack(tmp_path) as stack:
        tg, line = stack.telegram, stack.line
        group = -1001234567
        member = tg.add_user(first_name="メンバー").id
        # Admin verbs work in a group too (checked on the sender, not the chat); the prompt lands in the group …
        tg.send_group_text(group, ADMIN_TG, "/broadcast")
        [prompt] = await tg.wait_for_messages(group, 1)
        assert "本文を送ってください" in prompt.text
        # … where someone else presses its button: a short refusal as the callback answer, nothing else.
        update_id = tg.press_button(member, prompt.message_id, prompt.callback_data_for("取り消し"), chat_id=group)
        answered = await tg.wait_for_callback_answer(update_id)
        assert answered.text == texts.text("desk_admin_only")
        assert len(tg.messages_to(group)) == 1
        # The same on LINE: a reader's postback carrying a desk button's data.
        reader = await line.add_user(display_name="読者")
        await line_subscribe(stack, reader)
        [reply] = await LineChat(line, reader).press({"quickReply": {"items": [
            {"action": {"label": "送信", "data": f"desk:{(await all_rows(stack, Issue))[0].id}:send"}}]}}, "送信")
        assert reply["text"] == texts.text("desk_admin_only")
        assert [i.status for i in await all_rows(stack, Issue)] == ["draft"]
        assert await all_rows(stack, Delivery) == []
        logged = await refusals(stack)
        assert [(r.channel, r.actor, r.action) for r in logged] == [
            ("telegram", str(member), "button.cancel"), ("line", reader, "button.send")]
        assert all(r.details == {} for r in logged)  # never the contents


async def test_an_admin_verb_typed_by_a_subscriber_is_ordinary_text(tmp_path: Path):
    async with desk_stack(tmp_path) as stack:
        tg = stack.telegram
        reader = tg.add_user(first_name="読者").id
        await tg_subscribe(stack, reader)
        chat = TgChat(tg, reader)
        for verb in ("配信", "/broadcast", "送信", "統計", "返信 1 こんにちは", "キャンセル"):
            [reply] = await chat.say(verb)
            assert reply.text == texts.text("reader_ack", sender=stack.settings.sender_name), verb  # ordinary text
        assert await all_rows(stack, Issue) == []  # no draft, nothing sent, no stats
        assert [r.action for r in await refusals(stack)] == [
            "chat.broadcast", "chat.broadcast", "chat.send", "chat.stats", "chat.reply", "chat.cancel"]
        assert all(r.actor == str(reader) and r.details == {} for r in await refusals(stack))
        # As ordinary text, each was forwarded to the author like any reader's message.
        assert [m.text for m in await all_rows(stack, ReaderMessage)] == [
            "配信", "/broadcast", "送信", "統計", "返信 1 こんにちは", "キャンセル"]


async def test_a_schedule_in_the_past_or_malformed_is_refused_with_the_reason(tmp_path: Path):
    async with desk_stack(tmp_path) as stack:
        admin = TgChat(stack.telegram, ADMIN_TG)
        await admin.say("配信")
        await admin.say("予約のテスト\n本文")
        cases = {
            "予約 2020-01-01 09:00": "2020-01-01 09:00(Asia/Tokyo)はすでに過ぎています",
            "予約 2026-02-30 09:00": "日時「2026-02-30 09:00」を読み取れません",
            "予約 あした9時": "日時「あした9時」を読み取れません",
            "予約 +0s": "すでに過ぎています",
            "予約 2099-01-01 09:00": "予約できるのは366日先までです",
            "予約 +2000d": "予約できるのは366日先までです",
        }
        for text, reason in cases.items():
            [reply] = await admin.say(text)
            assert reason in reply.text, (text, reply.text)
        [issue] = await all_rows(stack, Issue)
        assert issue.status == "draft" and issue.scheduled_at is None


async def test_an_empty_body_is_asked_for_again(tmp_path: Path):
    async with desk_stack(tmp_path) as stack:
        admin = LineChat(stack.line, ADMIN_LINE)
        await line_subscribe(stack, ADMIN_LINE)
        await admin.say("配信")
        [empty] = await admin.say("\u3000\u200b \u3000")  # only an ideographic space and a zero-width space
        assert empty["text"] == texts.text("desk_body_empty")
        [still] = await admin.say("送信")  # the conversation still waits for the body: this *is* the body
        assert "タイトルを1行で送ってください" in still["text"]
        [issue] = await all_rows(stack, Issue)
        assert issue.body_md == "送信" and issue.status == "draft"


async def test_a_body_over_a_channels_limit_is_split_never_cut(tmp_path: Path):
    async with desk_stack(tmp_path) as stack:
        tg, line = stack.telegram, stack.line
        reader_tg = tg.add_user(first_name="読者").id
        await tg_subscribe(stack, reader_tg)
        reader_line = await line.add_user(display_name="読者")
        await line_subscribe(stack, reader_line)
        admin = TgChat(tg, ADMIN_TG)
        # 4,088 characters of body (as much as one Telegram message takes with the title line): with the footer,
        # over Telegram's 4,096 per message; the emoji count 2 UTF-16 units each: over LINE's 5,000 per message.
        paragraphs = [f"第{i}段落 " + "😀" * 402 for i in range(10)]
        body = "\n\n".join(paragraphs)
        assert len("長い号\n" + body) <= 4096
        await admin.say("配信")
        [options] = await admin.say("長い号\n" + body)
        preview = await admin.press(options, "プレビュー", count=1)
        assert "・LINE: 1人(2通に分けて送ります" in preview[0].text
        assert "・Telegram: 1人(2通に分けて送ります" in preview[0].text
        await tg.wait_until(lambda: any((m.text or "").startswith("── メールでの表示 ──") for m in tg.messages_to(ADMIN_TG)),
                            what="the whole preview")
        before_tg, before_line = len(tg.messages_to(reader_tg)), len(line.texts_to(reader_line))
        tg.send_text(ADMIN_TG, "送信")
        await tg.wait_until(lambda: any("長い号」配信完了" in (m.text or "") for m in tg.messages_to(ADMIN_TG)),
                            timeout=20, what="the final report")
        parts = [m.text or "" for m in tg.messages_to(reader_tg)[before_tg:]]
        assert len(parts) == 2 and all(len(p) <= 4096 for p in parts) and parts[-1].endswith("と送ってください。")
        line_parts = line.texts_to(reader_line)[before_line:]
        assert len(line_parts) == 2 and all(len(t.encode("utf-16-le")) // 2 <= 5000 for t in line_parts)
        for received in ("\n\n".join(parts), "\n\n".join(line_parts)):  # every paragraph, whole and in order
            positions = [received.index(p) for p in paragraphs]
            assert positions == sorted(positions)


async def test_two_send_presses_are_one_broadcast(tmp_path: Path):
    async with desk_stack(tmp_path) as stack:
        tg = stack.telegram
        reader = tg.add_user(first_name="読者").id
        await tg_subscribe(stack, reader)
        admin = TgChat(tg, ADMIN_TG)
        await admin.say("配信")
        [options] = await admin.say("一度だけの号\n本文")
        data = options.callback_data_for("送信")
        before = len(tg.messages_to(ADMIN_TG))
        first = tg.press_button(ADMIN_TG, options.message_id, data)  # both presses arrive before either is handled
        second = tg.press_button(ADMIN_TG, options.message_id, data)
        await tg.wait_for_callback_answer(first)
        await tg.wait_for_callback_answer(second)
        messages = await tg.wait_for_messages(ADMIN_TG, before + 2)
        refused = [m for m in messages[before:] if "送信できません" in (m.text or "")]
        assert len(refused) == 1 and "「配信中」" in refused[0].text or "「配信完了」" in refused[0].text
        await stack.runtime.desk_edge.wait_idle()
        assert len([m for m in tg.messages_to(reader) if (m.text or "").startswith("一度だけの号")]) == 1
        assert len(await all_rows(stack, Delivery)) == 1


async def test_a_cancel_after_completion_gets_a_clear_answer(tmp_path: Path):
    async with desk_stack(tmp_path) as stack:
        line = stack.line
        await line_subscribe(stack, ADMIN_LINE)
        admin = LineChat(line, ADMIN_LINE)
        await admin.say("配信")
        [options] = await admin.say("終わった号\n本文")
        [notice] = await admin.press(options, "送信")
        await admin.wait_for(lambda m: "配信完了" in m.get("text", ""), what="the final report")
        # The start notice's quick-reply button is still there to tap: the broadcast is over.
        [late] = await admin.press(notice, "配信を止める")
        assert late["text"] == "号 1 は配信が完了しています。取り消せません(届いたものは戻せません)。"
        [typed] = await admin.say("キャンセル")  # nothing scheduled, running or drafted
        assert typed["text"] == texts.text("desk_nothing_to_cancel")
        assert [(d.status, d.channel) for d in await all_rows(stack, Delivery)] == [("sent", "line")]


async def test_a_reply_to_a_forwarded_message_from_a_non_admin_reaches_nobody(tmp_path: Path):
    async with desk_stack(tmp_path) as stack:
        line = stack.line
        asker, other = await line.add_user(display_name="質問者"), await line.add_user(display_name="別の人")
        for user in (asker, other, ADMIN_LINE):
            await line_subscribe(stack, user)
        await LineChat(line, asker).say("開催場所を教えてください")
        await LineChat(line, ADMIN_LINE).wait_for(lambda m: "開催場所" in m.get("text", ""), what="the notice")
        notice = [d for d in line.deliveries_to(ADMIN_LINE) if "開催場所" in d.messages[0].get("text", "")][-1]
        asker_before = len(line.messages_to(asker))
        # Someone who is not an admin sends a message quoting the forwarded copy's id.
        [reply] = await LineChat(line, other).say("会場は東京です", quoted_message_id=notice.message_ids[0])
        assert reply["text"] == texts.text("reader_ack", sender=stack.settings.sender_name)  # ordinary reader text
        assert len(line.messages_to(asker)) == asker_before  # nothing reached the asker
        stored = await all_rows(stack, ReaderMessage)
        assert [(m.direction, m.text) for m in stored] == [("in", "開催場所を教えてください"), ("in", "会場は東京です")]
        assert [(r.actor, r.action) for r in await refusals(stack)] == [(other, "reader.answer")]
