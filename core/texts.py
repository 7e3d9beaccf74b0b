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
        "・トピック … 受け取るトピックを選ぶ\n"
        "・ヘルプ … この案内",
        "en": "Commands:\n"
        "- subscribe: read the terms and subscribe\n"
        "- stop: unsubscribe this chat\n"
        "- 全解除: unsubscribe every channel\n"
        "- status: show your subscription\n"
        "- topics: choose the topics you receive\n"
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
    "topics_menu": {
        "ja": "受け取りたいトピックをボタンで選んでください(押すたびに選択/解除。何も選ばなければすべてお届けします)。\n"
        "いまの設定: {current}",
        "en": "Choose the topics you want with the buttons (each press selects or deselects; none chosen = all).\n"
        "Now: {current}",
    },
    "topics_changed": {
        "ja": "トピックを変更しました。いまの設定: {current}",
        "en": "Topics changed. Now: {current}",
    },
    "topics_all": {"ja": "すべて", "en": "all"},
    # ---- the stats chart (bots/charts.py) ---------------------------------------------------------------------------
    "chart_signups_title": {
        "ja": "チャネル別の登録数の推移(直近{days}日・累計)",
        "en": "Sign-ups per channel (last {days} days, cumulative)",
    },
    "chart_signups_axis": {"ja": "登録数(累計)", "en": "sign-ups (cumulative)"},
    "chart_legend": {"ja": "{channel}(計 {total})", "en": "{channel} ({total} in all)"},
    # ---- refusals with a reason (ReasonError keys): the author's desk ----------------------------------------------
    "schedule_malformed": {
        "ja": "日時「{given}」を読み取れません。「2026-12-01 09:00」の形か、「+30m」「+2h」「+45s」のように送ってください。",
        "en": "Cannot read the time {given!r}: write 2026-12-01 09:00, or a relative +30m, +2h, +45s.",
    },
    "schedule_past": {
        "ja": "{when}({zone})はすでに過ぎています。これから先の日時を指定してください。",
        "en": "{when} ({zone}) is in the past: choose a time in the future.",
    },
    "schedule_nonexistent": {
        "ja": "{when} は {zone} に存在しない時刻です(夏時間の切り替え)。別の時刻を指定してください。",
        "en": "{when} does not exist in {zone} (a daylight-saving gap): choose another time.",
    },
    "schedule_too_far": {
        "ja": "予約できるのは{days}日先までです。",
        "en": "Schedules reach at most {days} days ahead.",
    },
    "issue_not_found": {"ja": "号 {issue_id} は見つかりません。", "en": "There is no issue {issue_id}."},
    "issue_already_sent": {
        "ja": "号 {issue_id} は配信が完了しています。取り消せません(届いたものは戻せません)。",
        "en": "Issue {issue_id} has been sent completely: there is nothing left to cancel.",
    },
    "issue_already_cancelled": {
        "ja": "号 {issue_id} はすでに取り消されています。",
        "en": "Issue {issue_id} is cancelled already.",
    },
    "issue_wrong_state": {
        "ja": "号 {issue_id} は「{state}」のため、{action}できません。",
        "en": "Issue {issue_id} is {state_en}: it cannot be {action_en}.",
    },
    "issue_incomplete": {
        "ja": "号 {issue_id} にはまだ{missing}がありません。",
        "en": "Issue {issue_id} has no {missing_en} yet.",
    },
    "test_no_recipients": {
        "ja": "テスト送信の宛先がありません。テスト送信は管理者ご自身が登録(同意)しているチャネルにだけ届きます。"
        "まずボットに「登録」してください。",
        "en": "No test recipients: a test goes only to the admins' own subscribed endpoints. Subscribe to the bot "
        "first.",
    },
    "unknown_topic": {
        "ja": "トピック「{given}」はありません。選べるもの: {choices}",
        "en": "Unknown topic {given!r}; choose one of: {choices}",
    },
    "unknown_channel": {
        "ja": "チャネル「{given}」はありません。選べるもの: line, telegram, email",
        "en": "Unknown channel {given!r}; choose from line, telegram, email",
    },
    "channel_off": {
        "ja": "{channel} は設定されていないため使えません。",
        "en": "{channel} is not configured here, so it cannot be used",
    },
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

#: Issue states (core.issues) as the author reads them.
ISSUE_STATE_NAMES: dict[str, dict[Language, str]] = {
    "draft": {"ja": "下書き", "en": "a draft"},
    "scheduled": {"ja": "予約済み", "en": "scheduled"},
    "sending": {"ja": "配信中", "en": "sending"},
    "sent": {"ja": "配信完了", "en": "sent"},
    "cancelled": {"ja": "取り消し済み", "en": "cancelled"},
}

#: What an admin asked to do to an issue, for "cannot be …" answers.
ISSUE_ACTION_NAMES: dict[str, dict[Language, str]] = {
    "schedule": {"ja": "予約", "en": "scheduled"},
    "send": {"ja": "送信", "en": "sent"},
    "edit": {"ja": "編集", "en": "edited"},
    "cancel": {"ja": "取り消し", "en": "cancelled"},
    "resume": {"ja": "再開", "en": "resumed"},
}

#: Parts of an issue that may be missing before it can be sent.
ISSUE_PART_NAMES: dict[str, dict[Language, str]] = {
    "title": {"ja": "タイトル", "en": "title"},
    "body": {"ja": "本文", "en": "body"},
}

TOPICS_ALL_BUTTON = {"ja": "すべて", "en": "All"}
#: Prefix of a chosen topic's button label (2 characters: labels are <= 18, LINE allows 20).
TOPIC_CHOSEN_MARK = "✅ "

STATE_NAMES: dict[str, dict[Language, str]] = {
    "active": {"ja": "配信中", "en": "active"},
    "pending": {"ja": "確認待ち", "en": "pending"},
    "unsubscribed": {"ja": "停止済み", "en": "unsubscribed"},
    "unreachable": {"ja": "届きません(ブロック等)", "en": "unreachable"},
}


def text(key: str, language: Language = "ja", **values: object) -> str:
    """The string ``key`` in ``language`` with ``values`` filled in. Raises ``KeyError`` for an unknown key."""
    return _TEXTS[key][language].format(**values)


class ReasonError(ValueError):
    """A refusal the person is told about, with its reason: ``key`` names a string of this module, ``values`` fill it.

    ``str(err)`` is the English sentence (the CLI and logs); :meth:`message` gives it in either language (the chat).
    Subclasses name the situation (core.schedule.ScheduleError, core.issues.IssueStateError, …).
    """

    def __init__(self, key: str, **values: object) -> None:
        self.key = key
        self.values = values
        super().__init__(text(key, "en", **values))

    def message(self, language: Language = "ja") -> str:
        """The reason in ``language``."""
        return text(self.key, language, **self.values)
