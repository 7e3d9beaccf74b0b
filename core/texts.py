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
    "line_not_friend_no_link": {
        "ja": "登録を受け付けました。お届けするには、このアカウントを友だち追加(ブロック解除)してください。",
        "en": "Subscription received. Please add the account as a friend (or unblock it) so we can deliver.",
    },
    "line_friend_activated": {
        "ja": "友だち追加ありがとうございます。{sender} のニュースレターのお届けを開始しました。\n"
        "停止はいつでも「解除」と送ってください。",
        "en": "Thank you for adding us. The newsletter from {sender} will now arrive in this chat.\n"
        "Send 解除 (stop) at any time to unsubscribe.",
    },
    # ---- photo issues (core.media): why a picture cannot be an issue's ----
    "image_unreadable": {
        "ja": "画像として読み取れませんでした(受け取った形式: {declared})。JPEG か PNG の写真を送ってください。",
        "en": "This is not a picture we can read (declared as {declared}): use a JPEG or PNG image.",
    },
    "image_wrong_format": {
        "ja": "{format} 形式の画像は使えません。JPEG か PNG にしてください(LINE の画像メッセージが受け付ける形式)。",
        "en": "{format} pictures cannot be sent: use JPEG or PNG (the formats LINE image messages accept).",
    },
    "image_too_large": {
        "ja": "画像が大きすぎます({size_mb} MB)。{limit_mb} MB 以下にしてください(LINE と Telegram の上限)。",
        "en": "The picture is too large ({size_mb} MB): at most {limit_mb} MB (the LINE and Telegram limit).",
    },
    "image_bad_dimensions": {
        "ja": "画像の大きさ({width}×{height})が送れない形です。幅と高さの合計は {max_sum} 以下、長い辺は短い辺の "
        "{max_ratio} 倍以内にしてください(Telegram の条件)。",
        "en": "A {width}×{height} picture cannot be sent: width + height must be at most {max_sum} and the longer "
        "side at most {max_ratio} times the shorter (Telegram's rule).",
    },
    "image_line_needs_https": {
        "ja": "LINE で画像を送るには OTAYORI_PUBLIC_URL が https:// で始まる公開URLである必要があります(現在: "
        "{public_url})。https で公開するか、この号の配信先から LINE を外してください。",
        "en": "LINE image messages need an https:// OTAYORI_PUBLIC_URL (now {public_url}): serve otayori over "
        "https, or leave LINE out of this issue's channels.",
    },
    "image_url_too_long": {
        "ja": "画像のURLが長すぎます({length} 文字。LINE の上限は {limit} 文字)。OTAYORI_PUBLIC_URL を短くしてください。",
        "en": "The picture's URL is {length} characters long; LINE accepts at most {limit}: use a shorter "
        "OTAYORI_PUBLIC_URL.",
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

#: The LINE rich menu (bots/line_rich_menu.py), left to right: each area sends its keyword (the chat grammar, so it
#: must stay a keyword of core.commands) and shows it with a caption. ``RICH_MENU_CHAT_BAR``: the menu bar's text
#: (LINE allows 14 characters).
RICH_MENU_ITEMS: tuple[tuple[str, str], ...] = (
    ("登録", "ニュースレターを受け取る"),
    ("解除", "配信を止める"),
    ("状態", "登録内容を確かめる"),
    ("トピック", "受け取る話題を選ぶ"),
)
RICH_MENU_CHAT_BAR = "メニュー"

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


# ---- the author's desk in the chat and reader replies (issue 5; core.desk, core.desk_views, core.chat) -------------
# Kept in one block of their own: the desk speaks to the author (Japanese), readers get the acknowledgement and the
# author's answer.

#: Labels of the desk's buttons (LINE quick-reply labels hold 20 characters).
DESK_BUTTONS: dict[str, str] = {
    "preview": "プレビュー",
    "test": "テスト送信",
    "send": "送信",
    "cancel": "取り消し",
    "cancel_sending": "配信を止める",
    "topics": "トピック選択",
}

_TEXTS.update({
    "admin_help": {
        "ja": "管理者のことば:\n"
        "・配信(/broadcast)… 新しい号を書く(次のメッセージが本文。1行目がタイトル)\n"
        "・プレビュー(/preview)… チャネルごとの見え方と宛先の人数\n"
        "・テスト送信(/test)… 自分の登録済みの宛先にだけ送る\n"
        "・送信(/send)… いま送る\n"
        "・予約 2026-12-01 09:00 / 予約 +30m(/schedule)… 時刻を決めて送る\n"
        "・キャンセル [番号](/cancel)… 下書き・予約・配信中の号を止める\n"
        "・統計(/stats)… 数字と登録数のグラフ\n"
        "・返信 <番号> <本文>(/reply)… 読者のメッセージに返事(転送されたメッセージに返信しても同じ)",
        "en": "Admin commands: /broadcast, /preview, /test, /send, /schedule WHEN, /cancel [N], /stats, /reply N TEXT",
    },
    "desk_admin_only": {"ja": "このボタンは管理者だけが使えます。", "en": "Only admins can use this button."},
    "desk_button_unknown": {"ja": "このボタンは使えなくなりました。", "en": "This button no longer works."},
    "desk_body_prompt": {
        "ja": "新しい号(下書き #{issue_id})を書きます。本文を送ってください。\n"
        "1行目がタイトルになります(1行だけのときは、次にタイトルをうかがいます)。"
        "太字・斜体・リンクはそのまま使えます。やめるときは「取り消し」を押してください。",
        "en": "New issue (draft #{issue_id}): send the body. Its first line is the title.",
    },
    "desk_forward_started": {
        "ja": "転送されたメッセージを本文にして、新しい号(下書き #{issue_id})を作りました。",
        "en": "The forwarded message is the body of a new draft (#{issue_id}).",
    },
    "desk_body_empty": {
        "ja": "本文が空です(空白だけのメッセージでした)。本文をもう一度送ってください。",
        "en": "The body is empty (only spaces). Send the body again.",
    },
    "desk_title_prompt": {
        "ja": "本文を受け取りました。タイトルを1行で送ってください。",
        "en": "Body received. Send the title (one line).",
    },
    "desk_title_invalid": {
        "ja": "タイトルは1行、{limit}文字までです。もう一度送ってください。",
        "en": "The title is one line of at most {limit} characters. Send it again.",
    },
    "desk_photo_started": {
        "ja": "写真から新しい号(下書き #{issue_id})を作りました。",
        "en": "A new draft (#{issue_id}) starts with this photo.",
    },
    "desk_photo_attached": {
        "ja": "写真({width}×{height})を下書き #{issue_id} に付けました。",
        "en": "The photo ({width}×{height}) is now draft #{issue_id}'s picture.",
    },
    "desk_photo_body_prompt": {
        "ja": "本文を送ってください(1行目がタイトルになります)。写真の説明文として、すべてのチャネルで写真と一緒に届きます。",
        "en": "Now send the body (its first line is the title); it goes with the photo on every channel.",
    },
    "desk_photo_unreadable": {
        "ja": "写真を受け取れませんでした({reason})。もう一度送ってください。",
        "en": "The photo could not be fetched ({reason}). Send it again.",
    },
    "desk_options": {
        "ja": "下書き #{issue_id}\nタイトル: {title}\n本文: {length}文字\n写真: {picture}\nトピック: {topic}\n"
        "チャネル: {channels}\n"
        "宛先(同意とトピックで絞り込み後): {recipients}\n\n"
        "ボタンでトピックとチャネルを選び、「プレビュー」「テスト送信」で確かめてから「送信」を押してください。"
        "時刻を決めるときは「予約 2026-12-01 09:00」または「予約 +30m」と送ります。",
        "en": "Draft #{issue_id}: {title} ({length} characters, photo: {picture}), topic {topic}, channels "
        "{channels}, recipients {recipients}.",
    },
    "desk_picture_yes": {"ja": "あり", "en": "yes"},
    "desk_picture_no": {"ja": "なし", "en": "none"},
    "desk_preview_picture": {
        "ja": "写真: あり(Telegram は写真に本文を添えて、LINE は画像メッセージのあとに本文、メールは本文の上に表示)",
        "en": "Photo: yes (Telegram: the photo with the text; LINE: an image message, then the text; email: above "
        "the text)",
    },
    "desk_topic_menu": {"ja": "トピックを選んでください(いま: {current})。", "en": "Choose the topic (now: {current})."},
    "desk_count": {"ja": "{channel} {count}人", "en": "{channel} {count}"},
    "desk_no_draft": {
        "ja": "下書きがありません。「配信」(/broadcast)で新しい号を書き始めてください。",
        "en": "There is no draft. Start one with /broadcast.",
    },
    "desk_channels_empty": {
        "ja": "チャネルは少なくとも1つ選んでください。",
        "en": "Choose at least one channel.",
    },
    "desk_preview_summary": {
        "ja": "プレビュー: 号 #{issue_id}「{title}」\nトピック: {topic}\n{lines}",
        "en": "Preview of issue #{issue_id} {title} (topic {topic})\n{lines}",
    },
    "desk_preview_channel": {"ja": "・{channel}: {count}人", "en": "- {channel}: {count}"},
    "desk_preview_channel_split": {
        "ja": "・{channel}: {count}人({parts}通に分けて送ります。長すぎる本文は切らずに分割します)",
        "en": "- {channel}: {count} (split into {parts} messages, nothing cut)",
    },
    "desk_preview_quota": {
        "ja": "LINE の今月の残り: {remaining}通(この号で {cost}通使います)",
        "en": "LINE messages left this month: {remaining} (this issue uses {cost})",
    },
    "desk_preview_quota_unknown": {
        "ja": "LINE の今月の残り: 上限なし(または読み取れませんでした)",
        "en": "LINE messages left this month: no limit (or unreadable)",
    },
    "desk_preview_quota_short": {
        "ja": "⚠ 残りが足りません。超える分は失敗にせず「保留」にします。来月かプラン変更のあと "
        "otayori deliveries resume {issue_id} で再開できます。",
        "en": "Not enough LINE quota: the rest will be deferred (otayori deliveries resume {issue_id}).",
    },
    "desk_preview_email_link": {
        "ja": "メールの HTML 版: {url}",
        "en": "The email as HTML: {url}",
    },
    "desk_preview_heading": {"ja": "── {channel}での表示 ──", "en": "── as {channel} shows it ──"},
    "desk_test_started": {
        "ja": "テスト送信します(号 #{issue_id}): {recipients}。あなたご自身の登録済みの宛先にだけ届きます。",
        "en": "Test send of issue #{issue_id}: {recipients} (your own subscribed endpoints only).",
    },
    "desk_test_report_head": {"ja": "🧪 テスト送信の結果(テスト用のコピーの番号です)", "en": "🧪 Test send result"},
    "desk_scheduled": {
        "ja": "予約しました: 号 #{issue_id}「{title}」を {when}({zone})に送ります。"
        "宛先(いまの時点): {recipients}。取り消すときは「キャンセル {issue_id}」。",
        "en": "Issue #{issue_id} {title} is scheduled for {when} ({zone}); recipients now: {recipients}.",
    },
    "desk_cancelled_draft": {"ja": "下書き #{issue_id} を取り消しました。", "en": "Draft #{issue_id} cancelled."},
    "desk_cancelled_scheduled": {
        "ja": "号 #{issue_id} の予約を取り消しました。送られません。",
        "en": "Issue #{issue_id} is no longer scheduled: nothing will be sent.",
    },
    "desk_cancelled_sending": {
        "ja": "号 #{issue_id} の配信を止めました: まだ送っていない {cancelled}件を取り消し、送信中の {in_flight}件は"
        "そのまま終わります。送信済みの {sent}件は取り消せません。",
        "en": "Issue #{issue_id} stopped: {cancelled} not yet sent are cancelled, {in_flight} in flight finish, "
        "{sent} sent stay sent.",
    },
    "desk_cancel_which": {
        "ja": "止められる号が複数あります: {issues}。「キャンセル <番号>」で選んでください。",
        "en": "Several issues can be stopped: {issues}. Send /cancel N.",
    },
    "desk_nothing_to_cancel": {
        "ja": "取り消せる下書き・予約・配信中の号はありません。",
        "en": "There is no draft, scheduled or running issue to cancel.",
    },
    "desk_progress_head": {"ja": "📮 号 #{issue_id}「{title}」配信中", "en": "📮 Issue #{issue_id} {title}: sending"},
    "desk_progress_line": {
        "ja": "・{channel}: 送信済み {sent} / 未送信 {open} / 失敗 {failed}",
        "en": "- {channel}: sent {sent} / pending {open} / failed {failed}",
    },
    "desk_progress_final_line": {
        "ja": "・{channel}: 送信済み {sent} / 失敗 {failed}",
        "en": "- {channel}: sent {sent} / failed {failed}",
    },
    "desk_progress_nobody": {"ja": "(宛先はありませんでした)", "en": "(nobody to send to)"},
    "desk_progress_at": {"ja": "({at} 時点)", "en": "(as of {at})"},
    "desk_final_done": {"ja": "✅ 号 #{issue_id}「{title}」配信完了", "en": "✅ Issue #{issue_id} {title}: sent"},
    "desk_final_cancelled": {
        "ja": "⏹ 号 #{issue_id}「{title}」配信を止めました", "en": "⏹ Issue #{issue_id} {title}: stopped",
    },
    "desk_final_deferred": {
        "ja": "⏸ 号 #{issue_id}「{title}」一部を保留して終了", "en": "⏸ Issue #{issue_id} {title}: partly deferred",
    },
    "desk_final_reasons_head": {"ja": "失敗の理由:", "en": "Failures by reason:"},
    "desk_final_reason": {"ja": "・{channel}: {reason}({count}件)", "en": "- {channel}: {reason} ({count})"},
    "desk_final_no_failures": {"ja": "・なし", "en": "- none"},
    "desk_final_uncertain": {
        "ja": "届いたか分からないもの(uncertain): {count}件",
        "en": "Uncertain (may or may not have arrived): {count}",
    },
    "desk_final_count_deferred": {
        "ja": "保留(deferred): {count}件 — otayori deliveries resume {issue_id} で再開できます",
        "en": "Deferred: {count} — resume with otayori deliveries resume {issue_id}",
    },
    "desk_final_count_cancelled": {"ja": "取り消し: {count}件", "en": "Cancelled: {count}"},
    "desk_final_count_skipped": {
        "ja": "送信直前に同意がなくなり送らなかったもの: {count}件",
        "en": "Skipped (consent gone just before sending): {count}",
    },
    "desk_stats_head": {"ja": "📊 統計({at} {zone})", "en": "📊 Stats ({at} {zone})"},
    "desk_stats_people": {"ja": "購読者: {people}人({by_channel})", "en": "Subscribers: {people} ({by_channel})"},
    "desk_stats_topics": {"ja": "トピック別: {by_topic}", "en": "By topic: {by_topic}"},
    "desk_stats_window": {
        "ja": "直近{days}日 — 新規: {new} / 解除: {withdrawn}",
        "en": "Last {days} days — new: {new} / withdrawn: {withdrawn}",
    },
    "desk_stats_campaigns_head": {"ja": "キャンペーン別の登録(累計):", "en": "Sign-ups per campaign (all time):"},
    "desk_stats_campaign": {"ja": "・{campaign}: {total}({detail})", "en": "- {campaign}: {total} ({detail})"},
    "desk_stats_no_campaign": {"ja": "(キャンペーンなし)", "en": "(none)"},
    "desk_stats_issues_head": {"ja": "最近の号:", "en": "Recent issues:"},
    "desk_stats_issue": {
        "ja": "・#{issue_id}「{title}」{started} 送信済み {sent} / 失敗 {failed} / 同意なし {skipped} / 48時間以内の解除 "
        "{unsubscribed}",
        "en": "- #{issue_id} {title} {started}: sent {sent} / failed {failed} / skipped {skipped} / unsubscribed "
        "within 48 h {unsubscribed}",
    },
    "desk_stats_no_chart_line": {
        "ja": "(グラフ画像は省略しました: LINE の画像メッセージは https の URL からしか読み込めません。"
        "OTAYORI_PUBLIC_URL を https:// にすると届きます。otayori stats --chart でも作れます)",
        "en": "(No chart picture: LINE loads images only from https URLs; set an https OTAYORI_PUBLIC_URL, or use "
        "otayori stats --chart.)",
    },
    "desk_chart_caption": {"ja": "チャネル別の登録数の推移", "en": "Sign-ups per channel"},
    "reader_ack": {
        "ja": "メッセージを受け取りました。{sender}にお届けしました。お返事はこのトークでお送りします。"
        "(使えることばは「ヘルプ」でご案内します)",
        "en": "Message received and passed on to {sender}; any answer will come in this chat. (Send 'help' for "
        "the commands.)",
    },
    "reader_unnamed": {"ja": "(名前なし)", "en": "(no name)"},
    "reader_notice": {
        "ja": "💬 読者からのメッセージ(番号 {number})\n差出人: {name} さん({channel})\n────────\n{text}\n────────\n"
        "このメッセージに返信すると、{channel}で {name} さんに届きます(「返信 {number} 本文」でも送れます)。",
        "en": "💬 Message {number} from {name} ({channel}):\n{text}\nReply to this message to answer.",
    },
    "reader_answer": {"ja": "【{sender}からのお返事】\n{text}", "en": "[Answer from {sender}]\n{text}"},
    "reader_answer_sent": {
        "ja": "お返事を送りました(番号 {number} → {channel}の {name} さん)。",
        "en": "Answer sent (message {number} -> {name} on {channel}).",
    },
    "reader_answer_failed": {
        "ja": "お返事を送れませんでした(番号 {number}、{channel}): {reason}",
        "en": "The answer could not be sent (message {number}, {channel}): {reason}",
    },
    "reader_message_not_found": {
        "ja": "番号 {number} の読者メッセージはありません。",
        "en": "There is no reader message {number}.",
    },
    "reader_answer_empty": {"ja": "お返事の本文が空です。", "en": "The answer is empty."},
    "reader_unreachable": {
        "ja": "番号 {number} の読者にはもう届きません(ボットがブロックされています)。",
        "en": "Reader message {number}: the reader can no longer be reached (they blocked the bot).",
    },
})


# ---- the landing page and the seminar poster (issue 6; bots.pages, bots.poster) --------------------------------------
# The same facts as the chat terms (terms_text), labelled one per line for a page or a poster; the way to stop
# covers every channel, because a page or a poster is read before the person has picked one.


def terms_items(facts: TermsFacts, language: Language = "ja") -> list[tuple[str, str]]:
    """The terms as ``(label, value)`` pairs for the landing page and the poster: sender, what is sent and how
    often, purpose of use (APPI Art. 21), how to stop, the privacy policy URL. Same facts as :func:`terms_text`."""
    labels = _TERMS_ITEM_LABELS[language]
    return [
        (labels["sender"], facts.sender_name),
        (labels["description"], facts.newsletter_description),
        (labels["purpose"], facts.purpose_of_use),
        (labels["stop"], text("terms_stop_everywhere", language)),
        (labels["privacy"], facts.privacy_url),
    ]


_TERMS_ITEM_LABELS: dict[Language, dict[str, str]] = {
    "ja": {"sender": "配信者", "description": "配信内容", "purpose": "利用目的", "stop": "停止方法",
           "privacy": "プライバシーポリシー"},
    "en": {"sender": "Sender", "description": "What you will receive", "purpose": "Purpose of use",
           "stop": "How to stop", "privacy": "Privacy policy"},
}

_TEXTS.update({
    "terms_stop_everywhere": {
        "ja": "LINE・Telegram ではトークで「解除」と送るだけ、メールでは毎号の配信停止リンクから、いつでもすぐに停止"
        "できます。同意と停止の記録は保存されます。",
        "en": "Send 'stop' (解除) in the LINE or Telegram chat, or use the unsubscribe link in any email: it stops at "
        "once. Your consent and any withdrawal are recorded.",
    },
    "poster_heading": {"ja": "{sender} のニュースレター", "en": "Newsletter from {sender}"},
    "poster_lead": {
        "ja": "ご参加ありがとうございます。スマートフォンのカメラで QR コードを読み取ると、登録のご案内が開きます。"
        "内容をご確認のうえ「同意」していただいたときに登録が完了します。",
        "en": "Thank you for coming. Scan a QR code with your phone's camera: the terms open first, and you are "
        "subscribed only when you agree.",
    },
    "poster_join": {"ja": "登録ページ(LINE・Telegram・メールから選べます)", "en": "Sign-up page (LINE, Telegram or email)"},
    "poster_line_friend": {"ja": "LINE で友だち追加", "en": "Add us on LINE"},
    "poster_line_message": {"ja": "LINE の友だちの方は「{text}」を送信", "en": "Already a LINE friend: send '{text}'"},
    "poster_telegram": {"ja": "Telegram で登録", "en": "Subscribe on Telegram"},
})
