"""``otayori demo``: the whole rehearsal passes, and its checks fail when the emulators' records disagree.

``run_demo`` is synchronous (it migrates, then ``asyncio.run``), so its test is a plain ``def``: no event loop may be
running in the thread that calls it.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from bots.demo import (
    CHANNELS,
    DemoDirectoryError,
    Expectation,
    Observation,
    expectation_for,
    fresh_directory,
    plan_rehearsal,
    run_demo,
    verify,
)

TITLE = "お便り 2026年12月号"


def test_demo_rehearses_a_seminar_and_every_check_agrees(tmp_path, capsys):
    directory = tmp_path / "demo"
    (directory).mkdir()
    (directory / "otayori.sqlite3").write_text("left over from an earlier run")  # wiped, not reused

    code = run_demo(directory, attendees=10)

    out = capsys.readouterr().out
    assert code == 0, out
    assert "10 attendees (Telegram 5, LINE 5)" in out
    assert "each active subscriber got the issue exactly once: 7/7" in out
    assert "nothing reached the 3 who left: 0 copies to 3 people" in out
    assert "10−3 = 7 expected, 7 seen" in out
    assert "1 sent, expected ⌈" in out  # one LINE multicast
    assert "grant 10" in out and "withdraw/blocked 1, withdraw/chat 2" in out
    assert "audit OK: 13 ledger events, 7 attempted deliveries checked: OK" in out
    assert "13 lines, 13 events" in out
    assert "✗" not in out and out.count("✓") == 10
    assert "すべて一致 / all checks agree" in out
    assert f"OTAYORI_DATABASE_URL=sqlite+aiosqlite:///{directory}/otayori.sqlite3 otayori consents export" in out
    assert (directory / "otayori.sqlite3").stat().st_size > 10_000  # a real, migrated database now


def faithful(expected: Expectation, ledger_events: int = 13) -> Observation:
    """An observation in which everything happened exactly as the script says."""
    return Observation(
        issue_copies={c: {address: 1 for address in expected.recipients[c]} for c in CHANNELS},
        line_multicast_requests=math.ceil(len(expected.recipients["line"]) / 500),
        sent={c: len(expected.recipients[c]) for c in CHANNELS},
        active={c: len(expected.recipients[c]) for c in CHANNELS},
        consent_counts={("grant", "chat"): expected.grants,
                        **{("withdraw", s): n for s, n in expected.withdrawals.items()}},
        campaign_grants=expected.campaign_grants,
        ledger_events=ledger_events,
        audit_ok=True,
        audit_summary="13 ledger events, 7 attempted deliveries checked: OK",
        export_lines=ledger_events,
    )


def failed_labels(expected: Expectation, observed: Observation) -> list[str]:
    return [check.label for check in verify(expected, observed) if not check.ok]


@pytest.fixture
def expected() -> Expectation:
    return expectation_for(plan_rehearsal(10), TITLE)


def test_verify_agrees_with_a_faithful_observation(expected):
    assert failed_labels(expected, faithful(expected)) == []


def test_verify_catches_a_delivery_the_emulator_never_received(expected):
    # The database says 5 LINE deliveries were sent, but one LINE user's copy never reached the emulator.
    observed = faithful(expected)
    lost = sorted(expected.recipients["line"])[0]
    copies = {c: dict(observed.issue_copies[c]) for c in CHANNELS}
    del copies["line"][lost]
    checks = verify(expected, replace(observed, issue_copies=copies))
    failed = {check.label: check.detail for check in checks if not check.ok}
    assert len(failed) == 3, failed
    exactly_once = next(d for label, d in failed.items() if "exactly once" in label)
    assert f"missing: line:{lost}" in exactly_once
    assert any("recipients seen" in label for label in failed)
    assert any("line sent" in detail and "≠ seen" in detail for detail in failed.values())


@pytest.mark.parametrize("tamper, what", [
    ("duplicate", "exactly once"),
    ("leak", "who left"),
    ("stranger", "anywhere else"),
    ("multicast", "multicast requests"),
    ("audit", "audit OK"),
    ("export", "one line per ledger event"),
    ("campaign", "ledger matches the script"),
])
def test_verify_catches_each_kind_of_disagreement(expected, tamper, what):
    observed = faithful(expected)
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
    failed = failed_labels(expected, observed)
    assert failed and any(what in label for label in failed), failed


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


def test_the_demo_never_wipes_a_directory_it_did_not_make(tmp_path, capsys):
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.md").write_text("大事な原稿")
    with pytest.raises(DemoDirectoryError):
        fresh_directory(precious)
    assert run_demo(precious, attendees=4) == 2
    assert (precious / "thesis.md").read_text() == "大事な原稿"
    assert "error:" in capsys.readouterr().out
