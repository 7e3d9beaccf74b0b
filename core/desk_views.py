"""What the author reads in the chat: the draft's options, the preview, the live progress and final report of a
broadcast, the stats, and readers' forwarded messages — as :class:`core.subscriptions.Reply` objects or plain text.

Pure module (no I/O): the use cases (core.desk, core.reader_replies) gather the facts and call these. Every string
comes from core.texts. Message sizes respect the admin's own channel (Telegram 4,096 characters, LINE 5,000 UTF-16
code units): long texts are split, never cut.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from core import render, texts, topics
from core.reports import DeliveryReport
from core.settings import Settings
from core.stats import CHANNELS, Stats
from core.subscriptions import Button, Reply
from storage.models import Issue

#: Button data of the desk's buttons: ``desk:<issue id>:<action>[:<argument>]`` (<= 64 bytes: Telegram's limit).
BUTTON_PREFIX = "desk:"
#: Delivery statuses still open (counted as "未送信" while a broadcast runs).
OPEN_STATUSES = ("pending", "sending")
_TAG_RE = re.compile(r"<[^<>]*>")


def channel_name(channel: str) -> str:
    """A channel as the author reads it (``メール`` for email)."""
    return texts.CHANNEL_NAMES[channel]["ja"] if channel in texts.CHANNEL_NAMES else channel


def topic_name(settings: Settings, topic: str | None) -> str:
    """An issue's topic as the author reads it: its label, or ``すべて`` for every topic."""
    return topics.describe(settings, [topic] if topic else None, "ja")


def issue_channels(issue: Issue, enabled: Sequence[str]) -> list[str]:
    """The channels an issue goes to: its own list, else every enabled channel (in the enabled order)."""
    return list(issue.channels) if issue.channels else list(enabled)


def button_data(issue_id: int, action: str, argument: str | None = None) -> str:
    """``desk:<issue id>:<action>[:<argument>]``."""
    return f"{BUTTON_PREFIX}{issue_id}:{action}" + (f":{argument}" if argument is not None else "")


def recipients_text(counts: Mapping[str, int], channels: Iterable[str]) -> str:
    """``LINE 3人・Telegram 2人`` for ``channels`` (0 when missing)."""
    return "・".join(texts.text("desk_count", "ja", channel=channel_name(c), count=counts.get(c, 0)) for c in channels)


def local(settings: Settings, moment: datetime | None) -> str:
    """``YYYY-MM-DD HH:MM`` in ``OTAYORI_TIMEZONE`` (``—`` for None)."""
    if moment is None:
        return "—"
    return moment.astimezone(ZoneInfo(settings.timezone)).strftime("%Y-%m-%d %H:%M")


# ---- the draft's options -----------------------------------------------------------------------------------------

#: LINE shows at most 13 quick-reply buttons (reference/line.md); beyond that the topics get a menu of their own.
MAX_BUTTONS = 13


def options_reply(settings: Settings, issue: Issue, enabled: Sequence[str], counts: Mapping[str, int]) -> Reply:
    """The draft with its choices and buttons: one per topic (and すべて), one per enabled channel (a toggle), then
    プレビュー, テスト送信, 送信, 取り消し. The chosen topic and channels are marked ✅."""
    assert issue.id is not None
    chosen_channels = issue_channels(issue, enabled)
    body = texts.text(
        "desk_options", "ja", issue_id=issue.id, title=issue.title or "—", length=len(issue.body_md),
        picture=texts.text("desk_picture_yes" if issue.image_sha256 else "desk_picture_no", "ja"),
        topic=topic_name(settings, issue.topic), channels="・".join(channel_name(c) for c in chosen_channels),
        recipients=recipients_text(counts, chosen_channels),
    )
    mark = texts.TOPIC_CHOSEN_MARK
    topic_buttons = [Button((mark if issue.topic == slug else "") + label, button_data(issue.id, "topic", slug))
                     for slug, label in settings.topic_labels.items()]
    topic_buttons.append(Button((mark if issue.topic is None else "") + texts.TOPICS_ALL_BUTTON["ja"],
                                button_data(issue.id, "topic", "*")))
    channel_buttons = [Button((mark if c in chosen_channels else "") + channel_name(c), button_data(issue.id, "ch", c))
                       for c in enabled]
    actions = [Button(texts.DESK_BUTTONS[action], button_data(issue.id, action))
               for action in ("preview", "test", "send", "cancel")]
    if len(topic_buttons) + len(channel_buttons) + len(actions) > MAX_BUTTONS:
        topic_buttons = [Button(texts.DESK_BUTTONS["topics"], button_data(issue.id, "topics"))]
    return Reply("desk_options", body, tuple(topic_buttons + channel_buttons + actions))


