"""Campaigns from the command line (``otayori campaign add|list|show``), each bad code its own test: the rule is
``[A-Za-z0-9_-]{1,64}`` (the Telegram deep-link alphabet), refused in one line naming it; labels may be Japanese and
are the author's text, never markup."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.integration.test_cli import cli_env, db_url, otayori


def env_for(tmp_path: Path) -> dict[str, str]:
    return cli_env(database_url=db_url(tmp_path / "otayori.sqlite3"), public_url="https://news.example.jp")


def stored_codes(tmp_path: Path) -> list[str]:
    database = tmp_path / "otayori.sqlite3"
    if not database.exists():
        return []
    with sqlite3.connect(database) as conn:
        return [row[0] for row in conn.execute("SELECT code FROM campaign ORDER BY id")]


@pytest.mark.parametrize("code", [
    pytest.param("seminar 2026", id="space"),
    pytest.param("seminar\u30002026", id="ideographic-space"),
    pytest.param("東京セミナー", id="japanese"),
    pytest.param("ｓｅｍｉｎａｒ", id="full-width-latin"),
    pytest.param("a" * 65, id="65-characters"),
    pytest.param("seminar.2026", id="dot"),
    pytest.param("c2VtaW5hcg==", id="base64-padding"),
])
async def test_campaign_add_refuses_codes_outside_the_rule(tmp_path: Path, code: str):
    result = await otayori("campaign", "add", code, "--label", "12月 東京セミナー", cwd=tmp_path, env=env_for(tmp_path))
    assert result.code == 2, result
    assert len(result.err_lines) == 1, result.err
    assert "1-64 characters of A-Z a-z 0-9 _ -" in result.err and "Telegram deep-link" in result.err
    assert stored_codes(tmp_path) == []


async def test_sixty_four_characters_is_the_longest_code(tmp_path: Path):
    code = "A" * 32 + "z_-9" * 8
    assert len(code) == 64
    result = await otayori("campaign", "add", code, cwd=tmp_path, env=env_for(tmp_path))
    assert result.code == 0, result
    assert stored_codes(tmp_path) == [code]


async def test_list_and_show_print_labels_as_text_with_counts(tmp_path: Path):
    env = env_for(tmp_path)
    label = "12月 東京セミナー [bold]<b>特別</b>[/bold]"
    bad_date = await otayori("campaign", "add", "seminar-2026-12", "--date", "12月5日", cwd=tmp_path, env=env)
    assert bad_date.code == 2 and len(bad_date.err_lines) == 1 and "--date" in bad_date.err
    added = await otayori("campaign", "add", "seminar-2026-12", "--label", label, "--date", "２０２６－１２－０５",
                          cwd=tmp_path, env=env)  # full-width digits and hyphens, as a Japanese keyboard types them
    assert added.code == 0, added
    listed = await otayori("campaign", "list", cwd=tmp_path, env=env)
    assert listed.code == 0 and "[bold]<b>特別</b>[/bold]" in listed.out  # not eaten as rich markup
    shown = await otayori("campaign", "show", "SEMINAR-2026-12", cwd=tmp_path, env=env)
    assert shown.code == 0, shown
    assert f"label: {label}" in shown.out and "date: 2026-12-05" in shown.out
    assert "landing page: https://news.example.jp/join/seminar-2026-12" in shown.out
    for channel in ("line", "telegram", "email"):
        assert channel in shown.out
    missing = await otayori("campaign", "show", "nope", cwd=tmp_path, env=env)
    assert missing.code == 2 and len(missing.err_lines) == 1 and "no campaign 'nope'" in missing.err


async def test_label_longer_than_the_column_is_refused(tmp_path: Path):
    result = await otayori("campaign", "add", "long", "--label", "あ" * 201, cwd=tmp_path, env=env_for(tmp_path))
    assert result.code == 2 and len(result.err_lines) == 1 and "at most 200" in result.err
