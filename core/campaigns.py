"""Campaigns: source codes for attribution (a seminar, a flyer), carried by QR codes and deep links.

Codes use the Telegram deep-link alphabet ``[A-Za-z0-9_-]{1,64}`` (reference/telegram.md "Deep links") so one code
works on every channel; they match case-insensitively. Labels may be Japanese.
"""

from __future__ import annotations

import re

from sqlmodel import select

from storage.database import Database
from storage.models import Campaign

CODE_RULE = re.compile(r"[A-Za-z0-9_-]{1,64}")


class CampaignError(ValueError):
    """A campaign code breaks the rule or already exists."""


async def add_campaign(db: Database, code: str, label: str = "", event_date: str | None = None) -> Campaign:
    """Register ``code`` with ``label``. Raises :class:`CampaignError` for a code outside ``[A-Za-z0-9_-]{1,64}`` or
    one that exists already (compared case-insensitively)."""
    if not CODE_RULE.fullmatch(code):
        raise CampaignError(f"campaign codes are 1-64 characters of A-Z a-z 0-9 _ - (got {code!r})")
    async with db.write() as session:
        existing = (await session.exec(select(Campaign).where(Campaign.code_key == code.lower()))).first()
        if existing is not None:
            raise CampaignError(f"campaign {existing.code!r} exists already")
        campaign = Campaign(code=code, code_key=code.lower(), label=label.strip(), event_date=event_date)
        session.add(campaign)
        await session.flush()
        return campaign


async def list_campaigns(db: Database) -> list[Campaign]:
    """Every campaign, oldest first."""
    async with db.read() as session:
        return list((await session.exec(select(Campaign).order_by(Campaign.id))).all())  # type: ignore[arg-type]
