"""Email edge: the SMTP sender (aiosmtplib 5) of the email channel. See :mod:`core.channels` for the contract.

What it guarantees (issue 3 item 5; facts: reference/email-and-law.md "aiosmtplib 5 TLS modes"):

* **Exactly one TLS upgrade**, as configured: ``none`` never upgrades (``start_tls=False``, even when the relay offers
  STARTTLS), ``starttls`` always does (``start_tls=True``; a relay that does not offer it is a channel-wide stop),
  ``tls`` is implicit TLS (``use_tls=True, start_tls=False``). ``start_tls`` is never left ``None``: aiosmtplib would
  then upgrade on its own whenever STARTTLS is offered.
* **Connection reuse**: at most ``connections`` SMTP sessions stay open and carry many messages (MAIL/RCPT/DATA
  repeated on one session; RSET after a refused transaction). A session that dropped, timed out or answered 421 is
  discarded and a new one opened for the next message. A reused session that turns out dead at MAIL (the relay
  closed it while idle) is replaced and the message tried once more at once: nothing had been sent.
* **Rate limit**: :func:`bots.pacing.paced_limiter` (aiolimiter, one message every 1/rate seconds) — messages per second over all sessions.
* **Classification** into :class:`core.channels.Outcome` by the phase of the failure and the reply (RFC 5321 4.2,
  RFC 3463 enhanced status codes when the reply carries one), summarised in :func:`classify_reply`. A disconnect or
  time-out inside ``data()`` is ``uncertain``: aiosmtplib raises the same ``SMTPServerDisconnected`` whether the drop
  came before or after the final ``.``, so the message may have been accepted and is never sent again blindly.
  Anything before DATA is a plain ``temporary`` (nothing was accepted).
* **Connecting** fails channel-wide (the relay is unreachable or refuses us: connection refused, time-out, TLS
  handshake or certificate failure, STARTTLS or AUTH not offered, 5xx greeting/EHLO, 535/530 authentication) unless the
  relay answered a 4xx reply (e.g. ``421 too busy``), which is temporary. *Why connection refused is channel-wide*:
  a relay that is down fails every remaining message the same way; retrying each delivery separately would only burn
  their attempts and end in N ``failed`` rows, whereas a channel-wide stop keeps them ``deferred`` (resumable with
  ``otayori deliveries resume``) and tells the author once.
* ``send``/``send_raw`` never raise aiosmtplib or socket exceptions; the recipient address is replaced by
  ``<recipient>`` in every reason (reasons are stored with deliveries and must not keep an erased address).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import aiosmtplib

from bots.pacing import paced_limiter
from core.channels import OutboundMessage, Outcome, OutcomeKind, SendResult
from core.settings import ENV_PREFIX, ConfigError

CHANNEL = "email"
Security = Literal["none", "starttls", "tls"]
#: Where a failure happened: opening the session (greeting, EHLO, STARTTLS, AUTH), MAIL FROM, RCPT TO, DATA.
Phase = Literal["connect", "mail", "rcpt", "data"]

#: RFC 5321 4.5.3 / RFC 8314 3.3 / RFC 6409: the conventional ports of each security mode.
DEFAULT_PORTS: dict[str, int] = {"none": 25, "starttls": 587, "tls": 465}
#: Seconds allowed for QUIT when closing.
_QUIT_TIMEOUT = 5.0

# RFC 3463 2: class "." subject "." detail, first token of the reply text (RFC 2034 4).
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s|$)")
# Authentication replies (RFC 4954 6): 530 required, 534 mechanism too weak, 535 invalid, 538 encryption required.
_AUTH_CODES = frozenset({530, 534, 535, 538})
# Relays that refuse to relay for us say so in words when they give no enhanced code ("Relay access denied").
_RELAY_WORDS = re.compile(r"\brelay(?:ing)?\b", re.IGNORECASE)


@dataclass(frozen=True)
class SmtpConfig:
    """How to reach the mail relay.

    ``security``: ``none`` (plain SMTP, never upgraded), ``starttls`` (RFC 3207, required) or ``tls`` (implicit TLS,
    RFC 8314). ``port``: 1-65535. ``username``/``password``: AUTH after the TLS upgrade when set. ``timeout``: seconds
    for connecting and for each reply. ``tls_context``: a client context (None: the system trust store with hostname
    checking); tests pass one that trusts their self-signed certificate.

    Raises ``ValueError`` for an unknown security mode, a port out of range or a non-positive timeout.
    """

    host: str
    port: int
    security: Security
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    tls_context: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        if self.security not in DEFAULT_PORTS:
            raise ValueError(f"security must be none, starttls or tls, got {self.security!r}")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port must be 1-65535, got {self.port}")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive (seconds)")

    @classmethod
    def from_settings(cls, settings: Any) -> SmtpConfig:
        """From ``OTAYORI_SMTP_HOST``/``_PORT``/``_SECURITY``/``_USERNAME``/``_PASSWORD`` (core.settings.Settings).

        Port default: 25 for ``none``, 587 for ``starttls``, 465 for ``tls``. Raises :class:`ConfigError` naming
        ``OTAYORI_SMTP_HOST`` when it is unset.
        """
        if not settings.smtp_host:
            raise ConfigError(f"{ENV_PREFIX}SMTP_HOST", "required to send email")
        security = settings.smtp_security
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port or DEFAULT_PORTS[security],
            security=security,
            username=settings.smtp_username or None,
            password=settings.smtp_password or None,
        )


def enhanced_status(message: str) -> tuple[int, int, int] | None:
    """The RFC 3463 enhanced status code at the start of a reply text (``"5.1.1 <a@b>: unknown"`` ->
    ``(5, 1, 1)``), or None when the reply has none."""
    match = _ENHANCED.match(message.strip())
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def classify_reply(code: int, message: str, phase: Phase) -> OutcomeKind:
    """Sort an SMTP error reply (``code`` and its text) received at ``phase`` into an :class:`OutcomeKind`.

    | phase | reply | kind |
    |---|---|---|
    | any | 4xx (421, 450, 451, 452, 454, ...) | temporary (RFC 5321 4.2.1: transient) |
    | any | 530/534/535/538 (AUTH, RFC 4954) | channel_wide |
    | connect (greeting, EHLO, STARTTLS, AUTH) | 5xx | channel_wide |
    | mail | 5xx | channel_wide (the envelope sender is the same for every message) |
    | rcpt/data | x.7.x security/policy | channel_wide |
    | rcpt/data | 5.4.5 quota/congestion; 5.3.x except 5.3.4 (relay's mail system) | channel_wide |
    | rcpt/data | 5.1.7, 5.1.8 (our sender address) | channel_wide |
    | rcpt/data | other 5.1.x (5.1.1 unknown user, 5.1.2, 5.1.3 bad address, 5.1.6, 5.1.10 null MX) | permanent |
    | rcpt/data | 5.2.1 mailbox disabled; 5.4.4 unroutable destination | permanent |
    | rcpt/data | other enhanced 5.x.x (5.2.2 mailbox full, 5.3.4 too big, 5.5.x, 5.6.x content) | rejected |
    | rcpt/data | no enhanced code (or 5.0.0): text says "relay" | channel_wide |
    | rcpt | no enhanced code: 550, 551, 553 | permanent (mailbox unavailable / not local / name not allowed) |
    | rcpt/data | any other 5xx (552 size, 554 transaction failed, 501 ...) | rejected (the message, not the person) |
    | rcpt | anything else (no 4xx/5xx code: a garbled reply) | temporary |
    | data | anything else | uncertain (the relay's answer to our content is unknown) |

    ``permanent`` makes the endpoint unreachable (bounced); ``rejected`` fails the delivery only; ``channel_wide``
    stops the email channel for the broadcast and bounces nobody.
    """
    if 400 <= code < 500:
        return OutcomeKind.TEMPORARY
    if not 500 <= code < 600:
        return OutcomeKind.UNCERTAIN if phase == "data" else OutcomeKind.TEMPORARY
    if code in _AUTH_CODES or phase in ("connect", "mail"):
        return OutcomeKind.CHANNEL_WIDE
    enhanced = enhanced_status(message)
    if enhanced is not None and enhanced[1:] != (0, 0):
        _, subject, detail = enhanced
        if subject == 7 or (subject, detail) == (4, 5) or (subject == 3 and detail != 4):
            return OutcomeKind.CHANNEL_WIDE
        if subject == 1:
            return OutcomeKind.CHANNEL_WIDE if detail in (7, 8) else OutcomeKind.PERMANENT
        if (subject, detail) in ((2, 1), (4, 4)):
            return OutcomeKind.PERMANENT
        return OutcomeKind.REJECTED
    if _RELAY_WORDS.search(message):
        return OutcomeKind.CHANNEL_WIDE
    if phase == "rcpt" and code in (550, 551, 553):
        return OutcomeKind.PERMANENT
    return OutcomeKind.REJECTED


class _ConnectFailed(Exception):
    """Opening a session failed; ``outcome`` says how to treat the message."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


def _reply_reason(code: int, message: str, phase: Phase, recipient: str | None) -> str:
    text = " ".join(message.split())  # one line, however many lines the reply had
    if recipient:
        text = re.sub(re.escape(recipient), "<recipient>", text, flags=re.IGNORECASE)
    return f"{code} {text} (at {phase.upper() if phase != 'connect' else 'connect'})"[:300]


def _error_reason(exc: BaseException, phase: Phase) -> str:
    detail = str(getattr(exc, "message", None) or exc) or type(exc).__name__
    return f"{type(exc).__name__}: {detail} (at {phase.upper() if phase != 'connect' else 'connect'})"[:300]


def _ascii_address(address: str) -> str | None:
    """``address`` with an internationalised domain in IDNA form (RFC 5890) when its local part is ASCII; None when
    the local part itself is not ASCII (that needs SMTPUTF8, RFC 6531)."""
    local, at, domain = address.rpartition("@")
    if not at or not local.isascii():
        return None
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        return None


class SmtpSender:
    """Sends email through one relay: one recipient per message, pooled sessions, rate-limited.

    Implements :class:`core.channels.ChannelSender` for channel ``email`` (see :mod:`core.channels`).
    ``envelope_from``: the MAIL FROM (bounce) address. ``compose(message, address, endpoint_id)``: the raw RFC 5322
    bytes for one recipient (core.mail builds them; the unsubscribe token depends on the endpoint).
    ``rate_per_second``: messages per second over all sessions (> 0). ``connections``: SMTP sessions kept open at
    most (>= 1). Nothing connects until the first send. Call :meth:`close` when done.
    """

    channel = CHANNEL
    max_recipients = 1

    def __init__(
        self,
        config: SmtpConfig,
        envelope_from: str,
        compose: Callable[[OutboundMessage, str, int], bytes],
        *,
        rate_per_second: float,
        connections: int,
    ) -> None:
        if rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive")
        if connections < 1:
            raise ValueError("connections must be at least 1")
        self.config = config
        self.envelope_from = envelope_from
        self.compose = compose
        self.connections = connections
        self.limiter = paced_limiter(rate_per_second)  # no burst: see bots.pacing
        self._slots = asyncio.Semaphore(connections)
        self._idle: list[aiosmtplib.SMTP] = []
        self._local_hostname: str | None = None
        #: Sessions opened so far (for reports and tests).
        self.sessions_opened = 0

    # ---- the contract ------------------------------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> SendResult:
        """Compose and send ``message`` to its one recipient; the outcome is ``SendResult.overall``.

        Raises ``ValueError`` when ``message`` has other than one recipient (a dispatcher bug: ``max_recipients``).
        """
        if len(message.recipients) != 1:
            raise ValueError(f"SmtpSender sends to one recipient per message, got {len(message.recipients)}")
        address = message.recipients[0]
        endpoint_id = message.endpoint_ids[0] if message.endpoint_ids else 0
        raw = self.compose(message, address, endpoint_id)
        return SendResult(await self.send_raw(address, raw, turn_taken=message.turn_taken))

    async def take_turn(self) -> None:
        """Wait until the rate limit (messages/s) lets one more message go, and count it; the dispatcher calls it
        before the attempt mark (see :class:`core.channels.ChannelSender`)."""
        await self.limiter.acquire()

    async def send_raw(self, to: str, raw: bytes, *, turn_taken: bool = False) -> Outcome:
        """Send ready-made message bytes (e.g. a confirmation email) to ``to``; same pool, limit and outcomes.
        ``turn_taken``: the caller already waited for the rate limit (:meth:`take_turn`)."""
        if not turn_taken:
            await self.limiter.acquire()
        async with self._slots:
            conn = self._take_idle()
            reused = conn is not None
            for _ in range(2):  # the second round only replaces a stale reused session (nothing was sent)
                if conn is None:
                    try:
                        conn = await self._open()
                    except _ConnectFailed as failure:
                        return failure.outcome
                outcome, stale = await self._transaction(conn, to, raw, reused)
                if stale:
                    conn, reused = None, False
                    continue
                self._give_back(conn)
                return outcome
            raise AssertionError("unreachable: a fresh session is never stale")

    async def close(self) -> None:
        """Wait for sends in flight, then QUIT every pooled session (errors while quitting are ignored)."""
        for _ in range(self.connections):
            await self._slots.acquire()
        try:
            idle, self._idle = self._idle, []
            for conn in idle:
                await self._quit(conn)
        finally:
            for _ in range(self.connections):
                self._slots.release()

    # ---- sessions ----------------------------------------------------------------------------------------------

    def _take_idle(self) -> aiosmtplib.SMTP | None:
        while self._idle:
            conn = self._idle.pop()
            if conn.is_connected:
                return conn
            conn.close()
        return None

    def _give_back(self, conn: aiosmtplib.SMTP) -> None:
        if conn.is_connected:
            self._idle.append(conn)
        else:
            conn.close()

    @staticmethod
    async def _quit(conn: aiosmtplib.SMTP) -> None:
        if conn.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await conn.quit(timeout=_QUIT_TIMEOUT)
        conn.close()

    async def _open(self) -> aiosmtplib.SMTP:
        """A connected session, TLS as configured, authenticated, EHLO done. Raises :class:`_ConnectFailed`."""
        cfg = self.config
        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        conn = aiosmtplib.SMTP(
            hostname=cfg.host,
            port=cfg.port,
            username=cfg.username,
            password=cfg.password,
            local_hostname=self._local_hostname,
            timeout=cfg.timeout,
            # Exactly one upgrade, never aiosmtplib's automatic one (start_tls=None): reference/email-and-law.md.
            use_tls=cfg.security == "tls",
            start_tls=cfg.security == "starttls",
            tls_context=cfg.tls_context,
        )
        self.sessions_opened += 1
        try:
            await conn.connect()
            if cfg.security != "none" and conn.get_transport_info("sslcontext") is None:
                raise aiosmtplib.SMTPException("session is not encrypted although TLS was configured")
            if conn.is_ehlo_or_helo_needed:
                try:
                    await conn.ehlo()
                except aiosmtplib.SMTPHeloError:
                    if not conn.is_connected:
                        raise
                    await conn.helo()
        except aiosmtplib.SMTPResponseException as exc:
            conn.close()
            kind = classify_reply(exc.code, exc.message, "connect")
            raise _ConnectFailed(Outcome(kind, reason=_reply_reason(exc.code, exc.message, "connect", None))) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            # Refused, unreachable, timed out, TLS handshake/certificate failure, STARTTLS or AUTH not offered.
            conn.close()
            where = f"{cfg.host}:{cfg.port} ({cfg.security})"
            reason = f"relay unusable at {where}: {_error_reason(exc, 'connect')}"
            raise _ConnectFailed(Outcome(OutcomeKind.CHANNEL_WIDE, reason=reason[:300])) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    async def _transaction(
        self, conn: aiosmtplib.SMTP, to: str, raw: bytes, reused: bool
    ) -> tuple[Outcome, bool]:
        """MAIL, RCPT, DATA for one message on ``conn``. Returns the outcome and whether ``conn`` was a stale reused
        session (dead at MAIL, nothing sent: the caller retries on a fresh one)."""
        sender, recipient, mail_options, encoding = self.envelope_from, to, [], "ascii"
        if not (sender.isascii() and recipient.isascii()):
            if conn.supports_extension("smtputf8"):
                mail_options, encoding = ["SMTPUTF8"], "utf-8"
            else:
                ascii_sender, ascii_recipient = _ascii_address(sender), _ascii_address(recipient)
                if ascii_sender is None or ascii_recipient is None:
                    reason = "the address needs SMTPUTF8 (RFC 6531), which the relay does not offer"
                    return Outcome(OutcomeKind.REJECTED, reason=reason), False
                sender, recipient = ascii_sender, ascii_recipient
        if not raw.isascii() and conn.supports_extension("8bitmime"):
            mail_options.append("BODY=8BITMIME")

        phase: Phase = "mail"
        try:
            await conn.mail(sender, options=mail_options, encoding=encoding)
            phase = "rcpt"
            await conn.rcpt(recipient, encoding=encoding)
            phase = "data"
            await conn.data(raw)
        except aiosmtplib.SMTPResponseException as exc:
            await self._reset(conn)
            kind = classify_reply(exc.code, exc.message, phase)
            return Outcome(kind, reason=_reply_reason(exc.code, exc.message, phase, to)), False
        except ValueError as exc:
            # aiosmtplib refuses control characters in command arguments (an address with CR/LF): never sent.
            await self._reset(conn)
            return Outcome(OutcomeKind.REJECTED, reason=_error_reason(exc, phase)), False
        except BaseException as exc:
            conn.close()  # the session's state is unknown now
            if not isinstance(exc, Exception):
                raise  # cancelled: an attempted delivery becomes uncertain through its attempt mark (core.dispatcher)
            if phase == "data":
                # Disconnect, time-out or anything else inside data(): the relay may have the message already.
                return Outcome(OutcomeKind.UNCERTAIN, reason=_error_reason(exc, phase)), False
            if not isinstance(exc, (aiosmtplib.SMTPException, OSError)):
                raise  # a programming error, not the relay's answer
            if reused and phase == "mail" and isinstance(exc, (aiosmtplib.SMTPServerDisconnected, ConnectionError)):
                return Outcome(OutcomeKind.TEMPORARY), True  # closed while idle: retry at once on a new session
            return Outcome(OutcomeKind.TEMPORARY, reason=_error_reason(exc, phase)), False
        return Outcome.sent(), False

    @staticmethod
    async def _reset(conn: aiosmtplib.SMTP) -> None:
        """RSET after a refused transaction so the session can carry the next one; close it when that fails."""
        if not conn.is_connected:
            conn.close()
            return
        try:
            await conn.rset()
        except (aiosmtplib.SMTPException, OSError):
            conn.close()
