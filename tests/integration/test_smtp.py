"""The SMTP sender (bots.email) against a real aiosmtpd server on 127.0.0.1 (bots.sandbox.smtp_sink).

Every message is parsed back from the bytes the server received. TLS uses a self-signed certificate made for the
test with the ``openssl`` command (the ``cryptography`` package is not installed here); clients trust it through
their ``tls_context``.
"""

from __future__ import annotations

import asyncio
import email.policy
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from bots.email import SmtpConfig, SmtpSender, classify_reply, enhanced_status
from bots.sandbox.smtp_sink import SmtpSink
from core.channels import OutboundMessage, OutcomeKind
from core.settings import ConfigError
from tests.conftest import make_settings

FROM = "news@otayori.example"
HARD = "①㈱髙😀ｶﾞ"
SUBJECT = f"【お便り】{HARD} 12月号:IT活用のヒントとイベントのご案内(長い件名の折り返しも確かめます)"
BODY_TEXT = f"こんにちは、山田です。\n{HARD}\n全角スペース:「\u3000」\n.先頭のドットも無事に届きます\n"


# ---- fixtures ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost and its key (PEM), valid for one day."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key


@pytest.fixture
def server_tls(cert_files: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*cert_files)
    return context


@pytest.fixture
def client_tls(cert_files: tuple[Path, Path]) -> ssl.SSLContext:
    """Verifies the server certificate (and its name) against the test's own certificate only."""
    return ssl.create_default_context(cafile=str(cert_files[0]))


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    server = SmtpSink()
    try:
        yield server
    finally:
        await server.stop()


def plain_message(to: str, n: int = 0) -> bytes:
    msg = EmailMessage()
    msg["From"] = FROM
    msg["To"] = to
    msg["Subject"] = f"test {n}"
    msg.set_content(f"message {n}\n")
    return msg.as_bytes(policy=email.policy.SMTP)


def japanese_message(to: str, endpoint_id: int) -> bytes:
    """multipart/alternative, UTF-8, built with the stdlib only (core.mail is not used here on purpose)."""
    msg = EmailMessage()
    msg["From"] = f"山田IT事務所 <{FROM}>"
    msg["To"] = to
    msg["Subject"] = SUBJECT
    msg["X-Endpoint"] = str(endpoint_id)
    msg.set_content(BODY_TEXT, charset="utf-8")
    msg.add_alternative(f"<p>{HARD}</p><p>こんにちは</p>", subtype="html", charset="utf-8")
    msg.set_boundary("otayori-test-boundary")  # fixed, so the bytes can be compared
    return msg.as_bytes(policy=email.policy.SMTP)


def make_sender(
    host: str, port: int, security: str = "none", *, connections: int = 2, rate: float = 1000.0, **config: object
) -> SmtpSender:
    cfg = SmtpConfig(host=host, port=port, security=security, **config)  # type: ignore[arg-type]
    compose = lambda message, address, endpoint_id: japanese_message(address, endpoint_id)  # noqa: E731
    return SmtpSender(cfg, FROM, compose, rate_per_second=rate, connections=connections)


def outbound(address: str, endpoint_id: int = 1) -> OutboundMessage:
    return OutboundMessage(issue_id=7, parts=(), recipients=(address,), endpoint_ids=(endpoint_id,), title="t")


# ---- security modes ------------------------------------------------------------------------------------------------


async def test_none_never_upgrades_although_starttls_is_offered(sink: SmtpSink, server_tls, client_tls) -> None:
    host, port = await sink.start(tls_context=server_tls)  # offers STARTTLS
    plain = make_sender(host, port, "none", tls_context=client_tls)
    upgraded = make_sender(host, port, "starttls", tls_context=client_tls)
    try:
        assert (await plain.send_raw("a@example.jp", plain_message("a@example.jp"))).kind is OutcomeKind.SENT
        # The same server does upgrade a client that asks: so the first session stayed plain by our choice.
        assert (await upgraded.send_raw("b@example.jp", plain_message("b@example.jp"))).kind is OutcomeKind.SENT
    finally:
        await plain.close()
        await upgraded.close()
    assert [m.tls for m in sink.messages] == [False, True]


async def test_starttls_upgrades_exactly_once_and_reuses_the_session(sink: SmtpSink, server_tls, client_tls) -> None:
    host, port = await sink.start(tls_context=server_tls)
    sender = make_sender(host, port, "starttls", tls_context=client_tls, connections=1)
    try:
        outcomes = [await sender.send_raw(f"u{i}@example.jp", plain_message(f"u{i}@example.jp", i)) for i in range(3)]
    finally:
        await sender.close()
    assert [o.kind for o in outcomes] == [OutcomeKind.SENT] * 3
    assert all(m.tls for m in sink.messages) and len(sink.messages) == 3
    assert sink.sessions == 1  # a second STARTTLS on the session would have failed ("already using TLS")


