"""The one settings object everything is assembled from (DESIGN.md "Outside contract" -> Settings).

Settings come from the environment and ``.env`` with the prefix ``OTAYORI_``; an empty value means unset; lists are
comma-separated; durations end in ``_SECONDS`` and rates in ``_PER_SECOND``. Loading never connects to anything.

Two levels of checking:

* loading (``Settings()``) checks types and values that are wrong in any command (a malformed URL, a LINE secret
  without its token, an unknown SMTP security mode);
* :meth:`Settings.check_for_serving` checks what sending and serving need (a real secret key, the sender's name, the
  email display items of 特定電子メール法 Art. 4 when email is on).

Both raise :class:`ConfigError`, whose ``str()`` is one line naming the setting.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "OTAYORI_"

# Values that show a secret was copied from .env.example and never replaced.
_PLACEHOLDER_MARKERS = ("change-me", "changeme", "replace-me", "placeholder", "your-secret", "example")
#: A key with fewer distinct characters than this is typed, not generated ("xxxx…", "aaaa…"). Not a marker such as
#: "xxxx": a generated key (``secrets.token_urlsafe``) holds x and X often enough to contain "XxxX" about once in
#: 20,000 keys, and was then refused (seen in a test run).
_MIN_DISTINCT_KEY_CHARACTERS = 12
MIN_SECRET_KEY_LENGTH = 32

#: Topic slugs (``OTAYORI_TOPICS``): stored in ``issue.topic`` (32 characters) and sent as button data.
TOPIC_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
#: The word that means "every topic" wherever a topic is chosen (``--topic all``); no topic may use it.
ALL_TOPICS = "all"
#: LINE quick-reply labels hold 20 characters; topic buttons prefix a check mark and a space.
MAX_TOPIC_LABEL = 18
#: Telegram's ``setWebhook`` ``secret_token``: 1-256 characters of ``A-Z a-z 0-9 _ -`` (Bot API "setWebhook").
TELEGRAM_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")

DEFAULT_PURPOSE_OF_USE = (
    "ご登録いただいた連絡先(LINEのユーザーID、TelegramのチャットID、メールアドレス)は、"
    "ニュースレター(IT活用のヒント、イベント・勉強会のご案内)の配信と、配信停止・お問い合わせへの対応にのみ利用します。"
)
DEFAULT_NEWSLETTER_DESCRIPTION = "IT活用のヒントとイベント情報を、月に2〜4回お届けします。"


class ConfigError(Exception):
    """A setting is missing, malformed or inconsistent. ``str(err)`` is one line that names the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"{setting}: {problem}")


