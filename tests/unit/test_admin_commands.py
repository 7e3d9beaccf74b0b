"""Admin verbs in the chat grammar (core.commands.parse_admin): whole-message keywords in any width or script,
Telegram's slash forms, and the arguments of 予約, キャンセル and 返信."""

from __future__ import annotations

import pytest

from core.commands import AdminCommand, AdminVerb, parse_admin


@pytest.mark.parametrize("text, verb", [
    ("配信", AdminVerb.BROADCAST), ("\u3000配信 \u200b", AdminVerb.BROADCAST), ("/broadcast", AdminVerb.BROADCAST),
    ("/BROADCAST@otayori_bot", AdminVerb.BROADCAST), ("ﾌﾟﾚﾋﾞｭｰ", AdminVerb.PREVIEW), ("ぷれびゅー", AdminVerb.PREVIEW),
    ("テスト送信", AdminVerb.TEST), ("/test", AdminVerb.TEST), ("送信", AdminVerb.SEND), ("/send", AdminVerb.SEND),
    ("統計", AdminVerb.STATS), ("/stats", AdminVerb.STATS), ("キャンセル", AdminVerb.CANCEL),
    ("取り消し", AdminVerb.CANCEL), ("きゃんせる", AdminVerb.CANCEL),
])
def test_verbs_without_arguments(text, verb):
    assert parse_admin(text) == AdminCommand(verb)


@pytest.mark.parametrize("text", [
    "配信してください", "送信 お願いします", "配信停止", "予約", "/schedule", "返信 12", "返信 abc こんにちは",
    "キャンセル 明日", "統計 見せて", "/start", "", "\u3000", "送 信",
])
def test_everything_else_is_not_a_verb(text):
    assert parse_admin(text) is None


@pytest.mark.parametrize("text, verb", [
    ("送信！", AdminVerb.SEND), ("配信。", AdminVerb.BROADCAST), ("🙏統計", AdminVerb.STATS),
    ("プレビュー?", AdminVerb.PREVIEW), ("キャンセル！", AdminVerb.CANCEL), ("/stats!", AdminVerb.STATS),
])
def test_punctuation_and_symbols_at_the_ends_are_ignored(text, verb):
    assert parse_admin(text) == AdminCommand(verb)


def test_decorated_verbs_keep_their_arguments_as_typed():
    assert parse_admin("予約 2026-12-01 09:00") == AdminCommand(AdminVerb.SCHEDULE, "2026-12-01 09:00")
    assert parse_admin("⏰予約 2026-12-01 09:00") == AdminCommand(AdminVerb.SCHEDULE, "2026-12-01 09:00")
    assert parse_admin("返信 12 ありがとうございます！🙏") == AdminCommand(AdminVerb.REPLY, "12", "ありがとうございます！🙏")
    assert parse_admin("📨返信 12 「了解」") == AdminCommand(AdminVerb.REPLY, "12", "「了解」")
    assert parse_admin("キャンセル #12") == AdminCommand(AdminVerb.CANCEL, "12")
    assert parse_admin("予約。") is None  # still needs its time
    assert parse_admin("送信して!") is None  # the inside is never stripped
    assert parse_admin("！") is None


def test_arguments_keep_what_matters():
    assert parse_admin("予約　２０２６-１２-０１　０９：００") == AdminCommand(AdminVerb.SCHEDULE, "2026-12-01 09:00")
    assert parse_admin("/schedule +30m") == AdminCommand(AdminVerb.SCHEDULE, "+30m")
    assert parse_admin("キャンセル ＃１２") == AdminCommand(AdminVerb.CANCEL, "12")
    assert parse_admin("/cancel 7") == AdminCommand(AdminVerb.CANCEL, "7")
    # The answer of 返信 is the author's text as typed: line breaks and full-width characters kept.
    assert parse_admin("返信\u3000１２ ありがとうございます。\n\n次回もどうぞ　よろしく") == AdminCommand(
        AdminVerb.REPLY, "12", "ありがとうございます。\n\n次回もどうぞ　よろしく")
    assert parse_admin("/reply 3\nhello") == AdminCommand(AdminVerb.REPLY, "3", "hello")