async def test_implicit_tls(sink: SmtpSink, server_tls, client_tls) -> None:
    host, port = await sink.start(tls_context=server_tls, implicit_tls=True)
    sender = make_sender(host, port, "tls", tls_context=client_tls)
    try:
        outcome = await sender.send_raw("a@example.jp", plain_message("a@example.jp"))
    finally:
        await sender.close()
    assert outcome.kind is OutcomeKind.SENT
    assert sink.messages[0].tls is True


async def test_starttls_required_but_not_offered_is_channel_wide(sink: SmtpSink, client_tls) -> None:
    host, port = await sink.start()  # no TLS at all
    sender = make_sender(host, port, "starttls", tls_context=client_tls)
    outcome = await sender.send_raw("a@example.jp", plain_message("a@example.jp"))
    await sender.close()
    assert outcome.kind is OutcomeKind.CHANNEL_WIDE
    assert "STARTTLS" in (outcome.reason or "")
    assert sink.messages == []


async def test_untrusted_certificate_is_channel_wide(sink: SmtpSink, server_tls) -> None:
    host, port = await sink.start(tls_context=server_tls)
    sender = make_sender(host, port, "starttls", tls_context=ssl.create_default_context())  # system CAs only
    outcome = await sender.send_raw("a@example.jp", plain_message("a@example.jp"))
    await sender.close()
    assert outcome.kind is OutcomeKind.CHANNEL_WIDE
    assert "certificate" in (outcome.reason or "").lower()
    assert sink.messages == []


async def test_authentication(sink: SmtpSink, server_tls, client_tls) -> None:
    host, port = await sink.start(tls_context=server_tls, require_auth=("mailer", "パスワード-1"))
    good = make_sender(host, port, "starttls", tls_context=client_tls, username="mailer", password="パスワード-1")
    wrong = make_sender(host, port, "starttls", tls_context=client_tls, username="mailer", password="nope")
    anonymous = make_sender(host, port, "starttls", tls_context=client_tls)
    try:
        sent = await good.send_raw("a@example.jp", plain_message("a@example.jp"))
        refused = await wrong.send_raw("b@example.jp", plain_message("b@example.jp"))
        required = await anonymous.send_raw("c@example.jp", plain_message("c@example.jp"))
    finally:
        for sender in (good, wrong, anonymous):
            await sender.close()
    assert sent.kind is OutcomeKind.SENT
    assert refused.kind is OutcomeKind.CHANNEL_WIDE and "535" in (refused.reason or "")
    assert required.kind is OutcomeKind.CHANNEL_WIDE and "530" in (required.reason or "")
    assert [m.rcpt_tos for m in sink.messages] == [("a@example.jp",)]
    assert sink.auth_failures >= 1


async def test_connection_refused_is_channel_wide() -> None:
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sender = make_sender("127.0.0.1", port, "none")
    outcome = await sender.send_raw("a@example.jp", plain_message("a@example.jp"))
    await sender.close()
    assert outcome.kind is OutcomeKind.CHANNEL_WIDE
    assert f"127.0.0.1:{port}" in (outcome.reason or "")


# ---- reuse, rate, bytes --------------------------------------------------------------------------------------------


async def test_twenty_messages_use_at_most_the_pool_size(sink: SmtpSink) -> None:
    host, port = await sink.start()
    sender = make_sender(host, port, "none", connections=2)
    try:
        results = await asyncio.gather(*(sender.send(outbound(f"r{i}@example.jp", i)) for i in range(20)))
    finally:
        await sender.close()
    assert [r.overall.kind for r in results] == [OutcomeKind.SENT] * 20
    assert len(sink.messages) == 20
    assert sink.sessions <= 2 and sender.sessions_opened <= 2
    assert {m.session_id for m in sink.messages} <= {1, 2}
    assert sorted(int(sink.parsed(i)["X-Endpoint"]) for i in range(20)) == list(range(20))


async def test_rate_limit_spaces_messages(sink: SmtpSink) -> None:
    host, port = await sink.start()
    sender = make_sender(host, port, "none", rate=20.0)  # AsyncLimiter(20, 1): a burst of 20, then 20/s
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        await asyncio.gather(*(sender.send_raw(f"r{i}@example.jp", plain_message("x", i)) for i in range(30)))
        elapsed = loop.time() - started
    finally:
        await sender.close()
    assert len(sink.messages) == 30
    assert elapsed >= 0.4  # the 10 past the burst need about 0.5 s at 20/s

    slow = make_sender(host, port, "none", rate=0.5)  # below 1/s: aiolimiter cannot hold a bucket of 0.5
    try:
        assert (await slow.send_raw("slow@example.jp", plain_message("x"))).kind is OutcomeKind.SENT
    finally:
        await slow.close()


