"""``otayori demo``: the whole rehearsal passes, and its checks fail when the emulators' or the SMTP sink's records
disagree.

``run_demo`` is synchronous (it migrates, then ``asyncio.run``), so its test is a plain ``def``: no event loop may be
running in the thread that calls it. The email copies the pure checks are fed are built by otayori's own composer
(:mod:`core.mail`), exactly the bytes the sink would receive.
"""

from __future__ import annotations

import email
import email.policy
import math
from dataclasses import replace

import pytest

from bots.demo import run_demo
from bots.demo.checks import verify
from bots.demo.command import DemoDirectoryError, fresh_directory
from bots.demo.facts import Expectation, MailIdentity, Observation, ReceivedMail, expectation_for
from bots.demo.mail_checks import acceptable_unsubscribe_url, visible_text
from bots.demo.rehearsal import mail_identity
from bots.demo.script import CHANNELS, EMAIL_DOMAINS, plan_rehearsal
from bots.sandbox.stack import sandbox_settings
from core.mail import SenderIdentity, build_confirmation, build_newsletter
from core.settings import Settings

TITLE = "お便り 2026年12月号:パスワードの守り方と、発表前のPCトラブル対策"
BASE = "http://127.0.0.1:8000"


def test_demo_rehearses_a_seminar_and_every_check_agrees(tmp_path, capsys):
    directory = tmp_path / "demo"
    (directory).mkdir()
    (directory / "otayori.sqlite3").write_text("left over from an earlier run")  # wiped, not reused

    code = run_demo(directory, attendees=10)

    out = capsys.readouterr().out
    assert code == 0, out
    assert "10 attendees (Telegram 5, LINE 5)" in out
    assert "also add email: 3 (chat 2, web 1; 1 never confirms)" in out
    assert "each active subscriber got the issue exactly once: 7/7" in out
    assert "nothing reached the 3 who left: 0 copies to 3 people" in out
    assert "10−3 = 7 expected, 7 seen" in out
    assert "1 sent, expected ⌈" in out  # one LINE multicast
    assert "deliveries sent = received: telegram 4, line 3, email 2" in out
    assert "active subscribers match the script: telegram 4, line 3, email 2" in out
    # The SMTP sink: 3 confirmation mails (one each, the pending one included) and 2 copies of the issue.
    assert "one confirmation mail per address that asked: 3 addresses, 3 mails" in out
    assert "each confirmed email address got the issue exactly once: 2/2" in out
    assert "the unconfirmed address got only its confirmation: 1 pending: 1 confirmation, 0 copies" in out
    assert f"2 copies, Subject 「{TITLE}」" in out
    assert "2 copies: <http://127.0.0.1:" in out and "List-Unsubscribe=One-Click" in out
    assert "2 copies × 2 parts: sender, postal address, contact, 配信停止 + URL" in out
    assert "1 links opened, still pending until the POST" in out
    assert "email endpoints match the script: 2 active, 1 pending" in out
    assert ("grant 10 (campaign 9), withdraw/blocked 1, withdraw/chat 2, confirm/chat 1, confirm/web 1 (campaign 1)"
            in out)
    assert "audit OK: 15 ledger events, 9 attempted deliveries checked: OK" in out
    assert "15 lines, 15 events" in out
    # The author's desk, from the author's Telegram chat: a topic-filtered issue, a scheduled one, a reader's answer.
    assert "the topic issue reached exactly those who want the topic, once each: 7/7 (telegram 3, line 2, email 2); " \
           "0 to the 2 who chose only IT関連情報" in out
    assert "the scheduled issue started after its time and reached every subscriber once: scheduled " in out
    assert "; 9/9" in out
    assert "the answer reached the reader: 1/1 forwarded; answer to " in out and ": 1, elsewhere: 0" in out
    assert "著者 │ 予約 +2s" in out and "配信完了" in out
    assert "✗" not in out and out.count("✓") == 22
    assert "telegram: code 全角" in out and "web: GET→POST" in out and "never" in out
    assert "すべて一致 / all checks agree" in out
    assert f"OTAYORI_DATABASE_URL=sqlite+aiosqlite:///{directory}/otayori.sqlite3 otayori consents export" in out
    assert (directory / "otayori.sqlite3").stat().st_size > 10_000  # a real, migrated database now


