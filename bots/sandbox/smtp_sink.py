"""An SMTP sink on loopback: a real aiosmtpd server that records what it receives and can inject faults.

Used by the email tests, the demo and the rehearsal sandbox in place of a mail relay. It runs aiosmtpd's
:class:`aiosmtpd.smtp.SMTP` protocol directly on the *current* event loop with ``loop.create_server`` (no
``Controller`` thread), so tests, the demo and the sink share one loop and the recorded lists need no locking.

Modes (``start``): plain; STARTTLS offered (``tls_context`` given); implicit TLS (``tls_context`` and
``implicit_tls=True``, the port-465 style); AUTH required (``require_auth=(user, password)``; after STARTTLS when
STARTTLS is offered, otherwise in the clear, because this is a loopback test server). Each accepted message is a :class:`ReceivedMessage` in
``sink.messages``: the envelope, the raw bytes exactly as received (dot-unstuffed, CRLF line ends), whether that
SMTP session was TLS, and the session (TCP connection) number. ``sink.sessions`` counts TCP connections accepted.

Faults (:meth:`SmtpSink.fail`) are answered by the server's own handler hooks at MAIL, RCPT or the end of DATA: a
reply such as ``"550 5.1.1 <a@example.jp>: unknown user"`` (a ``421`` reply also closes the connection, as RFC 5321
4.2 says a server does), a dropped connection without reply (``drop=True``; at ``"data"`` the content has arrived in
full, so the client cannot know the fate of the message — such a message goes to ``sink.unanswered``, not
``messages``), or a stall before answering (``stall=seconds``) to exercise client time-outs.

Standalone: ``python -m bots.sandbox.smtp_sink --port 2525`` (loopback only) prints one line per received message.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.message
import email.policy
import logging
import ssl
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, TLSSetupException

from bots.sandbox.server import is_loopback_host

log = logging.getLogger(__name__)

SINK_HOSTNAME = "otayori-sink.localhost"
#: How long a dropping handler waits for aiosmtpd to notice the closed connection (it cancels the handler at once;
#: the bound only keeps every wait finite).
_DROP_WAIT_SECONDS = 5.0

Stage = Literal["mail", "rcpt", "data"]


@dataclass(frozen=True)
class ReceivedMessage:
    """One message the sink received.

    ``envelope_from``: the MAIL FROM address; ``rcpt_tos``: the accepted RCPT TO addresses in order; ``data``: the
    message bytes as received (after dot-unstuffing, CRLF line ends, without the final ``.``); ``tls``: the SMTP
    session was encrypted (STARTTLS or implicit TLS) when the content arrived; ``session_id``: 1-based number of the
    TCP connection that carried it; ``mail_options``: the MAIL FROM parameters, upper-cased (``BODY=8BITMIME``...).
    """

    envelope_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    tls: bool
    session_id: int
    mail_options: tuple[str, ...] = ()

    def parsed(self) -> email.message.EmailMessage:
        """The message parsed with ``email.policy.default`` (headers decoded, ``get_body()`` available)."""
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]


@dataclass
class Fault:
    """A fault the sink's handler injects (see :meth:`SmtpSink.fail`). ``fired`` counts how often it applied."""

    stage: Stage
    reply: str | None = None
    drop: bool = False
    stall: float | None = None
    recipient: str | None = None
    after: int = 0
    times: int | None = None
    fired: int = 0

    def applies(self, stage: Stage, recipients: tuple[str, ...], accepted: int) -> bool:
        if stage != self.stage or accepted < self.after:
            return False
        if self.times is not None and self.fired >= self.times:
            return False
        if self.recipient is not None and self.recipient.lower() not in {r.lower() for r in recipients}:
            return False
        return True


class _SinkSMTP(SMTP):
    """aiosmtpd's protocol plus the number of the TCP connection it serves (for ``ReceivedMessage.session_id``)."""

    session_id: int = 0
    on_lost: Callable[[_SinkSMTP], None] | None = None

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        if self.on_lost is not None:
            self.on_lost(self)