def topic_menu_reply(settings: Settings, issue: Issue) -> Reply:
    """The topic buttons alone (when the options message has no room for them: more topics than LINE's 13
    quick-reply buttons allow next to the rest); the list is cut to 12 topics plus すべて."""
    assert issue.id is not None
    mark = texts.TOPIC_CHOSEN_MARK
    buttons = [Button((mark if issue.topic == slug else "") + label, button_data(issue.id, "topic", slug))
               for slug, label in settings.topic_labels.items()][: MAX_BUTTONS - 1]
    buttons.append(Button(texts.TOPICS_ALL_BUTTON["ja"], button_data(issue.id, "topic", "*")))
    return Reply("desk_topics", texts.text("desk_topic_menu", "ja", current=topic_name(settings, issue.topic)),
                 tuple(buttons))


# ---- the preview ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChannelRendering:
    """How one channel will carry the issue: ``parts`` as sent (Telegram HTML, LINE or email plain text)."""

    channel: str
    parts: list[str]


def visible_telegram_text(part: str) -> str:
    """What Telegram shows for one of our HTML parts: tags removed, entities decoded (to measure and to show it
    on LINE)."""
    return html.unescape(_TAG_RE.sub("", part))


def _limit(admin_channel: str) -> int:
    return render.TELEGRAM_TEXT_LIMIT if admin_channel == "telegram" else render.LINE_TEXT_LIMIT_UTF16


def _plain_pieces(text: str, admin_channel: str) -> list[str]:
    """``text`` split to fit one message on the admin's channel."""
    if admin_channel == "telegram":
        return render.split_line_text(text, render.TELEGRAM_TEXT_LIMIT) or [text]
    return render.split_line_text(text, render.LINE_TEXT_LIMIT_UTF16) or [text]


def _fits(text: str, admin_channel: str) -> bool:
    size = len(text) if admin_channel == "telegram" else render.utf16_length(text)
    return size <= _limit(admin_channel)


def preview_replies(settings: Settings, issue: Issue, channels: Sequence[str], counts: Mapping[str, int],
                    renderings: Sequence[ChannelRendering], *, line_quota: int | None, line_cost: int,
                    email_url: str | None, admin_channel: str) -> list[Reply]:
    """The preview: a summary (recipients per channel after consent and topic, how many messages each channel
    takes, LINE's quota left this month and what this issue costs, the email's HTML link), then each channel's
    rendering under a heading. On Telegram the Telegram parts are sent as the HTML they are; LINE and email parts are
    plain text. Every reply fits one message on ``admin_channel``."""
    assert issue.id is not None
    lines = []
    for channel in channels:
        rendering = next((r for r in renderings if r.channel == channel), None)
        parts = len(rendering.parts) if rendering is not None and channel != "email" else 1
        key = "desk_preview_channel_split" if parts > 1 else "desk_preview_channel"
        lines.append(texts.text(key, "ja", channel=channel_name(channel), count=counts.get(channel, 0), parts=parts))
    if issue.image_sha256:
        lines.append(texts.text("desk_preview_picture", "ja"))
    if "line" in channels:
        if line_quota is None:
            lines.append(texts.text("desk_preview_quota_unknown", "ja"))
        else:
            lines.append(texts.text("desk_preview_quota", "ja", remaining=line_quota, cost=line_cost))
            if line_cost > line_quota:
                lines.append(texts.text("desk_preview_quota_short", "ja", issue_id=issue.id))
    if email_url:
        lines.append(texts.text("desk_preview_email_link", "ja", url=email_url))
    summary = texts.text("desk_preview_summary", "ja", issue_id=issue.id, title=issue.title,
                         topic=topic_name(settings, issue.topic), lines="\n".join(lines))
    replies = [Reply("desk_preview", piece) for piece in _plain_pieces(summary, admin_channel)]
    for rendering in renderings:
        heading = texts.text("desk_preview_heading", "ja", channel=channel_name(rendering.channel))
        if rendering.channel == "telegram" and admin_channel == "telegram":
            replies.extend(_telegram_html_replies(heading, rendering.parts))
            continue
        shown = [visible_telegram_text(p) for p in rendering.parts] if rendering.channel == "telegram" \
            else rendering.parts
        replies.extend(_plain_replies(heading, shown, admin_channel))
    return replies


