"""What the author reads (core.desk_views): the options' buttons within LINE's 13, the final report's failures by
reason and uncertain count, and previews that fit one message on the admin's own channel."""

from __future__ import annotations

from datetime import UTC, datetime

from core import render
from core.desk_views import ChannelRendering, options_reply, preview_replies, progress_text, visible_telegram_text
from core.reports import DeliveryReport
from storage.models import Issue
from tests.conftest import make_settings

AT = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)


def test_the_options_stay_within_lines_thirteen_buttons(tmp_path):
    few = make_settings(tmp_path)
    issue = Issue(id=7, title="お知らせ", body_md="本文", topic="events", channels=["line"])
    reply = options_reply(few, issue, ["line", "telegram", "email"], {"line": 4})
    labels = [b.label for b in reply.buttons]
    assert labels == ["IT関連情報", "✅ イベント情報", "すべて", "✅ LINE", "Telegram", "メール",
                      "プレビュー", "テスト送信", "送信", "取り消し"]
    assert [b.data for b in reply.buttons][1] == "desk:7:topic:events" and "LINE 4人" in reply.text
    many = make_settings(tmp_path, topics=[f"t{i}:話題{i}" for i in range(8)])
    crowded = options_reply(many, issue, ["line", "telegram", "email"], {})
    assert len(crowded.buttons) <= 13 and crowded.buttons[0].data == "desk:7:topics"  # topics get a menu of their own
    assert all(len(b.data.encode()) <= 64 and len(b.label) <= 20 for b in crowded.buttons)


def test_the_final_report_lists_failures_by_reason_and_the_uncertain_count(tmp_path):
    settings = make_settings(tmp_path)
    report = DeliveryReport(3, "12月号", "sent", counts={
        ("telegram", "sent"): 5, ("telegram", "failed"): 2, ("telegram", "uncertain"): 1, ("line", "sent"): 4,
        ("line", "deferred"): 6, ("email", "skipped"): 1})
    text = progress_text(settings, report, {("telegram", "Forbidden: bot was blocked by the user"): 2}, final=True,
                         at=AT)
    assert text.splitlines() == [
        "⏸ 号 #3「12月号」一部を保留して終了",
        "・LINE: 送信済み 4 / 失敗 0", "・Telegram: 送信済み 5 / 失敗 2", "・メール: 送信済み 0 / 失敗 0",
        "失敗の理由:", "・Telegram: Forbidden: bot was blocked by the user(2件)",
        "届いたか分からないもの(uncertain): 1件",
        "保留(deferred): 6件 — otayori deliveries resume 3 で再開できます",
        "送信直前に同意がなくなり送らなかったもの: 1件"]
    running = progress_text(settings, DeliveryReport(3, "12月号", "sending", counts={
        ("line", "sending"): 2, ("line", "pending"): 3, ("line", "sent"): 1}), {}, final=False, at=AT)
    assert running.splitlines() == ["📮 号 #3「12月号」配信中", "・LINE: 送信済み 1 / 未送信 5 / 失敗 0",
                                    "(2026-12-01 09:30 時点)"]


def test_previews_fit_the_admins_channel(tmp_path):
    settings = make_settings(tmp_path)
    body = "\n\n".join("段落" + "あ" * 1500 for _ in range(3))  # one LINE part of 4,5xx characters
    issue = Issue(id=1, title="長い号", body_md=body)
    footer = "配信停止は「解除」と送ってください。"
    renderings = [ChannelRendering("line", render.issue_parts("line", issue.title, body, footer)),
                  ChannelRendering("telegram", render.issue_parts("telegram", issue.title, body, footer))]
    for admin_channel, limit in (("telegram", render.TELEGRAM_TEXT_LIMIT), ("line", render.LINE_TEXT_LIMIT_UTF16)):
        replies = preview_replies(settings, issue, ["line", "telegram"], {"line": 1, "telegram": 1}, renderings,
                                  line_quota=None, line_cost=1, email_url=None, admin_channel=admin_channel)
        for reply in replies:
            shown = visible_telegram_text(reply.telegram_html) if reply.telegram_html else reply.text
            assert len(shown) <= limit and render.utf16_length(reply.text) <= render.LINE_TEXT_LIMIT_UTF16
        joined = "".join(r.text for r in replies)
        assert joined.count("あ") == 2 * 4500  # both renderings whole: nothing cut, whatever the channel
