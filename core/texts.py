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
    "email_unavailable": {
        "ja": "メールでの配信は現在ご利用いただけません。このチャットでお届けしています。",
        "en": "Email delivery is not available; the newsletter arrives in this chat.",
    },
    "email_usage": {
        "ja": "メールでも受け取るには「メール アドレス」の形で送ってください。例: メール taro@example.jp",
        "en": "To also receive it by email, send 'email <address>', e.g. email taro@example.jp",
    },
    "email_needs_subscription": {
        "ja": "メールでのお届けを追加するには、先にこのチャットで「登録」してください。",
        "en": "Please subscribe in this chat first ('subscribe'), then add your email address.",
    },
    "email_invalid": {
        "ja": "メールアドレスの形式が正しくないようです。@ の前後やスペースが入っていないかお確かめください。",
        "en": "That email address does not look valid ({detail}). Please check it.",
    },
    "email_sent": {
        "ja": "{address} に確認メールを送りました。メールのリンクから確定するか、メールに書かれた6桁のコードを"
        "このチャットに送ってください({hours}時間有効)。確定するまでメールはお送りしません。",
        "en": "A confirmation mail went to {address}. Confirm with its link, or send the 6-digit code from it here "
        "(valid {hours} h). Nothing is emailed until you confirm.",
    },
    "email_rate_limited": {
        "ja": "このアドレスへの確認メールは1日3通までです。届いたメールをご確認いただくか、明日もう一度お試しください。",
        "en": "At most 3 confirmation mails per address per day. Please check your inbox or try again tomorrow.",
    },
    "email_already_active": {
        "ja": "{address} はすでに配信先として確認済みです。",
        "en": "{address} is already confirmed.",
    },
    "email_send_failed": {
        "ja": "確認メールを送れませんでした。しばらくしてからもう一度お試しください。",
        "en": "The confirmation mail could not be sent. Please try again later.",
    },
    "email_confirm_confirmed": {
        "ja": "{address} を確認しました。ニュースレターをメールでもお届けします。停止はメールの配信停止リンクか「解除」で。",
        "en": "{address} is confirmed: the newsletter will also arrive by email. Unsubscribe with the link in any mail.",
    },
    "email_confirm_already": {
        "ja": "{address} はすでに確認済みです。",
        "en": "{address} is already confirmed.",
    },
    "email_confirm_expired": {
        "ja": "確認コードの有効期限が切れました。もう一度「メール アドレス」を送ってください。",
        "en": "The confirmation code has expired. Send 'email <address>' again.",
    },
    "email_confirm_used": {
        "ja": "この確認はすでに使われています。もう一度「メール アドレス」を送ってください。",
        "en": "This confirmation was already used. Send 'email <address>' again.",
    },
    "email_confirm_invalid": {
        "ja": "確認できませんでした。もう一度「メール アドレス」を送ってください。",
        "en": "This confirmation is not valid. Send 'email <address>' again.",
    },
    "email_confirm_locked": {
        "ja": "コードの入力に5回失敗しました。もう一度「メール アドレス」を送って新しいコードを受け取ってください。",
        "en": "Five wrong codes: send 'email <address>' again to get a new code.",
    },
    "email_confirm_wrong_code": {
        "ja": "コードが違います(あと{remaining}回)。メールに書かれた6桁の数字を送ってください。",
        "en": "Wrong code ({remaining} tries left). Send the 6 digits from the mail.",
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
