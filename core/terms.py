"""Consent wording: the exact terms text, stored once per version, and the hash of each channel's rendering.

``wording_version`` is ``terms-<language>-<first 8 hex of sha256>`` (e.g. ``terms-ja-3f2a9c1d``) and
``wording_sha256`` is the SHA-256 of the UTF-8 text (DESIGN.md "Words" -> consent event).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from core.settings import Settings
from core.texts import Language, TermsFacts, terms_text
from storage.models import ConsentWording


def sha256_hex(text: str) -> str:
    """Hex SHA-256 of the UTF-8 bytes of ``text``."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def wording_version(language: str, text: str) -> str:
    """``terms-<language>-<8 hex>``: names a wording by its content, so the same text always has the same version."""
    return f"terms-{language}-{sha256_hex(text)[:8]}"


def facts_from(settings: Settings) -> TermsFacts:
    """The terms' facts from settings (sender name, purpose of use, newsletter description, privacy URL)."""
    return TermsFacts(
        sender_name=settings.sender_name or "",
        purpose_of_use=settings.purpose_of_use,
        newsletter_description=settings.newsletter_description,
        privacy_url=settings.privacy_url,
    )


async def current_wording(session: AsyncSession, settings: Settings, language: Language) -> ConsentWording:
    """The wording row for the terms as they read now; stored on first use (never changed afterwards)."""
    text = terms_text(facts_from(settings), language)
    version = wording_version(language, text)
    row = (await session.exec(select(ConsentWording).where(ConsentWording.version == version))).first()
    if row is None:
        row = ConsentWording(version=version, sha256=sha256_hex(text), language=language, text=text)
        session.add(row)
        await session.flush()
    return row


def rendering_sha256(text: str, button_labels: Sequence[str]) -> str:
    """SHA-256 of a chat rendering of the terms: the message text and its button labels, as canonical JSON."""
    payload = json.dumps({"text": text, "buttons": list(button_labels)}, ensure_ascii=False, sort_keys=True)
    return sha256_hex(payload)
