"""Every user-facing chat string, Japanese first and English where the person writes English.

One module so that wording is reviewed in one place. The terms text (:func:`terms_text`) is what the consent ledger
hashes: changing it creates a new wording version (DESIGN.md "Words" -> consent event); older versions stay stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Language = Literal["ja", "en"]


@dataclass(frozen=True)
class TermsFacts:
    """What the terms must say (APPI Art. 21(2): purpose of use when collecting directly; 特定電子メール法 Art. 3)."""

    sender_name: str
    purpose_of_use: str
    newsletter_description: str
    privacy_url: str


def terms_text(facts: TermsFacts, language: Language = "ja") -> str:
    """The canonical plain text of the terms shown before consent: sender, what is sent and how often, purpose of use,
    the privacy policy URL and how to stop. Deterministic for the same facts (its SHA-256 is the wording hash)."""
    if language == "en":
        return (
            f"Newsletter from {facts.sender_name}\n"
            f"What you will receive: {facts.newsletter_description}\n"
            f"Purpose of use of your contact: {facts.purpose_of_use}\n"
            f"Privacy policy: {facts.privacy_url}\n"
            "To stop at any time, send 'stop' (or 解除). Your consent and any withdrawal are recorded.\n"
            "Press 'Agree and subscribe' (or send 同意) to subscribe."
        )
    return (
        f"【{facts.sender_name} のニュースレター】\n"
        f"配信内容: {facts.newsletter_description}\n"
        f"利用目的: {facts.purpose_of_use}\n"
        f"プライバシーポリシー: {facts.privacy_url}\n"
        "配信はいつでも「解除」と送るだけで停止できます。同意と停止の記録は保存されます。\n"
        "よろしければ「同意して登録」を押すか、「同意」と送ってください。"
    )


CONSENT_BUTTON = {"ja": "同意して登録", "en": "Agree and subscribe"}

_TEXTS: dict[str, dict[Language, str]] = {
    "subscribed": {
        "ja": "ご登録ありがとうございます。{sender} のニュースレターをこのチャットにお届けします。\n"
        "停止はいつでも「解除」と送ってください。状態の確認は「状態」です。",
        "en": "Thank you for subscribing. The newsletter from {sender} will arrive in this chat.\n"
        "Send 'stop' at any time to unsubscribe; 'status' shows your subscription.",
    },
    "already_subscribed": {
        "ja": "すでに登録済みです。停止するときは「解除」と送ってください。",
        "en": "You are already subscribed. Send 'stop' to unsubscribe.",
    },
    "withdrawn": {
        "ja": "配信を停止しました。このチャットには今後お送りしません。\n再開するときは「登録」と送ってください。",
        "en": "Unsubscribed: nothing more will be sent to this chat.\nSend 'subscribe' to start again.",
    },
    "withdrawn_all": {
        "ja": "すべてのチャネルで配信を停止しました({count}件)。",
        "en": "Unsubscribed on every channel ({count}).",
    },
    "not_subscribed": {
        "ja": "このチャットは登録されていません。配信をご希望のときは「登録」と送ってください。",
        "en": "This chat is not subscribed. Send 'subscribe' if you would like the newsletter.",
    },
    "group_refused": {
        "ja": "申し訳ありません。ニュースレターの登録は1対1のトークでのみ受け付けています。"
        "ボットとの個別のトークで「登録」と送ってください。",
        "en": "Sorry, subscriptions are only possible in a one-to-one chat with the bot. Please send 'subscribe' there.",
    },
    "terms_expired": {
        "ja": "ご案内から24時間が過ぎたため、もう一度内容をご確認ください。",
        "en": "More than 24 hours have passed since the terms were shown; please read them again.",
    },
    "help": {
        "ja": "使えることば:\n"
        "・登録 … ニュースレターに登録(内容を確認してから同意)\n"
        "・解除 … このチャットへの配信を停止\n"
        "・全解除 … すべてのチャネルの配信を停止\n"
        "・状態 … 登録状況の確認\n"
        "・ヘルプ … この案内",
        "en": "Commands:\n"
        "- subscribe: read the terms and subscribe\n"
        "- stop: unsubscribe this chat\n"
        "- 全解除: unsubscribe every channel\n"
        "- status: show your subscription\n"
        "- help: this message",
    },
    "email_later": {
        "ja": "メールでの配信登録は準備中です。現在はこのチャットでお届けしています。",
        "en": "Email delivery is not available yet; the newsletter arrives in this chat.",
    },
    "status_header": {"ja": "ご登録状況:", "en": "Your subscription:"},
    "status_none": {
        "ja": "登録はありません。ご希望のときは「登録」と送ってください。",
        "en": "No subscription. Send 'subscribe' if you would like the newsletter.",
    },
    "status_line": {
        "ja": "・{channel}: {state}(同意 {consented})",
        "en": "- {channel}: {state} (consent {consented})",
    },
    "status_topics_all": {"ja": "トピック: すべて", "en": "Topics: all"},
    "status_topics": {"ja": "トピック: {topics}", "en": "Topics: {topics}"},
    "issue_footer": {
        "ja": "配信停止は「解除」と送ってください。",
        "en": "Send 解除 (stop) to unsubscribe.",
    },
    "line_not_friend": {
        "ja": "登録を受け付けました。お届けするには友だち追加が必要です: {link}",
        "en": "Subscription received. Please add the account as a friend so we can deliver: {link}",
    },
}

CHANNEL_NAMES: dict[str, dict[Language, str]] = {
    "line": {"ja": "LINE", "en": "LINE"},
    "telegram": {"ja": "Telegram", "en": "Telegram"},
    "email": {"ja": "メール", "en": "Email"},
}

STATE_NAMES: dict[str, dict[Language, str]] = {
    "active": {"ja": "配信中", "en": "active"},
    "pending": {"ja": "確認待ち", "en": "pending"},
    "unsubscribed": {"ja": "停止済み", "en": "unsubscribed"},
    "unreachable": {"ja": "届きません(ブロック等)", "en": "unreachable"},
}


def text(key: str, language: Language = "ja", **values: object) -> str:
    """The string ``key`` in ``language`` with ``values`` filled in. Raises ``KeyError`` for an unknown key."""
    return _TEXTS[key][language].format(**values)