# ---- the pure checks, fed faithful and tampered observations ------------------------------------------------------

@pytest.fixture
def settings(tmp_path) -> Settings:
    return sandbox_settings(tmp_path / "demo")


@pytest.fixture
def mail(settings) -> MailIdentity:
    return mail_identity(settings)


@pytest.fixture
def expected(mail) -> Expectation:
    return expectation_for(plan_rehearsal(10), TITLE, mail)


def newsletter(settings: Settings, to: str, title: str = TITLE, unsubscribe: str | None = None) -> ReceivedMail:
    """The bytes otayori sends one recipient for the issue, as the sink would record them."""
    data = build_newsletter(
        sender=SenderIdentity.from_settings(settings), to=to, title=title, body_markdown="**本文**です。①㈱髙😀ｶﾞ",
        unsubscribe_url=unsubscribe or f"{BASE}/unsubscribe/token-{to.partition('@')[0]}",
        privacy_url=f"{BASE}/privacy",
    )
    return ReceivedMail((to,), data)


def confirmation(settings: Settings, to: str) -> ReceivedMail:
    data = build_confirmation(
        sender=SenderIdentity.from_settings(settings), to=to, confirm_url=f"{BASE}/email/confirm/tok", code="123456",
        expires_hours=48, privacy_url=f"{BASE}/privacy", purpose_of_use=settings.purpose_of_use,
        newsletter_description=settings.newsletter_description,
    )
    return ReceivedMail((to,), data)


def faithful(expected: Expectation, settings: Settings) -> Observation:
    """An observation in which everything happened exactly as the script says."""
    mails = tuple(confirmation(settings, a) for a in sorted(expected.email_requesters))
    mails += tuple(newsletter(settings, a) for a in sorted(expected.email_recipients))
    confirms = sum(expected.confirms.values())
    events = expected.grants + sum(expected.withdrawals.values()) + confirms
    return Observation(
        issue_copies={c: {address: 1 for address in expected.recipients[c]} for c in CHANNELS},
        line_multicast_requests=math.ceil(len(expected.recipients["line"]) / 500),
        sent={**{c: len(expected.recipients[c]) for c in CHANNELS}, "email": len(expected.email_recipients)},
        active={**{c: len(expected.recipients[c]) for c in CHANNELS}, "email": len(expected.email_recipients)},
        consent_counts={("grant", "chat"): expected.grants,
                        **{("withdraw", s): n for s, n in expected.withdrawals.items()},
                        **{("confirm", s): n for s, n in expected.confirms.items()}},
        campaign_grants=expected.campaign_grants,
        ledger_events=events,
        audit_ok=True,
        audit_summary=f"{events} ledger events: OK",
        export_lines=events,
        mails=mails,
        email_states={**{a: "active" for a in expected.email_recipients},
                      **{a: "pending" for a in expected.email_pending}},
        states_after_get={a: "pending" for a in expected.web_form},
        campaign_confirms=expected.campaign_confirms,
    )


def failures(expected: Expectation, observed: Observation) -> dict[str, str]:
    return {check.label: check.detail for check in verify(expected, observed) if not check.ok}


def test_verify_agrees_with_a_faithful_observation(expected, settings):
    checks = verify(expected, faithful(expected, settings))
    assert [c.label for c in checks if not c.ok] == []
    assert len(checks) == 19


def test_verify_catches_a_delivery_the_emulator_never_received(expected, settings):
    # The database says 3 LINE deliveries were sent, but one LINE user's copy never reached the emulator.
    observed = faithful(expected, settings)
    lost = sorted(expected.recipients["line"])[0]
    copies = {c: dict(observed.issue_copies[c]) for c in CHANNELS}
    del copies["line"][lost]
    failed = failures(expected, replace(observed, issue_copies=copies))
    assert len(failed) == 3, failed
    exactly_once = next(d for label, d in failed.items() if "exactly once" in label)
    assert f"missing: line:{lost}" in exactly_once
    assert any("recipients seen" in label for label in failed)
    assert any("line sent" in detail and "≠ received" in detail for detail in failed.values())