def _split_commas(value: object) -> object:
    """Comma-separated env text -> list of trimmed, non-empty items (lists pass through)."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Every ``OTAYORI_*`` setting (see ``.env.example`` for one comment per setting, and the README's table).

    Raises ``pydantic.ValidationError`` from the constructor; use :func:`load_settings` to get a
    :class:`ConfigError` with one line instead.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
    )

    database_url: str = "sqlite+aiosqlite:///var/otayori.sqlite3"
    public_url: str = "http://127.0.0.1:8000"
    media_dir: Path | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(8000, ge=0, le=65535)
    secret_key: str | None = None

    telegram_bot_token: str | None = None
    telegram_api_url: str = "https://api.telegram.org/bot"
    telegram_file_url: str = "https://api.telegram.org/file/bot"
    telegram_mode: Literal["polling", "webhook"] = "polling"
    telegram_webhook_secret: str | None = None
    telegram_admin_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)

    line_channel_secret: str | None = None
    line_channel_access_token: str | None = None
    line_api_url: str = "https://api.line.me"
    line_data_api_url: str = "https://api-data.line.me"
    line_basic_id: str | None = None
    line_admin_user_ids: Annotated[list[str], NoDecode] = Field(default_factory=list)

    smtp_host: str | None = None
    smtp_port: int | None = Field(None, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_security: Literal["none", "starttls", "tls"] = "starttls"
    mail_from: str | None = None
    reply_to: str | None = None
    unsubscribe_mailto: str | None = None

    forward_replies: bool = True
    sender_name: str | None = None
    sender_postal_address: str | None = None
    sender_contact: str | None = None
    purpose_of_use: str = DEFAULT_PURPOSE_OF_USE
    newsletter_description: str = DEFAULT_NEWSLETTER_DESCRIPTION
    topics: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["it:IT関連情報", "events:イベント情報"])
    confirm_ttl_seconds: int = Field(172800, gt=0)

    telegram_rate_per_second: float = Field(25.0, gt=0)
    line_multicast_rate_per_second: float = Field(150.0, gt=0)
    smtp_rate_per_second: float = Field(10.0, gt=0)
    smtp_connections: int = Field(2, ge=1)
    timezone: str = "Asia/Tokyo"

    @field_validator("telegram_admin_ids", "line_admin_user_ids", "topics", mode="before")
    @classmethod
    def _comma_lists(cls, value: object) -> object:
        return _split_commas(value)

    @field_validator("public_url", "telegram_api_url", "telegram_file_url", "line_api_url", "line_data_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if not value.endswith("/bot") else value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Asia/Tokyo)") from exc
        return value

    @field_validator("topics")
    @classmethod
    def _topic_pairs(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one topic is needed (slug:label, comma-separated)")
        seen: set[str] = set()
        for item in value:
            slug, sep, label = (part.strip() for part in item.partition(":"))
            if not sep or not slug or not label:
                raise ValueError(f"each topic is slug:label, got {item!r}")
            if not TOPIC_SLUG.fullmatch(slug):
                # The slug is stored (issue.topic, 32 characters) and travels in button data (<= 64 bytes).
                raise ValueError(f"topic slug {slug!r}: 1-32 characters of a-z 0-9 _ -, starting with a letter or digit")
            if slug == ALL_TOPICS:
                raise ValueError(f"topic slug {ALL_TOPICS!r} is reserved (it means every topic)")
            if slug in seen:
                raise ValueError(f"topic slug {slug!r} appears twice")
            if len(label) > MAX_TOPIC_LABEL:
                # A LINE quick-reply label holds 20 characters; the topic buttons add a 2-character check mark.
                raise ValueError(f"topic label {label!r} is longer than {MAX_TOPIC_LABEL} characters")
            seen.add(slug)
        return value

    @field_validator("telegram_admin_ids")
    @classmethod
    def _telegram_user_ids(cls, value: list[int]) -> list[int]:
        for user_id in value:
            if user_id <= 0:
                # Users have positive ids; groups and channels have negative chat ids (Bot API "Chat").
                raise ValueError(f"{user_id} is not a Telegram user id (user ids are positive numbers)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if bool(self.line_channel_secret) != bool(self.line_channel_access_token):
            missing = "LINE_CHANNEL_ACCESS_TOKEN" if self.line_channel_secret else "LINE_CHANNEL_SECRET"
            raise ValueError(f"@{ENV_PREFIX}{missing}: LINE needs both the channel secret and the access token")
        if self.telegram_mode == "webhook" and self.telegram_bot_token and not self.telegram_webhook_secret:
            raise ValueError(f"@{ENV_PREFIX}TELEGRAM_WEBHOOK_SECRET: required when OTAYORI_TELEGRAM_MODE=webhook")
        if self.telegram_webhook_secret and not TELEGRAM_SECRET_TOKEN.fullmatch(self.telegram_webhook_secret):
            # setWebhook refuses anything else ("secret token contains unallowed characters"): say so at start-up.
            raise ValueError(f"@{ENV_PREFIX}TELEGRAM_WEBHOOK_SECRET: 1-256 characters of A-Z a-z 0-9 _ - "
                             "(generate one: python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        return self

    # ---- derived views -------------------------------------------------------------------------------------------

    @property
    def telegram_enabled(self) -> bool:
        """Telegram is on when its bot token is set."""
        return bool(self.telegram_bot_token)

    @property
    def line_enabled(self) -> bool:
        """LINE is on when the channel secret and access token are set (both, enforced at load)."""
        return bool(self.line_channel_secret and self.line_channel_access_token)

    @property
    def email_enabled(self) -> bool:
        """Email is on when ``OTAYORI_SMTP_HOST`` is set."""
        return bool(self.smtp_host)

    @property
    def enabled_channels(self) -> list[str]:
        """The channels that are on (``line``, ``telegram``, ``email``, in that order)."""
        on = (("line", self.line_enabled), ("telegram", self.telegram_enabled), ("email", self.email_enabled))
        return [channel for channel, enabled in on if enabled]

    @property
    def any_channel_enabled(self) -> bool:
        return self.telegram_enabled or self.line_enabled or self.email_enabled

    @property
    def topic_labels(self) -> dict[str, str]:
        """``{slug: label}`` in the configured order."""
        pairs = (item.partition(":") for item in self.topics)
        return {slug.strip(): label.strip() for slug, _, label in pairs}

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def privacy_url(self) -> str:
        return f"{self.public_url}/privacy"

    def sqlite_path(self) -> Path | None:
        """The SQLite file the database URL points at, or ``None`` for another database or ``:memory:``."""
        prefix = "sqlite+aiosqlite:///"
        if not self.database_url.startswith(prefix):
            return None
        path = self.database_url[len(prefix):].split("?", 1)[0]
        return None if path in ("", ":memory:") else Path(path)

    def media_path(self) -> Path:
        """Where issue pictures are stored: ``OTAYORI_MEDIA_DIR``, else ``media/`` next to the SQLite file, else
        ``var/media`` (PostgreSQL). Not created here (nothing touches the disk while settings load)."""
        if self.media_dir is not None:
            return self.media_dir
        database = self.sqlite_path()
        return (database.parent if database is not None else Path("var")) / "media"

    # ---- checks that depend on the command --------------------------------------------------------------------

    def check_for_serving(self, *, receiving: bool = True) -> None:
        """Check what ``run``, ``broadcast`` and ``demo`` need before they start.

        ``receiving=False`` (commands that only send, such as ``broadcast``) leaves out the webhook check: a
        webhook URL matters only to the process that receives webhooks (``run``).

        Raises :class:`ConfigError` naming the first missing or inconsistent setting: no or placeholder secret key;
        no sender name (shown in the terms: APPI Art. 21(2)); when email is on, the sender's postal address,
        contact and From address (特定電子メール法 Art. 4 display items, reference/email-and-law.md); LINE (always a
        webhook) or Telegram webhook mode without an ``https://`` public URL, unless both the platform API and the
        public URL are loopback addresses (the emulators of the rehearsal, the demo and the tests).
        """
        key = self.secret_key or ""
        if not key:
            raise ConfigError(f"{ENV_PREFIX}SECRET_KEY", "required (generate one: python -c 'import secrets; print(secrets.token_urlsafe(48))')")
        if (any(marker in key.lower() for marker in _PLACEHOLDER_MARKERS) or len(key) < MIN_SECRET_KEY_LENGTH
                or len(set(key)) < _MIN_DISTINCT_KEY_CHARACTERS):
            raise ConfigError(
                f"{ENV_PREFIX}SECRET_KEY",
                f"looks like a placeholder or is shorter than {MIN_SECRET_KEY_LENGTH} characters; generate a real one",
            )
        if not (self.sender_name or "").strip():
            raise ConfigError(f"{ENV_PREFIX}SENDER_NAME", "required: the terms and every message say who sends")
        if self.email_enabled:
            for name in ("mail_from", "sender_postal_address", "sender_contact"):
                if not (getattr(self, name) or "").strip():
                    raise ConfigError(
                        f"{ENV_PREFIX}{name.upper()}",
                        "required when email is on (特定電子メール法 Art. 4 display items / the From address)",
                    )
        if self.email_enabled and not self.public_url.startswith("https://") and not _is_loopback_url(self.public_url):
            # RFC 8058: the one-click unsubscribe URI must be https; mail clients ignore it otherwise.
            raise ConfigError(f"{ENV_PREFIX}PUBLIC_URL", "email needs an https:// public URL (RFC 8058 one-click unsubscribe)")
        if receiving:
            self.check_webhooks()

    def check_webhooks(self) -> None:
        """Raise :class:`ConfigError` (``OTAYORI_PUBLIC_URL``) when LINE (always a webhook) or Telegram in webhook
        mode is on and the public URL is not ``https://``, unless both the platform API and the public URL are
        loopback addresses (the emulators of the rehearsal, the demo and the tests)."""
        # Telegram and LINE deliver only to https:// URLs (reference/telegram.md, reference/line.md).
        # LINE is always a webhook. The one exemption is the local rehearsal: the platform is a loopback emulator
        # *and* our public URL is loopback too, so nothing real ever calls an http:// URL of ours.
        webhooks = (("LINE", self.line_enabled, self.line_api_url),
                    ("Telegram", self.telegram_enabled and self.telegram_mode == "webhook", self.telegram_api_url))
        for platform, on, api_url in webhooks:
            rehearsal = _is_loopback_url(api_url) and _is_loopback_url(self.public_url)
            if on and not self.public_url.startswith("https://") and not rehearsal:
                raise ConfigError(f"{ENV_PREFIX}PUBLIC_URL", f"{platform} webhooks need an https:// public URL "
                                  "(a TLS reverse proxy in front of otayori run: README \"Deploying\")")


def load_settings(**overrides: object) -> Settings:
    """Load :class:`Settings` from the environment and ``.env`` (``_env_file=None`` in overrides skips ``.env``).

    Raises :class:`ConfigError` with one line naming the first bad setting.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise config_error_from(exc) from None


def config_error_from(exc: ValidationError) -> ConfigError:
    """Turn pydantic's multi-line report into one :class:`ConfigError` naming the first bad setting."""
    first = exc.errors()[0]
    message = str(first.get("msg", "invalid"))
    message = message.removeprefix("Value error, ")
    if message.startswith("@"):
        # Model-level checks name their own setting as "@NAME: problem".
        name, _, problem = message[1:].partition(": ")
        return ConfigError(name, problem)
    loc = first.get("loc") or ("?",)
    name = f"{ENV_PREFIX}{str(loc[0]).upper()}"
    value = first.get("input")
    shown = f" (got {value!r})" if isinstance(value, (str, int, float)) and len(str(value)) < 80 else ""
    return ConfigError(name, f"{message}{shown}")