class SmtpSink:
    """An aiosmtpd server on 127.0.0.1 that records messages and injects faults; see the module docstring.

    ``on_message``: called with each accepted :class:`ReceivedMessage` (the standalone mode prints them).
    Attributes: ``messages`` (accepted, in order), ``unanswered`` (content received, connection dropped before the
    reply, or still waiting in a stall), ``faults``, ``sessions`` (TCP connections accepted so far), ``auth_failures``.
    """

    def __init__(self, *, on_message: Callable[[ReceivedMessage], None] | None = None) -> None:
        self.on_message = on_message
        self.messages: list[ReceivedMessage] = []
        self.unanswered: list[ReceivedMessage] = []
        self.faults: list[Fault] = []
        self.sessions = 0
        self.auth_failures = 0
        self.host = "127.0.0.1"
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._protocols: set[_SinkSMTP] = set()

    # ---- lifecycle ---------------------------------------------------------------------------------------------

    async def start(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        require_auth: tuple[str, str] | None = None,
        smtputf8: bool = False,
    ) -> tuple[str, int]:
        """Listen on ``host:port`` (``port=0``: a free port) and return ``(host, port)``.

        ``tls_context``: a server-side context (``ssl.Purpose.CLIENT_AUTH`` with a certificate loaded); with
        ``implicit_tls=False`` the sink offers STARTTLS, with ``True`` every connection starts with TLS and STARTTLS is
        not offered. ``require_auth``: the one (username, password) accepted; MAIL before AUTH gets ``530 5.7.0``,
        wrong credentials ``535 5.7.8``. ``smtputf8``: offer SMTPUTF8 (RFC 6531).

        Raises ``ValueError`` for a non-loopback ``host`` or ``implicit_tls`` without a context; ``OSError`` when
        the port cannot be bound.
        """
        if not is_loopback_host(host):
            raise ValueError(f"refusing to bind a non-loopback address: {host}")
        if implicit_tls and tls_context is None:
            raise ValueError("implicit_tls needs a tls_context")
        loop = asyncio.get_running_loop()
        starttls_context = None if implicit_tls else tls_context

        def protocol_factory() -> _SinkSMTP:
            self.sessions += 1
            with warnings.catch_warnings():
                # aiosmtpd warns about AUTH without TLS; acceptable for a loopback test server.
                warnings.simplefilter("ignore")
                protocol = _SinkSMTP(
                    _Handler(self),
                    hostname=SINK_HOSTNAME,
                    ident="otayori SMTP sink",
                    tls_context=starttls_context,
                    enable_SMTPUTF8=smtputf8,
                    auth_required=require_auth is not None,
                    # With STARTTLS offered, AUTH only after it (as real relays do); otherwise AUTH in the clear,
                    # acceptable on loopback (implicit-TLS sessions never count as "upgraded" in aiosmtpd).
                    auth_require_tls=starttls_context is not None,
                    authenticator=_authenticator(self, require_auth) if require_auth else None,
                    loop=loop,
                )
            protocol.session_id = self.sessions
            protocol.on_lost = self._protocols.discard
            self._protocols.add(protocol)
            return protocol

        self._server = await loop.create_server(
            protocol_factory, host, port, ssl=tls_context if implicit_tls else None
        )
        self.host = host
        self.port = self._server.sockets[0].getsockname()[1]
        return self.host, self.port

    async def stop(self) -> None:
        """Stop listening and drop every open connection (safe to call twice)."""
        if self._server is None:
            return
        self._server.close()
        for protocol in list(self._protocols):
            if protocol.transport is not None:
                protocol.transport.abort()
        self._protocols.clear()
        await self._server.wait_closed()
        self._server = None
        await asyncio.sleep(0)  # let aborted connections run their connection_lost callbacks

    async def __aenter__(self) -> SmtpSink:
        if self._server is None:
            await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ---- faults and inspection ---------------------------------------------------------------------------------

    def fail(
        self,
        stage: Stage,
        reply: str | None = None,
        *,
        drop: bool = False,
        stall: float | None = None,
        recipient: str | None = None,
        after: int = 0,
        times: int | None = None,
    ) -> Fault:
        """Inject a fault at ``stage`` (``"mail"``, ``"rcpt"``, or ``"data"`` = the reply to the message content).

        Exactly one of: ``reply`` (a full reply line, e.g. ``"451 4.3.0 try later"``; ``421`` also closes the
        connection after replying), ``drop`` (close the connection without replying), ``stall`` (seconds to wait,
        then answer normally or with ``reply``). ``recipient``: only for transactions to this address (case-
        insensitive). ``after``: only once this many messages have been accepted (``len(messages)``). ``times``: at
        most this many times (None: every time). Faults are checked in the order added; the first that applies wins.
        Returns the :class:`Fault` (its ``fired`` counts uses).
        """
        actions = (reply is not None and stall is None) + drop + (stall is not None)
        if actions != 1:
            raise ValueError("give exactly one of reply, drop or stall (stall may carry a reply)")
        if reply is not None and not (len(reply) >= 3 and reply[:3].isdigit() and reply[0] in "2345"):
            raise ValueError(f"reply must start with a 3-digit SMTP code, got {reply!r}")
        fault = Fault(stage, reply, drop, stall, recipient, after, times)
        self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        self.faults.clear()

    @property
    def open_sessions(self) -> int:
        """SMTP sessions (TCP connections) currently open."""
        return sum(1 for p in self._protocols if p.transport is not None)

    def drop_connections(self) -> int:
        """Abort every open session at once, as a relay closing idle connections does; returns how many."""
        protocols = [p for p in self._protocols if p.transport is not None]
        for protocol in protocols:
            assert protocol.transport is not None
            protocol.transport.abort()
        return len(protocols)

    def parsed(self, index: int) -> email.message.EmailMessage:
        """``messages[index]`` parsed with ``email.policy.default``."""
        return self.messages[index].parsed()

    def _fault_for(self, stage: Stage, recipients: tuple[str, ...]) -> Fault | None:
        for fault in self.faults:
            if fault.applies(stage, recipients, len(self.messages)):
                fault.fired += 1
                return fault
        return None

    def _record(self, message: ReceivedMessage) -> None:
        self.messages.append(message)
        if self.on_message is not None:
            self.on_message(message)