@pytest.mark.parametrize("tamper, what", [
    ("duplicate", "exactly once"),
    ("leak", "who left"),
    ("stranger", "anywhere else"),
    ("multicast", "multicast requests"),
    ("audit", "audit OK"),
    ("export", "one line per ledger event"),
    ("campaign", "ledger matches the script"),
])
def test_verify_catches_each_kind_of_chat_disagreement(expected, settings, tamper, what):
    observed = faithful(expected, settings)
    copies = {c: dict(observed.issue_copies[c]) for c in CHANNELS}
    if tamper == "duplicate":
        copies["telegram"][sorted(expected.recipients["telegram"])[0]] = 2
        observed = replace(observed, issue_copies=copies)
    elif tamper == "leak":
        copies["line"][sorted(expected.excluded["line"])[0]] = 1
        observed = replace(observed, issue_copies=copies)
    elif tamper == "stranger":
        copies["telegram"]["999"] = 1
        observed = replace(observed, issue_copies=copies)
    elif tamper == "multicast":
        observed = replace(observed, line_multicast_requests=observed.line_multicast_requests + 1)
    elif tamper == "audit":
        observed = replace(observed, audit_ok=False, audit_summary="VIOLATIONS FOUND")
    elif tamper == "export":
        observed = replace(observed, export_lines=observed.ledger_events - 1)
    else:
        observed = replace(observed, campaign_grants=observed.campaign_grants - 1)
    failed = failures(expected, observed)
    assert failed and any(what in label for label in failed), failed


# ---- email: tampered sink records ---------------------------------------------------------------------------------

def without_in_part(received: ReceivedMail, subtype: str, text: str) -> ReceivedMail:
    """``received`` with ``text`` removed from its ``text/<subtype>`` part only (the rest of the bytes as sent)."""
    message = email.message_from_bytes(received.data, policy=email.policy.default)
    part = message.get_body((subtype,))
    content = part.get_content()
    assert text in content
    part.set_content(content.replace(text, ""), subtype=subtype, charset="utf-8", cte="base64")
    return ReceivedMail(received.recipients, message.as_bytes(policy=email.policy.SMTP))


def test_verify_fails_when_one_email_copy_is_missing(expected, settings):
    observed = faithful(expected, settings)
    lost = sorted(expected.email_recipients)[0]
    mails = tuple(m for m in observed.mails if not (lost in m.recipients and b"List-Unsubscribe-Post" in m.data))
    assert len(mails) == len(observed.mails) - 1
    failed = failures(expected, replace(observed, mails=mails))
    assert len(failed) == 2, failed  # the copy itself, and the delivery row that says it was sent
    once = next(d for label, d in failed.items() if "each confirmed email address" in label)
    assert once == f"{len(expected.email_recipients) - 1}/{len(expected.email_recipients)}; missing: {lost}"
    assert any(f"email sent {len(expected.email_recipients)} ≠ received" in d for d in failed.values())


@pytest.mark.parametrize("subtype, item, shows", [
    ("html", "postal", "html lacks"),
    ("plain", "contact", "text lacks"),
    ("html", "配信停止", "html lacks 配信停止 + URL"),
    ("plain", "sender", "text lacks"),
])
def test_verify_fails_when_a_copy_lacks_a_display_item_in_one_part(expected, settings, subtype, item, shows):
    observed = faithful(expected, settings)
    victim = sorted(expected.email_recipients)[-1]
    text = {"postal": settings.sender_postal_address, "contact": settings.sender_contact,
            "sender": settings.sender_name}.get(item, item)
    mails = tuple(without_in_part(m, subtype, text) if victim in m.recipients and b"List-Unsubscribe" in m.data
                  else m for m in observed.mails)
    failed = failures(expected, replace(observed, mails=mails))
    assert list(failed) == ["表示義務事項がテキストとHTMLの両方に / display items in both parts (特定電子メール法 Art. 4)"]
    [detail] = failed.values()
    assert detail.startswith(f"{victim} {shows}")
    if item != "配信停止":
        assert text in detail


