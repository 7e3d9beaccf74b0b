"""The demo's verdict: :func:`verify` compares the script's :class:`Expectation` with the :class:`Observation`.

Pure (no I/O), so a test can feed it a deliberately wrong observation and watch it fail. The email rules live in
:mod:`bots.demo.mail_checks`; this module holds the chat, delivery-record and ledger rules and puts them together.
"""

from __future__ import annotations

import math

from bots.demo.facts import Check, Expectation, Observation, sample
from bots.demo.mail_checks import sort_mail, verify_mail
from bots.demo.script import CHANNELS, ENDPOINT_CHANNELS

#: LINE multicast takes at most 500 user ids per request (reference/line.md "Sending").
LINE_MULTICAST_MAX = 500


def verify(expected: Expectation, observed: Observation) -> list[Check]:
    """Compare the script's expectation with the observation; one :class:`Check` per rule (pure, no I/O).

    Chat rules: every expected recipient got the issue exactly once on their platform; the people who left got
    nothing of it; nobody else got it; LINE multicast requests = ⌈LINE recipients / 500⌉; the expected number of
    chat recipients (attendees − leavers) = the recipients the emulators saw. Records: delivery rows ``sent`` per
    channel = what the emulators and the SMTP sink received on that channel; active endpoints per channel = the
    script's. Email: :func:`bots.demo.mail_checks.verify_mail`. Ledger: grants (and those attributed to the campaign),
    withdrawals per source and confirmations per source (and those via the campaign) = the script's; the audit is
    OK; the consent export has one line per ledger event.
    """
    checks = _chat_checks(expected, observed)
    checks.extend(_record_checks(expected, observed))
    checks.extend(verify_mail(expected, observed))
    checks.append(_ledger_check(expected, observed))
    checks.append(Check(observed.audit_ok, "監査 (otayori audit) / audit OK", observed.audit_summary))
    checks.append(Check(observed.export_lines == observed.ledger_events,
                        "同意エクスポート = 台帳の件数 / consent export: one line per ledger event",
                        f"{observed.export_lines} lines, {observed.ledger_events} events"))
    return checks


def _chat_checks(expected: Expectation, observed: Observation) -> list[Check]:
    checks: list[Check] = []
    copies = {c: dict(observed.issue_copies.get(c, {})) for c in CHANNELS}

    missing = [f"{c}:{a}" for c in CHANNELS for a in sorted(expected.recipients[c]) if copies[c].get(a, 0) == 0]
    doubled = [f"{c}:{a}×{copies[c][a]}" for c in CHANNELS for a in sorted(expected.recipients[c])
               if copies[c].get(a, 0) > 1]
    got_once = sum(1 for c in CHANNELS for a in expected.recipients[c] if copies[c].get(a, 0) == 1)
    per_channel = ", ".join(f"{c} {len(expected.recipients[c])}" for c in CHANNELS)
    detail = f"{got_once}/{expected.recipient_count} ({per_channel})"
    if missing:
        detail += f"; missing: {sample(missing)}"
    if doubled:
        detail += f"; more than once: {sample(doubled)}"
    checks.append(Check(not missing and not doubled, "購読中の全員に1通ずつ届いた / each active subscriber got the "
                        "issue exactly once", detail))

    leaked = [f"{c}:{a}" for c in CHANNELS for a in sorted(expected.excluded[c]) if copies[c].get(a, 0) > 0]
    left = sum(len(v) for v in expected.excluded.values())
    checks.append(Check(not leaked, f"解除・ブロックした{left}人には届いていない / nothing reached the {left} who left",
                        f"leaked to: {sample(leaked)}" if leaked else f"0 copies to {left} people"))

    strangers = [f"{c}:{a}" for c in CHANNELS for a, n in sorted(copies[c].items())
                 if n > 0 and a not in expected.recipients[c] and a not in expected.excluded[c]]
    checks.append(Check(not strangers, "ほかの宛先には届いていない / no copy went anywhere else",
                        f"unexpected: {sample(strangers)}" if strangers else "none"))

    line_recipients = len(expected.recipients["line"])
    want_requests = math.ceil(line_recipients / LINE_MULTICAST_MAX)
    checks.append(Check(observed.line_multicast_requests == want_requests,
                        "LINE multicast の回数 = ⌈LINE宛先/500⌉ / multicast requests",
                        f"{observed.line_multicast_requests} sent, expected ⌈{line_recipients}/500⌉ = {want_requests}"))

    seen_total = sum(1 for c in CHANNELS for n in copies[c].values() if n > 0)
    left_count = sum(len(v) for v in expected.excluded.values())
    checks.append(Check(seen_total == expected.recipient_count,
                        f"想定人数 (参加者−{left_count}) = エミュレーターが見た宛先 / expected = recipients seen",
                        f"{expected.attendees}−{left_count} = {expected.recipient_count} expected, "
                        f"{seen_total} seen"))
    return checks


