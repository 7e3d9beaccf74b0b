"""The author's desk in the chat (issue 5 items 1-5, 8): the whole admin conversation on Telegram and on LINE, topic
filtering chosen in the chat end to end, cancel mid-broadcast from the chat, a draft and a scheduled issue across
restarts, a forwarded message and a photo as an issue, long previews, live progress and the stats — through the real
python-telegram-bot and line-bot-sdk clients against the emulators, real SQLite files.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
from sqlmodel import select

from bots.sandbox.stack import Stack, running_stack
from bots.sandbox.telegram_api import SentMessage
from bots.scheduling import enqueue_due_once
from core.admins import admin_log
from storage.models import Delivery, Issue
from tests.integration.desk_helpers import (
    ADMIN_LINE,
    ADMIN_TG,
    LineChat,
    TgChat,
    desk_settings,
    desk_stack,
    line_subscribe,
    tg_subscribe,
)
from tests.integration.test_cli import telegram_subscribe

BODY_HTML = ('<b>12月のIT通信</b>\n<b>二段階認証</b>を有効にしましょう。'
             '設定の<a href="https://example.jp/2fa">手順はこちら</a>。\n\n勉強会: 12月5日(金)19時〜')


async def issues(stack: Stack) -> list[Issue]:
    async with stack.runtime.db.read() as session:
        return list((await session.exec(select(Issue).order_by(Issue.id))).all())


async def deliveries(stack: Stack, issue_id: int) -> dict[str, int]:
    async with stack.runtime.db.read() as session:
        rows = (await session.exec(select(Delivery).where(Delivery.issue_id == issue_id))).all()
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    return counts


def issue_copies(messages: list[SentMessage], title: str) -> list[SentMessage]:
    return [m for m in messages if m.text and m.text.startswith(title)]


async def test_the_admin_conversation_on_telegram_with_topics_chosen_in_the_chat(tmp_path: Path):
    async with desk_stack(tmp_path) as stack:
        tg = stack.telegram
        everyone, it_fan, events_fan = (tg.add_user(first_name=n).id for n in ("全部", "IT好き", "イベント好き"))
        await tg_subscribe(stack, everyone)
        await tg_subscribe(stack, it_fan, topic_label="IT関連情報")
        await tg_subscribe(stack, events_fan, topic_label="イベント情報")
        await tg_subscribe(stack, ADMIN_TG)  # the author also reads (and receives the test send)
        admin = TgChat(tg, ADMIN_TG)

        [prompt] = await admin.say("配信")
        assert "本文を送ってください" in prompt.text and [b["text"] for b in prompt.buttons] == ["取り消し"]
        # The body with Telegram formatting (bold, a link), as the client sends it: text + entities.
        [options] = await admin.say(BODY_HTML, parse_mode="HTML")
        assert "タイトル: 12月のIT通信" in options.text and "トピック: すべて" in options.text
        assert "Telegram 4人" in options.text
        assert [b["text"] for b in options.buttons][:3] == ["IT関連情報", "イベント情報", "✅ すべて"]

        # A topic button edits the options message in place (no new message) and narrows the recipients.
        await admin.press(options, "IT関連情報", count=0)
        edited = await tg.wait_until(lambda: tg.message(ADMIN_TG, options.message_id).edits
                                     and tg.message(ADMIN_TG, options.message_id), what="the edited options")
        assert "トピック: IT関連情報" in edited.text and "Telegram 3人" in edited.text
        assert "✅ IT関連情報" in [b["text"] for b in edited.buttons]

        # Preview: the summary, then each channel's rendering; Telegram's as real HTML (entities).
        preview = await admin.press(edited, "プレビュー", count=4)
        summary = preview[0].text
        assert "プレビュー: 号 #1「12月のIT通信」" in summary and "・Telegram: 3人" in summary
        assert "LINE の今月の残り" in summary
        shown = {m.text.splitlines()[0]: m for m in preview[1:]}
        assert set(shown) == {"── LINEでの表示 ──", "── Telegramでの表示 ──", "── メールでの表示 ──"}
        as_telegram = shown["── Telegramでの表示 ──"]
        assert {"type": "bold", "offset": as_telegram.text.index("二段階認証"), "length": 5} in as_telegram.entities
        assert any(e["type"] == "text_link" and e["url"] == "https://example.jp/2fa" for e in as_telegram.entities)
        assert "手順はこちら (https://example.jp/2fa)" in shown["── LINEでの表示 ──"].text  # LINE: plain text
        assert "配信停止" in shown["── メールでの表示 ──"].text
        link = re.search(r"メールの HTML 版: (\S+)", summary).group(1)
        async with httpx.AsyncClient(trust_env=False) as client:
            page = await client.get(link)
            forged = await client.get(link[:-3] + "abc")
        assert page.status_code == 200 and "<strong>二段階認証</strong>" in page.text
        assert page.headers["x-robots-tag"].startswith("noindex") and forged.status_code == 404

        # テスト送信 reaches the author only (their own subscribed chat), as a copy; the draft stays a draft.
        before = {u: len(tg.messages_to(u)) for u in (everyone, it_fan, events_fan)}
        test = await admin.say("テスト送信", count=3)
        assert "テスト送信します" in test[0].text and "Telegram 1" in test[0].text
        assert issue_copies(test, "12月のIT通信") and "テスト送信の結果" in test[-1].text
        assert {u: len(tg.messages_to(u)) for u in before} == before
        assert [i.status for i in await issues(stack)] == ["draft", "sent"]

        # 送信: one status message, edited as it goes, ending with the final report.
        sending = await admin.say("送信", count=1)
        status = sending[0]
        assert "配信中" in status.text and [b["text"] for b in status.buttons] == ["配信を止める"]
        final = await tg.wait_until(lambda: "配信完了" in (tg.message(ADMIN_TG, status.message_id).text or "")
                                    and tg.message(ADMIN_TG, status.message_id), timeout=20, what="the final report")
        assert "・Telegram: 送信済み 3 / 失敗 0" in final.text and "失敗の理由:\n・なし" in final.text
        assert "uncertain): 0件" in final.text and final.buttons == []
        for reader, wanted in ((everyone, 1), (it_fan, 1), (events_fan, 0)):
            copies = issue_copies(tg.messages_to(reader)[before[reader]:], "12月のIT通信")
            assert len(copies) == wanted, (reader, copies)
        copy = issue_copies(tg.messages_to(it_fan), "12月のIT通信")[0]
        assert {"type": "bold", "offset": copy.text.index("二段階認証"), "length": 5} in copy.entities

        # Two presses are one broadcast: 送信 on the old options message is refused, nothing more is sent.
        [again] = await admin.press(edited, "送信")
        assert again.text == "号 1 は「配信完了」のため、送信できません。"
        [after] = await admin.say("キャンセル 1")  # a cancel after completion: a clear answer
        assert "配信が完了しています" in after.text
        assert await deliveries(stack, 1) == {"sent": 3}
        assert len(issue_copies(tg.messages_to(it_fan), "12月のIT通信")) == 1

        logged = [(row.action, row.outcome) for row in reversed(await admin_log(stack.runtime.db))]
        for action in ("draft.start", "draft.edit", "issue.preview", "issue.test_send", "issue.send"):
            assert any(a == action for a, _ in logged), (action, logged)
        assert not any(a == "issue.cancel" for a, _ in logged)  # the refused cancel changed nothing
        assert all(row.actor == str(ADMIN_TG) for row in await admin_log(stack.runtime.db) if row.outcome == "ok")


async def test_the_admin_conversation_on_line(tmp_path: Path):
    async with desk_stack(tmp_path) as stack:
        line, tg = stack.line, stack.telegram
        stack.line.set_quota(1000, used=10)
        readers = [await line.add_user(display_name=f"読者{i}") for i in range(2)]
        for reader in readers:
            await line_subscribe(stack, reader)
        tg_reader = tg.add_user(first_name="テレ").id
        await tg_subscribe(stack, tg_reader)
        await line_subscribe(stack, ADMIN_LINE)
        admin = LineChat(line, ADMIN_LINE)

        [prompt] = await admin.say("配信")
        assert "本文を送ってください" in prompt["text"] and admin.labels(prompt) == ["取り消し"]
        # A one-line message is the body; the title is asked for next ("the first line or a prompt").
        [ask] = await admin.say("12月28日から1月4日まで休業します。")
        assert "タイトルを1行で送ってください" in ask["text"]
        [options] = await admin.say("\u3000年末年始のお知らせ ")  # stray ideographic space around the title
        assert "タイトル: 年末年始のお知らせ" in options["text"] and "LINE 3人・Telegram 1人" in options["text"]
        assert "プレビュー" in admin.labels(options) and len(admin.labels(options)) <= 13  # LINE's quick-reply limit

        preview = await admin.press(options, "プレビュー", count=4)
        assert "LINE の今月の残り: 990通(この号で 3通使います)" in preview[0]["text"]
        assert preview[1]["text"].startswith("── LINEでの表示 ──\n\n【年末年始のお知らせ】")

        # Refusals with their reason; the draft stays as it was.
        [past] = await admin.say("予約 2020-01-01 09:00")
        assert "すでに過ぎています" in past["text"]
        [malformed] = await admin.say("予約 あしたの朝")
        assert "読み取れません" in malformed["text"] and "+30m" in malformed["text"]
        [scheduled] = await admin.say("予約 ＋１ｈ")  # full-width: still read
        assert "予約しました: 号 #1「年末年始のお知らせ」" in scheduled["text"] and "キャンセル 1" in scheduled["text"]
        [cancelled] = await admin.say("キャンセル")
        assert "号 #1 の予約を取り消しました" in cancelled["text"]

        # A second issue sent now: the start notice comes by reply (free), the final report by push.
        await admin.say("配信")
        [options] = await admin.say("年末のお知らせ\n12月28日から休業します。")
        pushes_before = len([r for r in line.requests if r.path.endswith("/push")])
        [notice] = await admin.press(options, "送信")
        assert "📮 号 #2「年末のお知らせ」配信中" in notice["text"] and admin.labels(notice) == ["配信を止める"]
        [final] = await admin.wait_for(lambda m: "配信完了" in m.get("text", ""), what="the final report")
        assert "・LINE: 送信済み 3 / 失敗 0" in final["text"] and "・Telegram: 送信済み 1 / 失敗 0" in final["text"]
        assert line.deliveries_to(ADMIN_LINE)[-1].via == "push"
        assert [line.texts_to(r).count("【年末のお知らせ】\n\n12月28日から休業します。\n\n配信停止は「解除」と送ってください。")
                for r in readers] == [1, 1]
        assert [i.status for i in await issues(stack)] == ["cancelled", "sent"]
        # The final report also reaches the other admin's private chat (Telegram), and only one push was the report.
        report_pushes = [r for r in line.requests[pushes_before:] if r.path.endswith("/push")]
        assert len(report_pushes) == 1
        await tg.wait_until(lambda: any("号 #2「年末のお知らせ」配信完了" in (m.text or "")
                                        for m in tg.messages_to(ADMIN_TG)), what="the report to the other admin")


async def test_cancel_mid_broadcast_from_the_chat(tmp_path: Path):
    async with desk_stack(tmp_path) as stack:
        tg = stack.telegram
        readers = [tg.add_user(first_name=f"読者{i}").id for i in range(8)]
        for reader in readers:
            await tg_subscribe(stack, reader)
        admin = TgChat(tg, ADMIN_TG)
        await admin.say("配信")
        await admin.say("取りやめる号\n本文です。")
        tg.hold_answers("sendMessage", 0.4)  # a slow Bot API: the broadcast takes seconds
        [status] = await admin.say("送信")
        await tg.wait_until(lambda: sum(bool(issue_copies(tg.messages_to(r), "取りやめる号")) for r in readers) >= 2,
                            timeout=20, what="two copies sent")
        [stopped] = await admin.press(status, "配信を止める")
        assert "号 #1 の配信を止めました" in stopped.text
        final = await tg.wait_until(lambda: "配信を止めました" in (tg.message(ADMIN_TG, status.message_id).text or "")
                                    and tg.message(ADMIN_TG, status.message_id), timeout=20, what="the final report")
        tg.hold_answers("sendMessage", 0)
        counts = await deliveries(stack, 1)
        received = sum(len(issue_copies(tg.messages_to(r), "取りやめる号")) for r in readers)
        assert counts.get("cancelled", 0) >= 1 and counts.get("sent", 0) == received >= 2
        assert set(counts) <= {"sent", "cancelled"} and sum(counts.values()) == len(readers)
        assert f"取り消し: {counts['cancelled']}件" in final.text
        await asyncio.sleep(1.0)  # nothing more arrives after the cancel
        assert sum(len(issue_copies(tg.messages_to(r), "取りやめる号")) for r in readers) == received


async def test_a_draft_survives_a_restart_and_a_scheduled_issue_fires_after_one(tmp_path: Path):
    directory = tmp_path / "stack"
    settings = desk_settings(directory)
    reader_id = 5000000777

    async def users(stack: Stack) -> TgChat:  # each process has new emulators: the same people come back
        stack.telegram.add_user(ADMIN_TG, first_name="著者")
        stack.telegram.add_user(reader_id, first_name="読者")
        return TgChat(stack.telegram, ADMIN_TG)

    async with running_stack(settings) as stack:
        admin = await users(stack)
        await telegram_subscribe(stack, reader_id)
        [prompt] = await admin.say("配信")
        assert "本文を送ってください" in prompt.text
    # Restarted between 配信 and the body: the draft waits for it. (Telegram's update ids go on after a restart.)
    async with running_stack(settings, first_update_id=200_000_001) as stack:
        admin = await users(stack)
        [options] = await admin.say("予約した号\n時間になったら届きます。")
        assert "タイトル: 予約した号" in options.text
        [scheduled] = await admin.say("予約 +2s")
        assert "予約しました: 号 #1" in scheduled.text
        assert await enqueue_due_once(stack.runtime) == []  # not due yet
    await asyncio.sleep(2.5)  # the process was down when it fell due

    async with running_stack(settings, first_update_id=300_000_001) as stack:  # a new process, the same database
        await users(stack)
        tg = stack.telegram
        stack.runtime.desk_edge.progress_interval = 0.3
        due = await enqueue_due_once(stack.runtime)  # what `otayori run` does every 5 s
        assert [d.issue_id for d in due] == [1]
        [copy] = await tg.wait_for_messages(reader_id, 1, timeout=10)
        assert copy.text.startswith("予約した号")
        status = (await tg.wait_for_messages(ADMIN_TG, 1))[0]  # the author follows it from the chat
        await tg.wait_until(lambda: "配信完了" in (tg.message(ADMIN_TG, status.message_id).text or ""), timeout=10)
        assert await enqueue_due_once(stack.runtime) == []  # never twice
        await stack.runtime.desk_edge.wait_idle()
        assert await deliveries(stack, 1) == {"sent": 1}


async def test_a_message_forwarded_into_the_admin_chat_becomes_a_draft(tmp_path: Path):
    async with desk_stack(tmp_path) as stack:
        admin = TgChat(stack.telegram, ADMIN_TG)
        origin = {"type": "channel", "chat": {"id": -1001999, "type": "channel", "title": "告知チャンネル"},
                  "message_id": 42}
        started, options = await admin.say("<b>新年会のお知らせ</b>\n1月10日 18時〜 <i>会費制</i>", count=2,
                                           parse_mode="HTML", forward_origin=origin)
        assert "転送されたメッセージを本文にして、新しい号(下書き #1)" in started.text
        assert "タイトル: 新年会のお知らせ" in options.text
        [issue] = await issues(stack)
        assert issue.title == "新年会のお知らせ" and issue.body_md == "1月10日 18時〜 *会費制*"
        # Inside a conversation a forwarded message is simply the body (「次のメッセージが本文」).
        await admin.say("配信")
        [options] = await admin.say("<b>別の号</b>\n転送の本文", parse_mode="HTML", forward_origin=origin)
        assert "タイトル: 別の号" in options.text and len(await issues(stack)) == 2


async def test_progress_edits_are_spaced_and_the_stats_come_with_the_chart(tmp_path: Path):
    # Two Telegram messages a second: six readers take about three seconds, long enough to watch.
    async with desk_stack(tmp_path, progress_interval=1.0, telegram_rate_per_second=2) as stack:
        tg, line = stack.telegram, stack.line
        readers = [tg.add_user(first_name=f"読者{i}").id for i in range(6)]
        for reader in readers:
            await tg_subscribe(stack, reader)
        await line_subscribe(stack, ADMIN_LINE)
        admin = TgChat(tg, ADMIN_TG)
        await admin.say("配信")
        await admin.say("ゆっくり届く号\n本文。")
        [status] = await admin.say("送信")
        await tg.wait_until(lambda: "配信完了" in (tg.message(ADMIN_TG, status.message_id).text or ""), timeout=30)
        edits = tg.message(ADMIN_TG, status.message_id).edits  # earlier versions, each stamped when it was replaced
        times = [status.at] + [edit.at for edit in edits]
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert len(edits) >= 2 and all(gap >= 0.95 for gap in gaps), gaps  # at most one edit per interval
        shown = [edit.text or "" for edit in edits[1:]]
        midway = [re.search(r"Telegram: 送信済み (\d+) / 未送信 (\d+)", text) for text in shown]
        assert any(m and int(m[1]) > 0 and int(m[2]) > 0 for m in midway), shown  # progress, not just the end

        stats = await admin.say("統計", count=2)
        assert (await admin_log(stack.runtime.db, limit=1))[0].action == "stats.view"
        assert stats[0].text.startswith("📊 統計") and "購読者: 7人(LINE 1・Telegram 6・メール 0)" in stats[0].text
        assert "#1「ゆっくり届く号」" in stats[0].text and "送信済み 7 / 失敗 0" in stats[0].text  # 6 + the LINE admin
        assert stats[1].method == "sendPhoto" and stats[1].photo.data.startswith(b"\x89PNG")
        # LINE loads pictures only over https: with this http:// public URL the admin gets the text and the reason.
        [line_stats] = await LineChat(line, ADMIN_LINE).say("統計")
        assert "https" in line_stats["text"] and not [m for m in line.messages_to(ADMIN_LINE) if m["type"] == "image"]


async def test_the_stats_chart_reaches_a_line_admin_with_an_https_public_url(tmp_path: Path):
    settings = desk_settings(tmp_path, public_url="https://news.example.jp")
    async with running_stack(settings) as stack:
        line = stack.line
        await line.add_user(ADMIN_LINE, display_name="著者")
        await line_subscribe(stack, ADMIN_LINE)
        [text] = await LineChat(line, ADMIN_LINE).say("統計")
        assert text["text"].startswith("📊 統計")
        [image] = await LineChat(line, ADMIN_LINE).wait_for(lambda m: m["type"] == "image", what="the chart")
        url = image["originalContentUrl"]
        assert url.startswith("https://news.example.jp/charts/signups/") and url.endswith(".png")
        path = url.removeprefix("https://news.example.jp")
        async with httpx.AsyncClient(trust_env=False) as client:  # the app behind its TLS proxy
            picture = await client.get(stack.web_url + path)
            forged = await client.get(stack.web_url + path.replace(".png", "x.png"))
        assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG")
        assert forged.status_code == 404


async def test_a_photo_in_the_compose_conversation_becomes_the_issues_picture(tmp_path: Path):
    from tests.pictures import picture

    async with desk_stack(tmp_path) as stack:
        tg, line = stack.telegram, stack.line
        reader = tg.add_user(first_name="読者").id
        await tg_subscribe(stack, reader)
        stranger = tg.add_user(first_name="写真好き").id
        await tg_subscribe(stack, stranger)
        await line_subscribe(stack, ADMIN_LINE)
        admin = TgChat(tg, ADMIN_TG)

        # A reader's photo is not a command: no answer, nothing stored.
        before = len(tg.messages_to(stranger))
        tg.send_photo(stranger, picture(300, 200))
        # An admin's photo with a caption (an event flyer) outside a conversation: a new draft, picture and body.
        flyer = picture(600, 848)
        before_admin = len(tg.messages_to(ADMIN_TG))
        tg.send_photo(ADMIN_TG, flyer, caption="<b>12月のセミナー</b>\n12月5日(金)19時〜 オンライン", parse_mode="HTML")
        started, attached, options = (await tg.wait_for_messages(ADMIN_TG, before_admin + 3))[before_admin:]
        assert "写真から新しい号(下書き #1)" in started.text and "写真(600×848)を下書き #1 に付けました" in attached.text
        assert "タイトル: 12月のセミナー" in options.text and "写真: あり" in options.text
        assert len(tg.messages_to(stranger)) == before
        [issue] = (await issues(stack))
        assert issue.image_sha256 and issue.body_md.startswith("12月5日(金)19時〜")

        # LINE loads pictures only over https: with LINE among the channels the send is refused with the reason.
        [refused] = await admin.press(options, "送信")
        assert "https" in refused.text and "OTAYORI_PUBLIC_URL" in refused.text
        assert [i.status for i in await issues(stack)] == ["draft"]
        await admin.press(options, "✅ LINE", count=0)  # leave LINE out
        await tg.wait_until(lambda: "チャネル: Telegram・メール" in (tg.message(ADMIN_TG, options.message_id).text or ""))
        tg.send_text(ADMIN_TG, "送信")
        await tg.wait_until(lambda: any("12月のセミナー」配信完了" in (m.text or "") for m in tg.messages_to(ADMIN_TG)),
                            timeout=20, what="the final report")
        [copy] = [m for m in tg.messages_to(reader) if m.method == "sendPhoto"]
        assert copy.caption.startswith("12月のセミナー") and copy.photo.data[:2] == b"\xff\xd8"  # a JPEG

        # On LINE: a picture in the body step is kept, and the body is asked for; a broken file is refused.
        line_admin = LineChat(line, ADMIN_LINE)
        await line_admin.say("配信")
        await line.send_image(ADMIN_LINE, b"this is not a picture", "image/jpeg")
        [broken] = await line_admin.wait_for(lambda m: "読み取れません" in m.get("text", ""), what="the refusal")
        assert "JPEG か PNG" in broken["text"]
        count = len(line.messages_to(ADMIN_LINE))
        await line.send_image(ADMIN_LINE, picture(800, 600, fmt="PNG"), "image/png")
        attached, prompt = (await line.wait_for_messages(ADMIN_LINE, count + 2))[count:]
        assert "写真(800×600)を下書き #2 に付けました" in attached["text"] and "本文を送ってください" in prompt["text"]
        [options] = await line_admin.say("写真つきのお知らせ\n本文です。")
        assert "写真: あり" in options["text"] and "タイトル: 写真つきのお知らせ" in options["text"]


async def test_a_long_preview_on_line_arrives_whole_and_admins_get_their_help(tmp_path: Path):
    async with desk_stack(tmp_path) as stack:
        line, tg = stack.line, stack.telegram
        await line_subscribe(stack, ADMIN_LINE)
        admin = LineChat(line, ADMIN_LINE)
        await admin.say("配信")
        body = "\n\n".join(f"第{i}節 " + "あ" * 1200 for i in range(6))  # 7,200 characters: several parts each
        [options] = await admin.say("長いプレビュー\n" + body)
        before, requests_before = len(line.messages_to(ADMIN_LINE)), len(line.requests)
        await line.postback(ADMIN_LINE, admin.data(options, "プレビュー"))
        await admin.wait_for(lambda m: m.get("text", "").startswith("── メールでの表示 ──"), what="the end")
        shown = line.messages_to(ADMIN_LINE)[before:]
        sends = [r.path.rsplit("/", 1)[-1] for r in line.requests[requests_before:] if r.method == "POST"]
        assert len(shown) > 5 and sends[0] == "reply" and set(sends[1:]) == {"push"}  # the rest by push, in order
        headings = [m["text"].splitlines()[0] for m in shown if m["text"].startswith("──")]
        assert headings == ["── LINEでの表示 ──", "── Telegramでの表示 ──", "── メールでの表示 ──"]
        line_part = "".join(m["text"] for m in shown[1:shown.index(next(m for m in shown if m["text"].startswith(
            "── Telegram")))])
        assert all(f"第{i}節" in line_part for i in range(6)) and line_part.count("あ") == 7200

        # An admin's free text is not forwarded to the admins: it gets the admin's help.
        [helped] = await admin.say("こんにちは")
        assert helped["text"].startswith("管理者のことば:") and "返信 <番号> <本文>" in helped["text"]
        replies = await TgChat(tg, ADMIN_TG).say("ヘルプ", count=2)  # the grammar's help, then the admin's
        assert replies[0].text.startswith("使えることば") and replies[1].text.startswith("管理者のことば")


async def test_a_chat_broadcast_alongside_runs_background_dispatcher(tmp_path: Path):
    from bots.app import dispatch_forever

    async with desk_stack(tmp_path, telegram_rate_per_second=5) as stack:
        tg = stack.telegram
        readers = [tg.add_user(first_name=f"読者{i}").id for i in range(6)]
        for reader in readers:
            await tg_subscribe(stack, reader)
        stop = asyncio.Event()
        background = asyncio.create_task(dispatch_forever(stack.runtime, stop, interval=0.1))  # as `otayori run`
        try:
            admin = TgChat(tg, ADMIN_TG)
            await admin.say("配信")
            await admin.say("二つの配信係\n本文")
            [status] = await admin.say("送信")
            final = await tg.wait_until(lambda: "配信完了" in (tg.message(ADMIN_TG, status.message_id).text or "")
                                        and tg.message(ADMIN_TG, status.message_id), timeout=20, what="the report")
        finally:
            stop.set()
            await background
        # Whoever sent which row, each reader has one copy and the report counts them all.
        assert [len(issue_copies(tg.messages_to(r), "二つの配信係")) for r in readers] == [1] * 6
        assert "・Telegram: 送信済み 6 / 失敗 0" in final.text and "uncertain): 0件" in final.text
        assert await deliveries(stack, 1) == {"sent": 6}
