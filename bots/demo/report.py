"""The demo's printed output: the script as a table, the report (subscribers, consent events, deliveries, what the
emulators and the SMTP sink received, the audit) and the checks. Rich tables; nothing here decides anything."""

from __future__ import annotations

import unicodedata
from collections import Counter

from rich.console import Console
from rich.table import Table
from rich.text import Text

from bots.demo.desk_checks import OTHER_TOPIC_LABEL, TOPIC_LABEL
from bots.demo.desk_steps import DeskReadings
from bots.demo.facts import Check, MailIdentity
from bots.demo.mail_checks import sort_mail
from bots.demo.rehearsal import Rehearsal
from bots.demo.script import CAMPAIGN_CODE, CURIOUS_QUESTION, ENDPOINT_CHANNELS, Attendee

_STEP_ORDER = ("質問", "登録", "同意", "解除", "ブロック", "メール", "Web", "コード", "リンク")


def shown(text: str) -> str:
    """``text`` with its invisible parts made visible: ASCII space ␣, other spaces and format characters as ⟨U+XXXX⟩."""
    out = []
    for ch in text:
        if ch == " ":
            out.append("␣")
        elif unicodedata.category(ch) in ("Zs", "Cf"):
            out.append(f"⟨U+{ord(ch):04X}⟩")
        else:
            out.append(ch)
    return "".join(out)


def _steps(person: Attendee) -> list[tuple[str, str]]:
    """(step, text as shown) for everything ``person`` does, in order."""
    steps: list[tuple[str, str]] = []
    if person.question:
        steps.append(("質問", shown(person.question)))
    steps.append(("登録", shown(person.subscribe_text)))
    steps.append(("同意", "[同意して登録] button" if person.consent_text is None else shown(person.consent_text)))
    if person.leaves == "withdraw":
        steps.append(("解除", shown(person.leave_text or "")))
    elif person.leaves == "block":
        steps.append(("ブロック", "(unfollow)" if person.channel == "line" else "(block)"))
    if person.curious:
        steps.append(("質問", shown(CURIOUS_QUESTION) + " (購読後)"))
    plan = person.email
    if plan is not None and plan.via == "chat":
        steps.append(("メール", shown(plan.typed)))
        if plan.confirms:
            steps.append(("コード", "６桁 (全角 / full-width)" if plan.full_width_code else "6桁 (6 digits)"))
        else:
            steps.append(("コード", "(送らない / never sent: stays pending)"))
    elif plan is not None:
        steps.append(("Web", f"address={shown(plan.typed)}"))
        steps.append(("リンク", "GET (見るだけ / look) → POST [登録を確定する]"))
    return steps


def actions_table(plan: list[Attendee]) -> Table:
    """What the attendees did, step by step: each distinct text (invisible characters shown) and how many typed it."""
    counts = Counter((step, text, person.channel) for person in plan for step, text in _steps(person))
    rows: dict[tuple[str, str], dict[str, int]] = {}
    for (step, text, channel), count in counts.items():
        rows.setdefault((step, text), {})[channel] = count
    ordered = sorted(rows.items(), key=lambda item: (_STEP_ORDER.index(item[0][0]), -sum(item[1].values()),
                                                      item[0][1]))
    table = Table()
    table.add_column("step")
    table.add_column("入力 / typed", overflow="fold")
    table.add_column("Telegram", justify="right")
    table.add_column("LINE", justify="right")
    previous = None
    for (step, text), per_channel in ordered:
        table.add_row(step if step != previous else "", Text(text),
                      str(per_channel.get("telegram", "")), str(per_channel.get("line", "")))
        previous = step
    return table


def print_plain(console: Console, line: str) -> None:
    """Print ``line`` as is: no markup (attendees type brackets), no highlighting, never wrapped."""
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def heading(console: Console, title: str) -> None:
    """Print a bold section heading."""
    console.print(Text(title, style="bold"), soft_wrap=True)


