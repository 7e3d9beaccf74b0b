"""Email wiring: newsletters and confirmation mails composed by core.mail and sent by the SMTP sender."""

from __future__ import annotations

from dataclasses import dataclass

from bots.email import SmtpConfig, SmtpSender
from core.channels import OutboundMessage, OutcomeKind
from core.mail import InlineImage, SenderIdentity, build_confirmation, build_newsletter
from core.optout import OptOuts
from core.settings import Settings


def build_email_sender(settings: Settings, optouts: OptOuts) -> SmtpSender:
    """The SMTP sender for newsletters: each recipient's message is composed by core.mail with that endpoint's
    unsubscribe link. Raises ConfigError (one line) when a display item of 特定電子メール法 Art. 4 is missing, so a
    broadcast never goes out without them."""
    sender = SenderIdentity.from_settings(settings)

    def compose(message: OutboundMessage, address: str, endpoint_id: int) -> bytes:
        picture = message.image  # a photo issue: inline in the HTML part (read once per issue: ImageRef.data)
        return build_newsletter(
            sender=sender, to=address, title=message.title, body_markdown=message.body_markdown,
            unsubscribe_url=optouts.unsubscribe_url(endpoint_id), privacy_url=settings.privacy_url,
            image=InlineImage(picture.sha256, picture.content_type, picture.data) if picture is not None else None,
        )

    return SmtpSender(SmtpConfig.from_settings(settings), sender.mail_from, compose,
                      rate_per_second=settings.smtp_rate_per_second, connections=settings.smtp_connections)


@dataclass
class ConfirmationMails:
    """core.double_opt_in.ConfirmationMailer over the SMTP sender: composes with core.mail, sends one message."""

    settings: Settings
    sender: SmtpSender

    async def send_confirmation(self, *, to: str, confirm_url: str, code: str, expires_hours: int) -> bool:
        raw = build_confirmation(
            sender=SenderIdentity.from_settings(self.settings), to=to, confirm_url=confirm_url, code=code,
            expires_hours=expires_hours, privacy_url=self.settings.privacy_url,
            purpose_of_use=self.settings.purpose_of_use, newsletter_description=self.settings.newsletter_description,
        )
        outcome = await self.sender.send_raw(to, raw)
        return outcome.kind is OutcomeKind.SENT
