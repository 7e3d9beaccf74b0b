"""Signed tokens in links (itsdangerous): email confirmation, unsubscribe, and the author's preview and chart links.

* Confirmation tokens carry a confirmation's random nonce, signed and timestamped; they expire after
  ``OTAYORI_CONFIRM_TTL_SECONDS`` and are single-use through server-side state (``email_confirmation.used_at``).
* Unsubscribe tokens carry an endpoint id, signed, and never expire: RFC 8058 one-click links must keep working and
  may be used any number of times (reference/email-and-law.md). They cannot be guessed or altered (HMAC-SHA1 via
  itsdangerous over the payload, keyed with ``OTAYORI_SECRET_KEY`` and a purpose-specific salt).
* Preview tokens carry an issue id, signed and timestamped: the link to an issue's email preview page, handed only to
  admins in their chat (core.desk); it expires (``max_age`` when read), since a draft is not public.
* Chart tokens let LINE fetch the stats chart for an admin's image message (LINE loads images from an https URL and
  sends no credentials); they expire too.
"""

from __future__ import annotations

from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer

CONFIRM_SALT = "otayori.email-confirm.v1"
UNSUBSCRIBE_SALT = "otayori.unsubscribe.v1"
PREVIEW_SALT = "otayori.issue-preview.v1"
CHART_SALT = "otayori.stats-chart.v1"


class TokenError(ValueError):
    """A token is forged, altered or (``expired=True``) too old."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


@dataclass(frozen=True)
class Tokens:
    """Token signer for one ``secret_key`` (the ``OTAYORI_SECRET_KEY``)."""

    secret_key: str

    def confirm_token(self, nonce: str) -> str:
        """A URL-safe signed, timestamped token for the confirmation with ``nonce``."""
        return URLSafeTimedSerializer(self.secret_key, salt=CONFIRM_SALT).dumps(nonce)

    def read_confirm_token(self, token: str, max_age_seconds: int) -> str:
        """The nonce in ``token``. Raises :class:`TokenError` when forged/altered or older than ``max_age_seconds``."""
        value = self._read_timed(CONFIRM_SALT, token, max_age_seconds, "confirmation")
        if not isinstance(value, str):
            raise TokenError("the confirmation link is not valid")
        return value

    def _read_timed(self, salt: str, token: str, max_age_seconds: int, what: str) -> object:
        """The payload of a timed token under ``salt``; :class:`TokenError` names ``what`` link failed."""
        try:
            return URLSafeTimedSerializer(self.secret_key, salt=salt).loads(token, max_age=max_age_seconds)
        except SignatureExpired as exc:
            raise TokenError(f"the {what} link has expired", expired=True) from exc
        except BadSignature as exc:
            raise TokenError(f"the {what} link is not valid") from exc

    def unsubscribe_token(self, endpoint_id: int) -> str:
        """A URL-safe signed token naming ``endpoint_id``; it never expires."""
        return URLSafeSerializer(self.secret_key, salt=UNSUBSCRIBE_SALT).dumps(endpoint_id)

    def read_unsubscribe_token(self, token: str) -> int:
        """The endpoint id in ``token``. Raises :class:`TokenError` when forged or altered."""
        try:
            value = URLSafeSerializer(self.secret_key, salt=UNSUBSCRIBE_SALT).loads(token)
        except BadSignature as exc:
            raise TokenError("the unsubscribe link is not valid") from exc
        if not isinstance(value, int) or isinstance(value, bool):
            raise TokenError("the unsubscribe link is not valid")
        return value

    def preview_token(self, issue_id: int) -> str:
        """A URL-safe signed, timestamped token naming issue ``issue_id`` (the email preview link)."""
        return URLSafeTimedSerializer(self.secret_key, salt=PREVIEW_SALT).dumps(issue_id)

    def read_preview_token(self, token: str, max_age_seconds: int) -> int:
        """The issue id in ``token``. Raises :class:`TokenError` when forged/altered or older than
        ``max_age_seconds``."""
        value = self._read_timed(PREVIEW_SALT, token, max_age_seconds, "preview")
        if not isinstance(value, int) or isinstance(value, bool):
            raise TokenError("the preview link is not valid")
        return value

    def chart_token(self) -> str:
        """A URL-safe signed, timestamped token for the sign-up chart picture."""
        return URLSafeTimedSerializer(self.secret_key, salt=CHART_SALT).dumps("signups")

    def check_chart_token(self, token: str, max_age_seconds: int) -> None:
        """Raise :class:`TokenError` unless ``token`` is a chart token younger than ``max_age_seconds``."""
        if self._read_timed(CHART_SALT, token, max_age_seconds, "chart") != "signups":
            raise TokenError("the chart link is not valid")