def _authenticator(sink: SmtpSink, credentials: tuple[str, str]) -> Callable[..., AuthResult]:
    username, password = credentials

    def authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == username.encode("utf-8")
            and data.password == password.encode("utf-8")
        )
        if not ok:
            sink.auth_failures += 1
        return AuthResult(success=ok, handled=False)

    return authenticate


def _is_tls(server: SMTP, session: Session) -> bool:
    # session.ssl is set after STARTTLS; an implicit-TLS transport shows its ssl_object instead.
    transport = server.transport
    return session.ssl is not None or (transport is not None and transport.get_extra_info("ssl_object") is not None)


class _Handler:
    """aiosmtpd handler hooks (MAIL, RCPT, DATA) that record and inject the sink's faults."""

    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_exception(self, error: Exception) -> str:
        # A client that gives up a TLS handshake (e.g. it does not trust the certificate) is a normal event for a
        # sink used in TLS tests; anything else is a bug worth a traceback.
        if isinstance(error, TLSSetupException):
            log.info("TLS handshake failed: %r", error.__cause__)
        else:
            log.exception("SMTP sink session error")
        return f"500 Error: ({type(error).__name__}) {error}"

    async def _inject(self, server: SMTP, fault: Fault | None) -> str | None:
        """Apply ``fault``: return the reply to send, or None to go on normally. A drop never returns."""
        if fault is None:
            return None
        if fault.drop:
            assert server.transport is not None
            server.transport.abort()
            # aiosmtpd's connection_lost cancels this handler; the sleep only bounds the wait.
            await asyncio.sleep(_DROP_WAIT_SECONDS)
            return "421 4.4.2 connection dropped"
        if fault.stall is not None:
            await asyncio.sleep(fault.stall)
        if fault.reply is not None and fault.reply.startswith("421") and server.transport is not None:
            # RFC 5321 3.8 / 4.2: a server that answers 421 closes the transmission channel.
            server.loop.call_soon(server.transport.close)
        return fault.reply

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        reply = await self._inject(server, self.sink._fault_for("mail", ()))
        if reply is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        reply = await self._inject(server, self.sink._fault_for("rcpt", (address,)))
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        recipients = tuple(envelope.rcpt_tos)
        content = envelope.original_content or b""
        message = ReceivedMessage(
            envelope_from=envelope.mail_from or "",
            rcpt_tos=recipients,
            data=bytes(content),
            tls=_is_tls(server, session),
            session_id=getattr(server, "session_id", 0),
            mail_options=tuple(envelope.mail_options),
        )
        fault = self.sink._fault_for("data", recipients)
        held = fault is not None and (fault.drop or fault.stall is not None)
        if held:
            # The content arrived in full; until we answer, the client cannot know whether it was accepted.
            self.sink.unanswered.append(message)
        reply = await self._inject(server, fault)
        if held:
            self.sink.unanswered.remove(message)  # answered after the stall after all
        if reply is not None and not reply.startswith("2"):
            return reply
        self.sink._record(message)
        return reply or f"250 2.0.0 OK queued as {len(self.sink.messages)}"


def _describe(message: ReceivedMessage) -> str:
    """One printable line for a received message (standalone mode)."""
    try:
        subject = str(message.parsed().get("Subject", ""))
    except Exception as exc:  # a sink must keep printing whatever arrives
        subject = f"<unparsable: {type(exc).__name__}>"
    return (
        f"session={message.session_id} tls={'yes' if message.tls else 'no'} from=<{message.envelope_from}> "
        f"to={','.join(message.rcpt_tos)} bytes={len(message.data)} subject={subject!r}"
    )


async def _serve(host: str, port: int) -> None:
    count = 0

    def show(message: ReceivedMessage) -> None:
        nonlocal count
        count += 1
        print(f"#{count} {_describe(message)}", flush=True)

    sink = SmtpSink(on_message=show)
    bound_host, bound_port = await sink.start(host, port)
    print(f"otayori SMTP sink listening on {bound_host}:{bound_port} (Ctrl-C to stop)", flush=True)
    try:
        await asyncio.Event().wait()  # serve until interrupted
    finally:
        await sink.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m bots.sandbox.smtp_sink [--host 127.0.0.1] [--port 2525]``: serve until Ctrl-C; exit 2 on a
    non-loopback host."""
    parser = argparse.ArgumentParser(description="otayori SMTP sink: records and prints every message (loopback).")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=2525, help="port to listen on (0: any free port)")
    args = parser.parse_args(argv)
    if not is_loopback_host(args.host):
        print(f"error: --host must be a loopback address, got {args.host}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