def _record_checks(expected: Expectation, observed: Observation) -> list[Check]:
    """Delivery rows and endpoint counts against what arrived and what the script says, every channel."""
    received = {c: sum(1 for n in observed.issue_copies.get(c, {}).values() if n > 0) for c in CHANNELS}
    received["email"] = sum(sort_mail(observed.mails, expected.mail.confirmation_subject).copies.values())
    sent_vs_seen = [f"{c} sent {observed.sent.get(c, 0)} ≠ received {received[c]}" for c in ENDPOINT_CHANNELS
                    if observed.sent.get(c, 0) != received[c]]
    checks = [Check(not sent_vs_seen, "配信記録の送信済み = 実際の受信 / deliveries sent = received",
                    "; ".join(sent_vs_seen) if sent_vs_seen else
                    ", ".join(f"{c} {observed.sent.get(c, 0)}" for c in ENDPOINT_CHANNELS))]

    want = {c: len(expected.recipients[c]) for c in CHANNELS}
    want["email"] = len(expected.email_recipients)
    active_diff = [f"{c} {observed.active.get(c, 0)} ≠ {want[c]}" for c in ENDPOINT_CHANNELS
                   if observed.active.get(c, 0) != want[c]]
    checks.append(Check(not active_diff, "配信中の購読者数 = 台本 / active subscribers match the script",
                        "; ".join(active_diff) if active_diff else
                        ", ".join(f"{c} {observed.active.get(c, 0)}" for c in ENDPOINT_CHANNELS)))
    return checks


def _ledger_check(expected: Expectation, observed: Observation) -> Check:
    counts = observed.consent_counts
    grants = sum(n for (action, _source), n in counts.items() if action == "grant")
    diff: list[str] = []
    if grants != expected.grants:
        diff.append(f"grant {grants} ≠ {expected.grants}")
    if observed.campaign_grants != expected.campaign_grants:
        diff.append(f"grants via campaign {observed.campaign_grants} ≠ {expected.campaign_grants}")
    for action, wanted in (("withdraw", expected.withdrawals), ("confirm", expected.confirms)):
        for source, want in sorted(wanted.items()):
            got = counts.get((action, source), 0)
            if got != want:
                diff.append(f"{action}/{source} {got} ≠ {want}")
        others = sum(n for (a, s), n in counts.items() if a == action and s not in wanted)
        if others:
            diff.append(f"{others} unexpected {action} events")
    if observed.campaign_confirms != expected.campaign_confirms:
        diff.append(f"confirms via campaign {observed.campaign_confirms} ≠ {expected.campaign_confirms}")
    listed = ", ".join([f"withdraw/{s} {n}" for s, n in sorted(expected.withdrawals.items())]
                       + [f"confirm/{s} {n}" for s, n in sorted(expected.confirms.items())])
    return Check(not diff, "同意の記録 = 台本 / consent ledger matches the script",
                 "; ".join(diff) if diff else f"grant {grants} (campaign {observed.campaign_grants}), {listed} "
                 f"(campaign {observed.campaign_confirms})")