def print_report(console: Console, rehearsal: Rehearsal, mail: MailIdentity) -> None:
    """The report: subscribers, consent events, deliveries, what the emulators and the SMTP sink received, the
    email subscribers one by one, the audit."""
    readings = rehearsal.readings
    result = rehearsal.result
    assert readings is not None and result is not None
    states = ("active", "unsubscribed", "unreachable", "pending")
    heading(console, "購読者 / endpoints per channel")
    table = Table()
    table.add_column("channel")
    for label in ("配信中\nactive", "停止\nunsubscribed", "不達\nunreachable", "確認待ち\npending"):
        table.add_column(label, justify="right")
    for channel in ENDPOINT_CHANNELS:
        table.add_row(channel, *(str(readings.endpoints.get((channel, s), 0)) for s in states))
    console.print(table)

    heading(console, "同意の記録 / consent events by action and source")
    table = Table()
    table.add_column("action")
    table.add_column("source")
    table.add_column("件数\nevents", justify="right")
    for (action, source), count in sorted(readings.consents.items()):
        table.add_row(action, source, str(count))
    console.print(table)
    grants = sum(n for (a, _s), n in readings.consents.items() if a == "grant")
    confirms = sum(n for (a, _s), n in readings.consents.items() if a == "confirm")
    observation = readings.observation
    print_plain(console, f"  キャンペーン {CAMPAIGN_CODE} 経由 / via the campaign: grant {observation.campaign_grants} / "
                 f"{grants}, confirm {observation.campaign_confirms} / {confirms}")

    heading(console, "配信 / deliveries by status")
    table = Table()
    table.add_column("channel")
    statuses = sorted({s for (_c, s) in result.report.counts} | {"sent"})
    for status in statuses:
        table.add_column(status, justify="right")
    for channel in ENDPOINT_CHANNELS:
        table.add_row(channel, *(str(result.report.counts.get((channel, s), 0)) for s in statuses))
    console.print(table)
    for (channel, reason), count in sorted(result.report.failure_reasons.items()):
        print_plain(console, f"  {channel}: {count} × {reason}")

    heading(console, "エミュレーターが受け取ったメッセージ / what the emulators received")
    table = Table()
    table.add_column("platform")
    table.add_column("全メッセージ\nall messages", justify="right")
    table.add_column("返信\nbot replies", justify="right")
    table.add_column("号の配信\nissue copies", justify="right")
    table.add_column("multicast\nrequests", justify="right")
    for channel in ("telegram", "line"):
        seen = readings.emulator_messages.get(channel, {})
        table.add_row(channel, str(seen.get("total", 0)), str(seen.get("replies", 0)), str(seen.get("issue", 0)),
                      str(seen.get("requests", 0)) if channel == "line" else "—")
    console.print(table)

    _print_mail(console, rehearsal, mail)

    audit_report = readings.audit_report
    print_plain(console, f"監査 / otayori audit: {audit_report.events} ledger events, {audit_report.deliveries} attempted "
                 f"deliveries checked: {'OK' if audit_report.ok else 'VIOLATIONS FOUND'}")
    for problem in audit_report.chain_problems:
        print_plain(console, f"  ledger event {problem.event_id}: {problem.problem}")
    for v in audit_report.delivery_violations:
        print_plain(console, f"  delivery {v.delivery_id} ({v.channel}): latest consent at first attempt was "
                     f"{v.latest_action or 'none'}")


def _print_mail(console: Console, rehearsal: Rehearsal, mail: MailIdentity) -> None:
    """What the SMTP sink received, by kind, and each email subscriber's way through double opt-in."""
    assert rehearsal.readings is not None
    observation = rehearsal.readings.observation
    sorted_mail = sort_mail(observation.mails, mail.confirmation_subject)
    heading(console, "SMTPシンクが受け取ったメール / what the SMTP sink received")
    table = Table()
    table.add_column("kind")
    table.add_column("通数\nmessages", justify="right")
    table.add_column("宛先\naddresses", justify="right")
    table.add_row("確認メール / confirmation", str(sum(sorted_mail.confirmations.values())),
                  str(len(sorted_mail.confirmations)))
    table.add_row("号の配信 / issue copies", str(len(sorted_mail.newsletters)), str(len(sorted_mail.copies)))
    table.add_row("合計 / total", str(len(observation.mails)),
                  str(len(set(sorted_mail.confirmations) | set(sorted_mail.copies))))
    console.print(table)

    table = Table()
    table.add_column("address", no_wrap=True)
    table.add_column("経路 / via\n確定 / confirmed by")
    table.add_column("確認\nmails", justify="right")
    table.add_column("号\ncopies", justify="right")
    table.add_column("状態\nstate")
    for person in rehearsal.plan:
        plan = person.email
        if plan is None:
            continue
        via = "web" if plan.via == "web" else person.channel
        table.add_row(plan.address, f"{via}: {plan.how}", str(sorted_mail.confirmations.get(plan.address, 0)),
                      str(sorted_mail.copies.get(plan.address, 0)), observation.email_states.get(plan.address, "—"))
    heading(console, "メール購読者 / email subscribers (double opt-in)")
    console.print(table)


def print_desk(console: Console, desk: DeskReadings) -> None:
    """The author's desk act: who chose which topic, then the author's Telegram chat as text (the screens)."""
    heading(console, "著者の机 / the author's desk (the author's Telegram chat)")
    for label, people in ((TOPIC_LABEL, desk.plan.events_fans), (OTHER_TOPIC_LABEL, desk.plan.it_fans)):
        print_plain(console, f"  トピック「{label}」を選んだ / chose {label}: " + ", ".join(p.label for p in people))
    for who, text in desk.transcript:
        lines = text.splitlines() or [""]
        print_plain(console, f"  {who:>4} │ {lines[0]}")
        for line in lines[1:]:
            print_plain(console, f"       │ {line}")


def print_checks(console: Console, checks: list[Check]) -> None:
    """One line per check: ✓ or ✗, the label, the detail."""
    console.print()
    print_plain(console, "照合 / checks (against what the emulators and the SMTP sink received):")
    for check in checks:
        mark = Text("✓", style="bold green") if check.ok else Text("✗", style="bold red")
        console.print(Text.assemble("  ", mark, f" {check.label}: {check.detail}"), soft_wrap=True)
