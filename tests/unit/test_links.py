"""Campaign links (core.links) against the platforms' documented forms (reference/line.md "Links for QR codes",
reference/telegram.md "Deep links"), and the poster's line breaking (bots.poster.wrap)."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from bots.fonts import FontMissing, japanese_font
from bots.poster import wrap
from core.links import (
    campaign_links,
    join_url,
    line_add_friend_url,
    line_message_url,
    line_subscribe_text,
    telegram_start_url,
)


def test_line_message_link_is_the_reference_example():
    # reference/line.md: the text 登録 seminar-2026-12 -> ?%E7%99%BB%E9%8C%B2%20seminar-2026-12
    url = line_message_url("@abc1234", line_subscribe_text("seminar-2026-12"))
    assert url == "https://line.me/R/oaMessage/%40abc1234/?%E7%99%BB%E9%8C%B2%20seminar-2026-12"
    assert unquote(url.split("/?", 1)[1]) == "登録 seminar-2026-12"


@pytest.mark.parametrize("basic_id", ["@abc1234", "abc1234", " @abc1234 "])
def test_basic_id_with_or_without_at_sign(basic_id):
    assert line_add_friend_url(basic_id) == "https://line.me/R/ti/p/%40abc1234"


def test_join_and_telegram_links():
    assert join_url("https://news.example.jp/", "seminar-2026-12") == "https://news.example.jp/join/seminar-2026-12"
    assert join_url("https://news.example.jp", None) == "https://news.example.jp/join"
    assert telegram_start_url("@otayori_bot", "Seminar_2026-12") == "https://t.me/otayori_bot?start=Seminar_2026-12"
    assert telegram_start_url("otayori_bot") == "https://t.me/otayori_bot"


@pytest.mark.parametrize("code", ["seminar 2026", "東京セミナー", "a" * 65, "c2VtaW5hcg==", "seminar.2026", "", "x/../y"])
def test_links_refuse_what_is_not_a_campaign_code(code):
    if code == "":  # no code = the general links, not an error
        assert campaign_links("https://x.jp", None, telegram_username="b", line_basic_id="@l").join == "https://x.jp/join"
        return
    with pytest.raises(ValueError):
        campaign_links("https://x.jp", code, telegram_username="b", line_basic_id="@l")


def test_unknown_channels_have_no_links():
    links = campaign_links("https://x.jp", "abc", telegram_username=None, line_basic_id=None)
    assert (links.telegram, links.line_add_friend, links.line_message) == (None, None, None)
    assert links.join == "https://x.jp/join/abc"


def test_poster_lines_keep_codes_whole_and_punctuation_off_the_line_start():
    try:
        font = japanese_font(40)
    except FontMissing:
        pytest.skip("fonts-noto-cjk is not installed (run `make fonts`)")
    text = "LINE の友だちの方は「登録 seminar-2026-12」を送信してください。ありがとうございました。"
    width = int(font.getlength("LINE の友だちの方は「登録 semi"))
    lines = wrap(text, font, width)
    assert "".join(lines) == text  # nothing lost or added
    assert any(line.startswith("seminar-2026-12") for line in lines), lines  # the code moved down whole
    assert not any(line[0] in "、。」" for line in lines if line), lines
    assert all(font.getlength(line.rstrip("、。」")) <= width for line in lines), lines
