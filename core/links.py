"""The links a campaign hands out (QR codes, the landing page's buttons), built from plain facts; no network.

* landing page: ``{OTAYORI_PUBLIC_URL}/join/<code>`` (``/join`` without a campaign);
* Telegram deep link: ``https://t.me/<bot username>?start=<code>`` (reference/telegram.md "Deep links": the payload
  is 1..64 characters of ``A-Za-z0-9_-``, so campaign codes are valid payloads as they are);
* LINE add-friend link: ``https://line.me/R/ti/p/%40<basic id without @>``;
* LINE "open the chat with a text typed in": ``https://line.me/R/oaMessage/%40<id>/?<percent-encoded UTF-8 text>``,
  the text being ``登録 <code>`` (the chat grammar's subscribe keyword and its campaign argument; reference/line.md
  "Links for QR codes"). The person still taps send; it works in LINE's phone apps, not LINE for PC.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from core.commands import is_valid_campaign_code

#: The keyword typed in by the LINE chat link (DESIGN.md "Chat grammar": ``登録 <campaign>``).
SUBSCRIBE_KEYWORD = "登録"


def _code_or_raise(code: str) -> str:
    if not is_valid_campaign_code(code):
        raise ValueError(f"not a campaign code: {code!r}")
    return code


def join_url(public_url: str, code: str | None = None) -> str:
    """The landing page for campaign ``code`` (or the general one). Raises ValueError for an invalid code."""
    base = public_url.rstrip("/")
    return f"{base}/join/{_code_or_raise(code)}" if code else f"{base}/join"


def telegram_start_url(bot_username: str, code: str | None = None) -> str:
    """``https://t.me/<bot_username>?start=<code>`` (without ``?start`` when ``code`` is None). ``bot_username``
    with or without ``@``. Raises ValueError for an invalid code."""
    base = f"https://t.me/{bot_username.lstrip('@')}"
    return f"{base}?start={_code_or_raise(code)}" if code else base


def line_id(basic_id: str) -> str:
    """A LINE basic id without its ``@`` (``@abc1234`` and ``abc1234`` both give ``abc1234``)."""
    return basic_id.strip().lstrip("@")


def line_add_friend_url(basic_id: str) -> str:
    """``https://line.me/R/ti/p/%40<id>``: adds the account as a friend (LINE delivers only to friends)."""
    return f"https://line.me/R/ti/p/%40{quote(line_id(basic_id), safe='')}"


def line_subscribe_text(code: str | None = None) -> str:
    """The message the LINE chat link types in: ``登録 <code>``, or ``登録``."""
    return f"{SUBSCRIBE_KEYWORD} {_code_or_raise(code)}" if code else SUBSCRIBE_KEYWORD


def line_message_url(basic_id: str, text: str) -> str:
    """``https://line.me/R/oaMessage/%40<id>/?<text as percent-encoded UTF-8>`` (spaces as ``%20``)."""
    return f"https://line.me/R/oaMessage/%40{quote(line_id(basic_id), safe='')}/?{quote(text, safe='')}"


@dataclass(frozen=True)
class CampaignLinks:
    """Every link for one campaign (``code`` None: the general ones). A channel whose identity is unknown (not
    configured, or its API did not answer) has None."""

    code: str | None
    join: str
    telegram: str | None
    line_add_friend: str | None
    line_message: str | None


def campaign_links(public_url: str, code: str | None, *, telegram_username: str | None,
                   line_basic_id: str | None) -> CampaignLinks:
    """The :class:`CampaignLinks` of ``code``. Raises ValueError for an invalid code."""
    return CampaignLinks(
        code=code,
        join=join_url(public_url, code),
        telegram=telegram_start_url(telegram_username, code) if telegram_username else None,
        line_add_friend=line_add_friend_url(line_basic_id) if line_basic_id else None,
        line_message=line_message_url(line_basic_id, line_subscribe_text(code)) if line_basic_id else None,
    )