async def test_japanese_multipart_arrives_byte_for_byte(sink: SmtpSink) -> None:
    host, port = await sink.start()
    sender = make_sender(host, port, "none")
    try:
        result = await sender.send(outbound("yamada@example.jp", endpoint_id=42))
    finally:
        await sender.close()
    assert result.overall.kind is OutcomeKind.SENT
    received = sink.messages[0]
    assert received.envelope_from == FROM and received.rcpt_tos == ("yamada@example.jp",)
    assert received.data == japanese_message("yamada@example.jp", 42)
    parsed = received.parsed()
    assert parsed["Subject"] == SUBJECT
    assert parsed["From"].addresses[0].display_name == "山田IT事務所"
    # 8bit parts keep the wire's CRLF line ends when decoded; the text itself is intact.
    assert parsed.get_body(("plain",)).get_content().replace("\r\n", "\n") == BODY_TEXT
    assert "BODY=8BITMIME" in received.mail_options  # 8-bit content declared (RFC 6152)
    assert HARD in parsed.get_body(("html",)).get_content()


async def test_idn_domain_is_sent_as_idna_and_utf8_local_part_needs_smtputf8(sink: SmtpSink) -> None:
    host, port = await sink.start()
    sender = make_sender(host, port, "none")
    try:
        idn = await sender.send_raw("info@例え.jp", plain_message("x"))
        local = await sender.send_raw("山田@example.jp", plain_message("x"))
        after = await sender.send_raw("ok@example.jp", plain_message("x"))
    finally:
        await sender.close()
    assert idn.kind is OutcomeKind.SENT
    assert sink.messages[0].rcpt_tos == ("info@xn--r8jz45g.jp",)
    assert local.kind is OutcomeKind.REJECTED and "SMTPUTF8" in (local.reason or "")
    assert after.kind is OutcomeKind.SENT

    utf8 = SmtpSink()
    host, port = await utf8.start(smtputf8=True)
    sender = make_sender(host, port, "none")
    try:
        outcome = await sender.send_raw("山田@example.jp", plain_message("x"))
    finally:
        await sender.close()
        await utf8.stop()
    assert outcome.kind is OutcomeKind.SENT
    assert utf8.messages[0].rcpt_tos == ("山田@example.jp",)


# ---- faults --------------------------------------------------------------------------------------------------------


async def test_drop_at_rcpt_after_three_is_temporary_then_reconnects(sink: SmtpSink) -> None:
    host, port = await sink.start()
    sink.fail("rcpt", drop=True, after=3, times=1)
    sender = make_sender(host, port, "none", connections=1)
    try:
        kinds = [(await sender.send_raw(f"r{i}@example.jp", plain_message("x", i))).kind for i in range(5)]
    finally:
        await sender.close()
    assert kinds == [OutcomeKind.SENT] * 3 + [OutcomeKind.TEMPORARY, OutcomeKind.SENT]
    assert [m.rcpt_tos[0] for m in sink.messages] == ["r0@example.jp", "r1@example.jp", "r2@example.jp",
                                                       "r4@example.jp"]
    assert sink.unanswered == []  # nothing of the 4th reached the server: a retry sends it once
    assert [m.session_id for m in sink.messages] == [1, 1, 1, 2]


async def test_drop_inside_data_after_three_is_uncertain(sink: SmtpSink) -> None:
    host, port = await sink.start()
    sink.fail("data", drop=True, after=3, times=1)
    sender = make_sender(host, port, "none", connections=1)
    try:
        kinds = [(await sender.send_raw(f"r{i}@example.jp", plain_message("x", i))).kind for i in range(5)]
    finally:
        await sender.close()
    assert kinds == [OutcomeKind.SENT] * 3 + [OutcomeKind.UNCERTAIN, OutcomeKind.SENT]
    # The server had the whole 4th message when it dropped: exactly why it must not be re-sent blindly.
    assert [m.rcpt_tos[0] for m in sink.unanswered] == ["r3@example.jp"]
    assert len(sink.messages) == 4 and sink.sessions == 2


