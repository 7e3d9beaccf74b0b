"""Settings (DESIGN.md "Outside contract" -> Settings): defaults, environment parsing, one-line errors, `.env.example`.

Every test starts from an environment without any ``OTAYORI_*`` variable and a working directory without ``.env``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from core.settings import ConfigError, Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = REPO / ".env.example"
GOOD_KEY = "k3y-for-tests-" + "Zq9" * 12  # 50 characters, no placeholder marker


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No inherited OTAYORI_* variable, and a working directory without a .env file."""
    for name in list(os.environ):
        if name.upper().startswith("OTAYORI_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def config_error(**env: str) -> ConfigError:
    """Set ``env`` as real environment variables (``OTAYORI_`` + upper-case key), load, and return the error."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(f"OTAYORI_{key.upper()}", value)
        with pytest.raises(ConfigError) as caught:
            load_settings()
    return caught.value


def assert_one_line_naming(error: ConfigError, setting: str) -> None:
    text = str(error)
    assert "\n" not in text and "\r" not in text, text
    assert text.startswith(f"{setting}:"), text
    assert error.setting == setting
    assert len(text) > len(setting) + 5  # it says what is wrong, not only which setting


def serving(**values: object) -> Settings:
    """Settings that pass ``check_for_serving`` unless ``values`` break them (no .env, no environment)."""
    base: dict[str, object] = {"secret_key": GOOD_KEY, "sender_name": "山田IT事務所", "telegram_bot_token": "1:T"}
    base.update(values)
    return load_settings(_env_file=None, **base)


# ---- defaults ------------------------------------------------------------------------------------------------------

# DESIGN.md "Outside contract" -> Settings table, copied here because tests must run on a fresh clone.
DESIGN_DEFAULTS: dict[str, object] = {
    "database_url": "sqlite+aiosqlite:///var/otayori.sqlite3",
    "public_url": "http://127.0.0.1:8000",
    "http_host": "127.0.0.1",
    "http_port": 8000,
    "secret_key": None,
    "telegram_bot_token": None,
    "telegram_api_url": "https://api.telegram.org/bot",
    "telegram_mode": "polling",
    "telegram_webhook_secret": None,
    "telegram_file_url": "https://api.telegram.org/file/bot",
    "telegram_admin_ids": [],
    "line_channel_secret": None,
    "line_channel_access_token": None,
    "line_api_url": "https://api.line.me",
    "line_data_api_url": "https://api-data.line.me",
    "line_basic_id": None,
    "line_admin_user_ids": [],
    "smtp_host": None,
    "smtp_port": None,
    "smtp_username": None,
    "smtp_password": None,
    "mail_from": None,
    "reply_to": None,
    "unsubscribe_mailto": None,
    "forward_replies": True,
    "sender_name": None,
    "sender_postal_address": None,
    "sender_contact": None,
    "topics": ["it:IT関連情報", "events:イベント情報"],
    "confirm_ttl_seconds": 172800,
    "telegram_rate_per_second": 25,
    "line_multicast_rate_per_second": 150,
    "smtp_rate_per_second": 10,
    "smtp_connections": 2,
    "timezone": "Asia/Tokyo",
    "media_dir": None,  # not in DESIGN.md's table: issue pictures (README); default media/ beside the SQLite file
}


def test_defaults_match_the_design_table():
    settings = load_settings(_env_file=None)
    for name, expected in DESIGN_DEFAULTS.items():
        assert getattr(settings, name) == expected, name
    # "sensible Japanese defaults" for the terms' purpose of use and newsletter description
    for text in (settings.purpose_of_use, settings.newsletter_description):
        assert re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", text), text
    # the security mode only matters once SMTP_HOST turns email on
    assert settings.smtp_security in ("none", "starttls", "tls")
    assert not settings.any_channel_enabled
    assert not (settings.telegram_enabled or settings.line_enabled or settings.email_enabled)
    assert settings.topic_labels == {"it": "IT関連情報", "events": "イベント情報"}


def test_every_setting_is_in_the_design_table_or_known():
    # A new field must be added to DESIGN_DEFAULTS above (and the README), not slip in silently.
    assert set(Settings.model_fields) - set(DESIGN_DEFAULTS) == {
        "smtp_security", "purpose_of_use", "newsletter_description",
    }


# ---- environment parsing -------------------------------------------------------------------------------------------

def test_comma_lists_from_real_environment_variables_are_not_json(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OTAYORI_TELEGRAM_ADMIN_IDS", "1, 2,3")
    monkeypatch.setenv("OTAYORI_LINE_ADMIN_USER_IDS", " U1234 ,U5678,")
    monkeypatch.setenv("OTAYORI_TOPICS", "it:IT関連情報, events:イベント情報 ,ai:生成AI")
    settings = load_settings()
    assert settings.telegram_admin_ids == [1, 2, 3]
    assert settings.line_admin_user_ids == ["U1234", "U5678"]
    assert settings.topic_labels == {"it": "IT関連情報", "events": "イベント情報", "ai": "生成AI"}


def test_a_single_list_item_stays_a_list(monkeypatch: pytest.MonkeyPatch):
    # JSON decoding would turn "42" into the number 42, and "[1]" would be a JSON list: neither is our syntax.
    monkeypatch.setenv("OTAYORI_TELEGRAM_ADMIN_IDS", "42")
    monkeypatch.setenv("OTAYORI_LINE_ADMIN_USER_IDS", "Uabc")
    settings = load_settings()
    assert settings.telegram_admin_ids == [42]
    assert settings.line_admin_user_ids == ["Uabc"]


def test_empty_values_mean_unset(monkeypatch: pytest.MonkeyPatch):
    for name in ("TELEGRAM_BOT_TOKEN", "LINE_CHANNEL_SECRET", "LINE_CHANNEL_ACCESS_TOKEN", "HTTP_PORT",
                 "TELEGRAM_ADMIN_IDS", "TOPICS", "SMTP_PORT", "SMTP_HOST", "PURPOSE_OF_USE", "TIMEZONE",
                 "FORWARD_REPLIES", "TELEGRAM_RATE_PER_SECOND"):
        monkeypatch.setenv(f"OTAYORI_{name}", "")
    settings = load_settings()
    defaults = load_settings(_env_file=None)
    assert settings.model_dump() == defaults.model_dump()
    assert settings.telegram_bot_token is None and settings.line_channel_secret is None
    assert settings.http_port == 8000 and settings.telegram_admin_ids == []


def test_dotenv_in_the_working_directory_is_read_and_the_environment_wins(monkeypatch: pytest.MonkeyPatch,
                                                                         tmp_path: Path):
    (tmp_path / ".env").write_text(
        "OTAYORI_SENDER_NAME=山田IT事務所\nOTAYORI_HTTP_PORT=9000\nOTAYORI_TELEGRAM_ADMIN_IDS=7, 8\n", encoding="utf-8"
    )
    monkeypatch.setenv("OTAYORI_HTTP_PORT", "9100")
    settings = load_settings()
    assert settings.sender_name == "山田IT事務所"
    assert settings.http_port == 9100
    assert settings.telegram_admin_ids == [7, 8]


# ---- one-line errors at load ---------------------------------------------------------------------------------------

def test_line_secret_without_token_names_the_token():
    error = config_error(line_channel_secret="0123456789abcdef")
    assert_one_line_naming(error, "OTAYORI_LINE_CHANNEL_ACCESS_TOKEN")


def test_line_token_without_secret_names_the_secret():
    error = config_error(line_channel_access_token="tok")
    assert_one_line_naming(error, "OTAYORI_LINE_CHANNEL_SECRET")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TIMEZONE", "Asia/Tokio"),
        ("TIMEZONE", "JST+9"),
        ("PUBLIC_URL", "127.0.0.1:8000"),
        ("PUBLIC_URL", "ftp://example.jp"),
        ("TELEGRAM_API_URL", "api.telegram.org/bot"),
        ("LINE_API_URL", "https://"),
        ("HTTP_PORT", "abc"),
        ("HTTP_PORT", "70000"),
        ("HTTP_PORT", "-1"),
        ("SMTP_PORT", "0"),
        ("TELEGRAM_ADMIN_IDS", "1,二"),
        ("TELEGRAM_MODE", "webhooks"),
        ("SMTP_SECURITY", "ssl"),
        ("TOPICS", "it,events"),
        ("TOPICS", "IT:IT関連情報"),  # slugs are lower-case: they travel in button data and issue.topic
        ("TOPICS", "it news:IT関連情報"),
        ("TOPICS", "all:すべて"),  # reserved: --topic all means every topic
        ("TOPICS", "it:IT関連情報,it:ITニュース"),
        ("TOPICS", "it:" + "あ" * 19),  # a LINE quick-reply label holds 20 characters, 2 go to the check mark
        ("TOPICS", " , "),
        ("TELEGRAM_ADMIN_IDS", "-1001234567890"),  # a group chat id, not a user id
        ("TELEGRAM_ADMIN_IDS", "0"),
        ("CONFIRM_TTL_SECONDS", "0"),
        ("TELEGRAM_RATE_PER_SECOND", "fast"),
        ("FORWARD_REPLIES", "はい"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_setting(name: str, value: str):
    assert_one_line_naming(config_error(**{name: value}), f"OTAYORI_{name}")


def test_a_value_with_a_newline_still_gives_one_line():
    error = config_error(timezone="Asia/\nTokyo")
    assert_one_line_naming(error, "OTAYORI_TIMEZONE")


def test_webhook_mode_needs_the_webhook_secret():
    error = config_error(telegram_bot_token="1:T", telegram_mode="webhook")
    assert_one_line_naming(error, "OTAYORI_TELEGRAM_WEBHOOK_SECRET")


# ---- what serving needs --------------------------------------------------------------------------------------------

def test_complete_settings_pass_the_serving_check():
    serving().check_for_serving()
    serving(smtp_host="smtp.example.jp", mail_from="news@example.jp", sender_postal_address="東京都千代田区1-1",
            sender_contact="03-0000-0000").check_for_serving()


def env_example_value(name: str) -> str:
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.startswith(f"{name}="):
            return line.partition("=")[2]
    raise AssertionError(f"{name} missing from .env.example")


@pytest.mark.parametrize("key", [None, "change-me", "CHANGE-ME-" + "x" * 40, "short-but-real-Zq9", "__placeholder__" * 3,
                                 "x" * 40, "ab" * 20])
def test_missing_placeholder_or_short_secret_key_is_refused(key: str | None):
    with pytest.raises(ConfigError) as caught:
        serving(secret_key=key).check_for_serving()
    assert_one_line_naming(caught.value, "OTAYORI_SECRET_KEY")


def test_the_env_example_secret_key_is_refused():
    # Copying .env.example to .env without generating a key must not start a server.
    assert env_example_value("OTAYORI_SECRET_KEY")
    settings = load_settings(_env_file=ENV_EXAMPLE, telegram_bot_token="1:T", sender_name="山田IT事務所")
    assert settings.secret_key == env_example_value("OTAYORI_SECRET_KEY")
    with pytest.raises(ConfigError) as caught:
        settings.check_for_serving()
    assert_one_line_naming(caught.value, "OTAYORI_SECRET_KEY")


@pytest.mark.parametrize("name", [None, "", "  ", "\u3000"])
def test_no_sender_name_is_refused(name: str | None):
    with pytest.raises(ConfigError) as caught:
        serving(sender_name=name).check_for_serving()
    assert_one_line_naming(caught.value, "OTAYORI_SENDER_NAME")


EMAIL_ON = {"smtp_host": "smtp.example.jp", "mail_from": "news@example.jp",
            "sender_postal_address": "東京都千代田区千代田1-1", "sender_contact": "info@example.jp"}


@pytest.mark.parametrize("missing", ["mail_from", "sender_postal_address", "sender_contact"])
def test_email_without_the_legal_display_items_is_refused(missing: str):
    values = dict(EMAIL_ON)
    values[missing] = "　"  # a full-width space only is still missing
    with pytest.raises(ConfigError) as caught:
        serving(**values).check_for_serving()
    assert_one_line_naming(caught.value, f"OTAYORI_{missing.upper()}")
    del values[missing]
    with pytest.raises(ConfigError) as caught:
        serving(**values).check_for_serving()
    assert_one_line_naming(caught.value, f"OTAYORI_{missing.upper()}")


def test_email_items_are_not_required_while_email_is_off():
    serving(mail_from=None, sender_postal_address=None, sender_contact=None).check_for_serving()


WEBHOOK = {"telegram_mode": "webhook", "telegram_webhook_secret": "s3cret-token_1"}


def test_webhook_mode_with_an_http_public_url_is_refused():
    with pytest.raises(ConfigError) as caught:
        serving(public_url="http://otayori.example.jp", **WEBHOOK).check_for_serving()
    assert_one_line_naming(caught.value, "OTAYORI_PUBLIC_URL")


@pytest.mark.parametrize("api", ["http://127.0.0.1:8081/bot", "http://localhost:8081/bot", "http://[::1]:8081/bot"])
def test_webhook_mode_over_http_is_allowed_against_a_loopback_emulator(api: str):
    serving(public_url="http://127.0.0.1:8000", telegram_api_url=api, **WEBHOOK).check_for_serving()


def test_webhook_mode_with_https_public_url_is_allowed():
    serving(public_url="https://otayori.example.jp", **WEBHOOK).check_for_serving()


def test_polling_mode_does_not_need_https():
    serving(public_url="http://otayori.example.jp").check_for_serving()


# ---- .env.example ----------------------------------------------------------------------------------------------------

def test_env_example_lists_every_setting_each_with_a_comment_above():
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    listed: dict[str, int] = {}
    for number, line in enumerate(lines):
        match = re.match(r"^(OTAYORI_[A-Z0-9_]+)=", line)
        if match:
            assert match.group(1) not in listed, f"{match.group(1)} listed twice"
            listed[match.group(1)] = number
    expected = {f"OTAYORI_{name.upper()}" for name in Settings.model_fields}
    assert set(listed) == expected, (
        f"missing: {sorted(expected - set(listed))}, unknown: {sorted(set(listed) - expected)}"
    )
    for name, number in listed.items():
        above = lines[number - 1] if number else ""
        assert above.startswith("#") and len(above.lstrip("# ").strip()) > 3, f"{name} has no comment line above it"


def test_env_example_loads_as_a_dotenv_file():
    # Its empty values mean unset, so it loads (only check_for_serving refuses the placeholder key).
    settings = load_settings(_env_file=ENV_EXAMPLE)
    assert not settings.any_channel_enabled
    assert settings.purpose_of_use == load_settings(_env_file=None).purpose_of_use


@pytest.mark.parametrize("public_url", ["http://otayori.example.jp", "http://192.168.1.20:8000"])
def test_line_is_always_a_webhook_and_refuses_an_http_public_url(public_url: str):
    line = {"telegram_bot_token": None, "line_channel_secret": "s", "line_channel_access_token": "t"}
    with pytest.raises(ConfigError) as caught:
        serving(public_url=public_url, **line).check_for_serving()
    assert_one_line_naming(caught.value, "OTAYORI_PUBLIC_URL")
    assert "LINE" in str(caught.value) and "https://" in str(caught.value)
    serving(public_url="https://otayori.example.jp", **line).check_for_serving()
    # Commands that only send (broadcast) receive no webhooks: the URL check is run's alone.
    serving(public_url=public_url, **line).check_for_serving(receiving=False)


def test_the_loopback_exemption_needs_a_loopback_public_url_too():
    # An emulator API does not excuse an http:// address that real people (or platforms) would be given.
    with pytest.raises(ConfigError) as caught:
        serving(public_url="http://otayori.example.jp", telegram_api_url="http://127.0.0.1:8081/bot",
                **WEBHOOK).check_for_serving()
    assert_one_line_naming(caught.value, "OTAYORI_PUBLIC_URL")
    serving(public_url="http://127.0.0.1:8000", telegram_bot_token=None, line_channel_secret="s",
            line_channel_access_token="t", line_api_url="http://127.0.0.1:8082").check_for_serving()


@pytest.mark.parametrize("secret", ["秘密のトークン", "has space", "a" * 257, "dots.are.not.allowed"])
def test_a_webhook_secret_telegram_would_refuse_is_refused_at_start(secret: str):
    error = config_error(telegram_bot_token="1:T", telegram_mode="webhook", telegram_webhook_secret=secret)
    assert_one_line_naming(error, "OTAYORI_TELEGRAM_WEBHOOK_SECRET")


def test_a_generated_key_holding_xxxx_is_accepted():
    """A key from secrets.token_urlsafe may hold "XxxX" (seen in a test run): generated keys are never refused."""
    serving(secret_key="_UPzFyyjkFA1nSl4db0d6hKLNqLIwRFEfXxxXVsbVFloWZcfiJCHQwC_ggeoWvbQ").check_for_serving()