@pytest.mark.parametrize("tamper, what", [
    ("pending_got_issue", "only its confirmation"),
    ("no_confirmation", "one confirmation mail per address"),
    ("stranger", "no email copy went anywhere else"),
    ("doubled", "each confirmed email address"),
    ("subject", "Subject = the title"),
    ("one_click", "List-Unsubscribe-Post"),
    ("remote_http", "List-Unsubscribe-Post"),
    ("get_confirmed", "(GET) changed nothing"),
    ("state", "email endpoints match the script"),
    ("confirm_events", "ledger matches the script"),
])
def test_verify_catches_each_kind_of_email_disagreement(expected, settings, tamper, what):
    observed = faithful(expected, settings)
    confirmed = sorted(expected.email_recipients)
    pending = sorted(expected.email_pending)[0]
    mails = list(observed.mails)
    if tamper == "pending_got_issue":
        mails.append(newsletter(settings, pending))
    elif tamper == "no_confirmation":
        mails = [m for m in mails if pending not in m.recipients]
    elif tamper == "stranger":
        mails.append(newsletter(settings, "someone.else@example.com"))
    elif tamper == "doubled":
        mails.append(newsletter(settings, confirmed[0]))
    elif tamper == "subject":
        # A full-width colon: looks the same, is not the title.
        mails[-1] = newsletter(settings, confirmed[-1], title=TITLE.replace(":", "："))
    elif tamper == "one_click":
        mails = [ReceivedMail(m.recipients, m.data.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
                                                           b"")) for m in mails]
    elif tamper == "remote_http":
        mails[-1] = newsletter(settings, confirmed[-1], unsubscribe="http://example.com/unsubscribe/token")
    observed = replace(observed, mails=tuple(mails))
    if tamper == "get_confirmed":
        observed = replace(observed, states_after_get={a: "active" for a in expected.web_form})
    elif tamper == "state":
        observed = replace(observed, email_states={**observed.email_states, pending: "active"})
    elif tamper == "confirm_events":
        observed = replace(observed, consent_counts={**observed.consent_counts, ("confirm", "web"): 0})
    failed = failures(expected, observed)
    assert failed and any(what in label for label in failed), failed
    if tamper == "subject":
        detail = next(d for label, d in failed.items() if what in label)
        assert "：" in detail  # the full-width colon: "decodes to the title exactly" means exactly


def test_unsubscribe_urls_need_https_or_a_loopback_host():
    assert acceptable_unsubscribe_url("https://news.example.jp/unsubscribe/abc")
    assert acceptable_unsubscribe_url("http://127.0.0.1:8000/unsubscribe/abc")
    assert acceptable_unsubscribe_url("http://[::1]:8000/unsubscribe/abc")
    assert not acceptable_unsubscribe_url("http://news.example.jp/unsubscribe/abc")
    assert not acceptable_unsubscribe_url("https://news.example.jp/other/abc")
    assert not acceptable_unsubscribe_url("mailto:stop@example.jp")


def test_visible_text_reads_html_as_a_reader_does():
    markup = "<html><head><title>隠れた題</title><style>p{}</style></head><body><p>住所: 東京&amp;大阪</p></body></html>"
    assert visible_text(markup).strip() == "住所: 東京&大阪"


# ---- the script ---------------------------------------------------------------------------------------------------

def test_the_script_is_deterministic_and_covers_the_variants():
    plan = plan_rehearsal(30)
    assert plan == plan_rehearsal(30)
    assert plan != plan_rehearsal(30, seed=1)
    assert sum(p.channel == "telegram" for p in plan) == 15
    assert sorted(p.leaves for p in plan if p.leaves) == ["block", "withdraw", "withdraw"]
    assert [p.leave_text for p in plan if p.leaves == "withdraw" and p.channel == "line"] == ["かいじょ\u3000"]
    typed = {p.subscribe_text for p in plan}
    assert "/start seminar-2026-12" in typed and "とうろく" in typed
    assert any("\u3000" in t for t in typed) and any("\u200b" in t for t in typed)
    assert any(p.question for p in plan) and any(p.consent_text for p in plan)
    assert sum(p.curious for p in plan) == 1
    with pytest.raises(ValueError):
        plan_rehearsal(3)