async def test_timeouts_before_and_inside_data(sink: SmtpSink) -> None:
    host, port = await sink.start()
    sink.fail("rcpt", stall=2.0, recipient="slow-rcpt@example.jp")
    sink.fail("data", stall=2.0, recipient="slow-data@example.jp")
    sender = make_sender(host, port, "none", connections=1, timeout=0.3)
    try:
        before = await sender.send_raw("slow-rcpt@example.jp", plain_message("x"))
        inside = await sender.send_raw("slow-data@example.jp", plain_message("x"))
        fine = await sender.send_raw("ok@example.jp", plain_message("x"))
    finally:
        await sender.close()
    assert before.kind is OutcomeKind.TEMPORARY
    assert inside.kind is OutcomeKind.UNCERTAIN
    assert fine.kind is OutcomeKind.SENT
    assert [m.rcpt_tos for m in sink.messages] == [("ok@example.jp",)]


@pytest.mark.parametrize(
    ("stage", "reply", "kind"),
    [
        ("rcpt", "421 4.3.2 Service shutting down", OutcomeKind.TEMPORARY),
        ("rcpt", "451 4.3.0 Temporary local problem", OutcomeKind.TEMPORARY),
        ("rcpt", "454 4.7.1 Relay access temporarily denied", OutcomeKind.TEMPORARY),
        ("rcpt", "550 5.1.1 <to@example.jp>: Recipient address rejected: User unknown", OutcomeKind.PERMANENT),
        ("rcpt", "556 5.1.10 Recipient address has null MX", OutcomeKind.PERMANENT),
        ("rcpt", "553 5.1.3 Bad recipient address syntax", OutcomeKind.PERMANENT),
        ("rcpt", "551 User not local", OutcomeKind.PERMANENT),
        ("rcpt", "550 5.4.5 Daily user sending quota exceeded", OutcomeKind.CHANNEL_WIDE),
        ("rcpt", "554 5.7.1 <to@example.jp>: Relay access denied", OutcomeKind.CHANNEL_WIDE),
        ("rcpt", "550 Relaying denied", OutcomeKind.CHANNEL_WIDE),
        ("mail", "550 5.7.1 Sender address rejected", OutcomeKind.CHANNEL_WIDE),
        ("mail", "421 4.7.0 Too many connections", OutcomeKind.TEMPORARY),
        ("data", "451 4.7.1 Please try again later", OutcomeKind.TEMPORARY),
        ("data", "550 5.4.5 Quota exceeded", OutcomeKind.CHANNEL_WIDE),
        ("data", "552 5.3.4 Message size exceeds fixed limit", OutcomeKind.REJECTED),
        ("data", "554 5.6.0 Message content rejected", OutcomeKind.REJECTED),
        ("data", "550 5.7.1 Message rejected as spam", OutcomeKind.CHANNEL_WIDE),
    ],
)
async def test_injected_reply(sink: SmtpSink, stage: str, reply: str, kind: OutcomeKind) -> None:
    host, port = await sink.start()
    sink.fail(stage, reply, recipient="to@example.jp" if stage != "mail" else None, times=1)  # type: ignore[arg-type]
    sender = make_sender(host, port, "none", connections=1)
    try:
        outcome = await sender.send_raw("to@example.jp", plain_message("to@example.jp"))
        # The session (or a new one after 421) carries the next message: the refused one left no half transaction.
        next_outcome = await sender.send_raw("next@example.jp", plain_message("next@example.jp"))
    finally:
        await sender.close()
    assert outcome.kind is kind, outcome
    assert reply[:3] in (outcome.reason or "")
    assert "to@example.jp" not in (outcome.reason or "")  # the address is redacted from stored reasons
    assert next_outcome.kind is OutcomeKind.SENT
    assert [m.rcpt_tos for m in sink.messages] == [("next@example.jp",)]
    assert sink.sessions == (2 if reply.startswith("421") else 1)


async def test_batch_continues_past_an_unknown_user(sink: SmtpSink) -> None:
    host, port = await sink.start()
    sink.fail("rcpt", "550 5.1.1 User unknown", recipient="gone@example.jp")
    sender = make_sender(host, port, "none", connections=2)
    addresses = ["a@example.jp", "b@example.jp", "gone@example.jp", "c@example.jp", "d@example.jp", "e@example.jp"]
    try:
        results = await asyncio.gather(*(sender.send(outbound(a, i)) for i, a in enumerate(addresses)))
    finally:
        await sender.close()
    kinds = {a: r.outcome_for(a).kind for a, r in zip(addresses, results, strict=True)}
    assert kinds.pop("gone@example.jp") is OutcomeKind.PERMANENT
    assert set(kinds.values()) == {OutcomeKind.SENT}
    assert sorted(m.rcpt_tos[0] for m in sink.messages) == sorted(kinds)
    assert sink.sessions <= 2