def _telegram_html_replies(heading: str, parts: Sequence[str]) -> list[Reply]:
    """The Telegram parts as HTML messages; the heading joins the first part when both fit in one message."""
    replies: list[Reply] = []
    first = f"<i>{html.escape(heading, quote=False)}</i>\n\n"
    for index, part in enumerate(parts):
        if index == 0 and len(visible_telegram_text(first + part)) <= render.TELEGRAM_TEXT_LIMIT:
            part = first + part
        elif index == 0:
            replies.append(Reply("desk_preview_part", heading))
        replies.append(Reply("desk_preview_part", visible_telegram_text(part), telegram_html=part))
    return replies


def _plain_replies(heading: str, parts: Sequence[str], admin_channel: str) -> list[Reply]:
    replies: list[Reply] = []
    for index, part in enumerate(parts):
        text = f"{heading}\n\n{part}" if index == 0 else part
        if not _fits(text, admin_channel):
            if index == 0:
                replies.append(Reply("desk_preview_part", heading))
            replies.extend(Reply("desk_preview_part", piece) for piece in _plain_pieces(part, admin_channel))
            continue
        replies.append(Reply("desk_preview_part", text))
    return replies


# ---- progress and the final report -------------------------------------------------------------------------------

def progress_text(settings: Settings, report: DeliveryReport, failed_reasons: Mapping[tuple[str, str], int], *,
                  final: bool, at: datetime) -> str:
    """The broadcast's status: per channel sent / not yet sent / failed. The final one adds the failures by reason
    (``failed_reasons[(channel, reason)]``, the most frequent first, at most 10), the uncertain count, and what was
    deferred, cancelled or skipped (DESIGN.md "Delivery")."""
    per: dict[str, dict[str, int]] = {}
    for (channel, status), count in report.counts.items():
        per.setdefault(channel, {})[status] = count
    lines = []
    for channel in [c for c in CHANNELS if c in per] + sorted(set(per) - set(CHANNELS)):
        counts = per[channel]
        key = "desk_progress_final_line" if final else "desk_progress_line"
        lines.append(texts.text(key, "ja", channel=channel_name(channel), sent=counts.get("sent", 0),
                                open=sum(counts.get(s, 0) for s in OPEN_STATUSES), failed=counts.get("failed", 0)))
    if not lines:
        lines.append(texts.text("desk_progress_nobody", "ja"))
    totals = report.by_status()
    if not final:
        head = texts.text("desk_progress_head", "ja", issue_id=report.issue_id, title=report.title)
        return "\n".join([head, *lines, texts.text("desk_progress_at", "ja", at=local(settings, at))])
    if report.status == "cancelled":
        head_key = "desk_final_cancelled"
    elif totals.get("deferred"):
        head_key = "desk_final_deferred"
    else:
        head_key = "desk_final_done"
    out = [texts.text(head_key, "ja", issue_id=report.issue_id, title=report.title), *lines,
           texts.text("desk_final_reasons_head", "ja")]
    ordered = sorted(failed_reasons.items(), key=lambda item: (-item[1], item[0]))
    if ordered:
        out.extend(texts.text("desk_final_reason", "ja", channel=channel_name(c), reason=r, count=n)
                   for (c, r), n in ordered[:10])
    else:
        out.append(texts.text("desk_final_no_failures", "ja"))
    out.append(texts.text("desk_final_uncertain", "ja", count=totals.get("uncertain", 0), issue_id=report.issue_id))
    for status in ("deferred", "cancelled", "skipped"):
        if totals.get(status):
            out.append(texts.text(f"desk_final_count_{status}", "ja", count=totals[status], issue_id=report.issue_id))
    return "\n".join(out)