@pytest.mark.parametrize("attendees, confirming, pending, web", [(4, 1, 0, 0), (5, 1, 1, 0), (10, 2, 1, 1),
                                                                 (30, 4, 1, 2), (100, 13, 1, 2)])
def test_the_script_adds_a_few_email_subscribers(attendees, confirming, pending, web):
    plan = plan_rehearsal(attendees)
    emails = [p.email for p in plan if p.email is not None]
    assert sum(e.confirms for e in emails) == confirming
    assert sum(not e.confirms for e in emails) == pending
    assert sum(e.via == "web" for e in emails) == web
    assert all(p.leaves is None for p in plan if p.email is not None)  # only people who stay add an address
    addresses = [e.address for e in emails]
    assert len(set(addresses)) == len(addresses)
    assert all(a == a.lower() and a.isascii() and a.partition("@")[2] in EMAIL_DOMAINS for a in addresses)
    assert sum(e.full_width_code for e in emails) == 1  # the code in full-width digits, once
    if attendees >= 30:
        chat_typed = [e.typed for e in emails if e.via == "chat" and e.confirms]
        assert any("＠" in t and "\u3000" in t for t in chat_typed)  # ｔａｒｏ＠ｅｘａｍｐｌｅ．ｊｐ after U+3000
        assert any(t.endswith("\u3000") for t in chat_typed)


def test_the_demo_never_wipes_a_directory_it_did_not_make(tmp_path, capsys):
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.md").write_text("大事な原稿")
    with pytest.raises(DemoDirectoryError):
        fresh_directory(precious)
    assert run_demo(precious, attendees=4) == 2
    assert (precious / "thesis.md").read_text() == "大事な原稿"
    assert "error:" in capsys.readouterr().out


# ---- the author's desk checks, fed faithful and tampered observations ----------------------------------------------

def test_the_desk_checks_catch_each_kind_of_disagreement():
    from datetime import UTC, datetime, timedelta

    from bots.demo.desk_checks import (
        SCHEDULED_TITLE,
        TOPIC_TITLE,
        DeskObservation,
        desk_expectation,
        plan_desk,
        verify_desk,
    )

    plan = plan_rehearsal(10)
    desk = plan_desk(plan)
    expected = desk_expectation(plan, desk)
    at = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)

    def observed(**changes) -> DeskObservation:
        faithful = DeskObservation(
            topic_copies={c: dict.fromkeys(v, 1) for c, v in expected.topic_recipients.items()},
            scheduled_copies={c: dict.fromkeys(v, 1) for c, v in expected.all_recipients.items()},
            scheduled_at=at, started_at=at + timedelta(seconds=1),
            final_reports={TOPIC_TITLE: 1, SCHEDULED_TITLE: 1}, notices=1, answers={expected.answered: 1})
        return replace(faithful, **changes)

    assert [c.ok for c in verify_desk(expected, observed())] == [True, True, True]
    it_fan = desk.it_fans[0]
    leaked = {c: dict(v) for c, v in observed().topic_copies.items()}
    leaked[it_fan.channel][it_fan.address] = 1
    assert [c.ok for c in verify_desk(expected, observed(topic_copies=leaked))] == [False, True, True]
    early = observed(started_at=at - timedelta(seconds=1))
    assert [c.ok for c in verify_desk(expected, early)] == [True, False, True]
    twice = {c: {a: 2 for a in v} for c, v in observed().scheduled_copies.items()}
    assert not verify_desk(expected, observed(scheduled_copies=twice))[1].ok
    assert not verify_desk(expected, observed(answers={}))[2].ok
    assert not verify_desk(expected, observed(notices=0))[2].ok