async def test_a_session_the_relay_closed_while_idle_is_replaced(sink: SmtpSink) -> None:
    host, port = await sink.start()
    sender = make_sender(host, port, "none", connections=1)
    try:
        first = await sender.send_raw("a@example.jp", plain_message("a"))
        assert sink.drop_connections() == 1
        second = await sender.send_raw("b@example.jp", plain_message("b"))
    finally:
        await sender.close()
    assert (first.kind, second.kind) == (OutcomeKind.SENT, OutcomeKind.SENT)
    assert [m.session_id for m in sink.messages] == [1, 2]


async def test_close_quits_pooled_sessions(sink: SmtpSink) -> None:
    host, port = await sink.start()
    sender = make_sender(host, port, "none", connections=2)
    await asyncio.gather(*(sender.send_raw(f"r{i}@example.jp", plain_message("x")) for i in range(4)))
    assert sink.open_sessions == 2
    await sender.close()
    for _ in range(100):  # the server notices the QUITs within a few loop turns
        if sink.open_sessions == 0:
            break
        await asyncio.sleep(0.01)
    assert sink.open_sessions == 0


# ---- pure parts ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message", "phase", "kind"),
    [
        (550, "5.1.1 unknown", "rcpt", OutcomeKind.PERMANENT),
        (550, "5.1.1 unknown", "mail", OutcomeKind.CHANNEL_WIDE),
        (553, "5.1.8 sender domain does not exist", "rcpt", OutcomeKind.CHANNEL_WIDE),
        (552, "5.2.2 mailbox full", "rcpt", OutcomeKind.REJECTED),
        (550, "5.2.1 mailbox disabled", "rcpt", OutcomeKind.PERMANENT),
        (535, "5.7.8 bad credentials", "connect", OutcomeKind.CHANNEL_WIDE),
        (554, "no SMTP service here", "connect", OutcomeKind.CHANNEL_WIDE),
        (421, "too busy", "connect", OutcomeKind.TEMPORARY),
        (550, "mailbox unavailable", "rcpt", OutcomeKind.PERMANENT),
        (550, "mailbox unavailable", "data", OutcomeKind.REJECTED),
        (554, "5.0.0 transaction failed", "data", OutcomeKind.REJECTED),
        (-1, "Malformed SMTP response line", "data", OutcomeKind.UNCERTAIN),
        (-1, "Malformed SMTP response line", "rcpt", OutcomeKind.TEMPORARY),
    ],
)
def test_classify_reply(code: int, message: str, phase: str, kind: OutcomeKind) -> None:
    assert classify_reply(code, message, phase) is kind  # type: ignore[arg-type]


def test_enhanced_status() -> None:
    assert enhanced_status("5.1.10 null MX") == (5, 1, 10)
    assert enhanced_status("2.0.0 OK") == (2, 0, 0)
    assert enhanced_status("5.1 short") is None
    assert enhanced_status("Requested action not taken") is None


def test_config_from_settings(tmp_path: Path) -> None:
    ports = {
        security: SmtpConfig.from_settings(make_settings(tmp_path, smtp_host="smtp.example.jp", smtp_security=security)).port
        for security in ("none", "starttls", "tls")
    }
    assert ports == {"none": 25, "starttls": 587, "tls": 465}
    config = SmtpConfig.from_settings(make_settings(
        tmp_path, smtp_host="smtp.example.jp", smtp_port=2525, smtp_security="tls", smtp_username="u", smtp_password="p"
    ))
    assert (config.port, config.security, config.username, config.password) == (2525, "tls", "u", "p")
    with pytest.raises(ConfigError, match="OTAYORI_SMTP_HOST"):
        SmtpConfig.from_settings(make_settings(tmp_path))
    with pytest.raises(ValueError, match="security"):
        SmtpConfig(host="h", port=25, security="ssl")  # type: ignore[arg-type]


# ---- standalone sink -----------------------------------------------------------------------------------------------


async def test_standalone_sink_prints_each_message() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.sandbox.smtp_sink", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        banner = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert "listening on 127.0.0.1:" in banner
        port = int(banner.split("127.0.0.1:")[1].split()[0])
        sender = make_sender("127.0.0.1", port, "none")
        try:
            assert (await sender.send(outbound("yamada@example.jp", 3))).overall.kind is OutcomeKind.SENT
        finally:
            await sender.close()
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        assert "to=yamada@example.jp" in line and HARD in line
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_standalone_sink_refuses_a_public_address() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots.sandbox.smtp_sink", "--host", "0.0.0.0", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2 and b"loopback" in err