def progress_buttons(issue_id: int, *, final: bool) -> tuple[Button, ...]:
    """A running broadcast's status message carries a 取り消し button; the final one none."""
    return () if final else (Button(texts.DESK_BUTTONS["cancel_sending"], button_data(issue_id, "cancel")),)


# ---- stats ---------------------------------------------------------------------------------------------------------

def stats_text(settings: Settings, stats: Stats) -> str:
    """The numbers of :class:`core.stats.Stats` as one message (the same definitions as ``otayori stats``)."""
    by_channel = "・".join(f"{channel_name(c)} {stats.by_channel.get(c, 0)}" for c in CHANNELS)
    by_topic = "、".join(f"{label} {stats.subscribers_by_topic.get(slug, 0)}人"
                        for slug, label in settings.topic_labels.items())
    lines = [texts.text("desk_stats_head", "ja", at=local(settings, stats.generated_at), zone=settings.timezone),
             texts.text("desk_stats_people", "ja", people=stats.subscribers, by_channel=by_channel),
             texts.text("desk_stats_topics", "ja", by_topic=by_topic)]
    for window in stats.movement:
        new = "・".join(f"{channel_name(c)} {window.new.get(c, 0)}" for c in CHANNELS)
        gone = "・".join(f"{channel_name(c)} {window.withdrawn.get(c, 0)}" for c in CHANNELS)
        lines.append(texts.text("desk_stats_window", "ja", days=window.days, new=new, withdrawn=gone))
    campaigns: dict[str | None, dict[str, int]] = {}
    for (campaign, channel), count in stats.signups_by_campaign.items():
        campaigns.setdefault(campaign, {})[channel] = count
    if campaigns:
        lines.append(texts.text("desk_stats_campaigns_head", "ja"))
        for campaign in sorted(campaigns, key=lambda c: (c is None, c or "")):
            per = campaigns[campaign]
            detail = "・".join(f"{channel_name(c)} {per[c]}" for c in CHANNELS if per.get(c))
            lines.append(texts.text("desk_stats_campaign", "ja", campaign=campaign or texts.text("desk_stats_no_campaign"),
                                    total=sum(per.values()), detail=detail))
    if stats.issues:
        lines.append(texts.text("desk_stats_issues_head", "ja"))
        for result in stats.issues:
            counts = result.counts
            lines.append(texts.text(
                "desk_stats_issue", "ja", issue_id=result.issue_id, title=result.title,
                started=local(settings, result.started_at), sent=counts.get("sent", 0),
                failed=counts.get("failed", 0) + counts.get("uncertain", 0), skipped=counts.get("skipped", 0),
                unsubscribed=result.unsubscribes_48h))
    return "\n".join(lines)


# ---- reader replies ------------------------------------------------------------------------------------------------

def reader_notice_parts(number: int, reader_channel: str, display_name: str | None, text: str,
                        admin_channel: str) -> list[str]:
    """The forwarded copy of reader message ``number`` for an admin on ``admin_channel``: who (name and channel),
    the text, and how to answer; split to fit that channel's messages (each part can be replied to)."""
    name = display_name or texts.text("reader_unnamed", "ja")
    notice = texts.text("reader_notice", "ja", number=number, name=name, channel=channel_name(reader_channel),
                        text=text)
    return _plain_pieces(notice, admin_channel)


def reader_answer_parts(sender: str, text: str, reader_channel: str) -> list[str]:
    """The author's answer as the reader receives it, split to fit the reader's channel."""
    return _plain_pieces(texts.text("reader_answer", "ja", sender=sender, text=text), reader_channel)
