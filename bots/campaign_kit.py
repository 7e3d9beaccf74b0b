"""What the author prints for a seminar (``otayori qr CODE --out DIR``): the QR codes of every link of a registered
campaign (bots/qr_codes.py) and the A4 poster (bots/poster.py).

The bots' identities are looked up through a :class:`bots.app.Runtime` (getMe for Telegram, the bot info API or
``OTAYORI_LINE_BASIC_ID`` for LINE: bots/channel_ids.py), so the links name the real accounts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bots.app import open_runtime
from bots.channel_ids import lookup
from bots.poster import PosterFacts, write_poster
from bots.qr_codes import QrCode, write_qr_codes
from core.campaigns import CampaignError, get_campaign
from core.links import campaign_links
from core.settings import Settings
from core.terms import facts_from


@dataclass
class CampaignKit:
    """The files written: ``codes`` (one per link), ``poster`` (PNG and PDF, or empty), and ``notes`` for the author
    (a channel left out, and why)."""

    codes: list[QrCode] = field(default_factory=list)
    poster: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


async def write_campaign_kit(settings: Settings, code: str, directory: Path, *, poster: bool = True) -> CampaignKit:
    """Write the QR codes (and the poster when ``poster``) of campaign ``code`` into ``directory``.

    Raises core.campaigns.CampaignError (an invalid or unregistered code; a poster without OTAYORI_SENDER_NAME),
    bots.fonts.FontMissing (poster without a Japanese font), OSError (the directory)."""
    kit = CampaignKit()
    async with open_runtime(settings) as runtime:
        campaign = await get_campaign(runtime.db, code)
        if poster and not (settings.sender_name or "").strip():
            # The poster's whole job is to say who sends what (特定電子メール法 Art. 4: the sender's name).
            raise CampaignError("OTAYORI_SENDER_NAME is required for the poster (it says who sends the newsletter); "
                                "set it, or use --no-poster")
        ids = await lookup(runtime)
    if not settings.telegram_enabled:
        kit.notes.append("Telegram is not configured (OTAYORI_TELEGRAM_BOT_TOKEN): no Telegram code")
    elif ids.telegram_username is None:
        kit.notes.append("Telegram getMe did not answer: no Telegram code (check the token)")
    if ids.line_basic_id is None:
        kit.notes.append("the LINE basic id is unknown (set OTAYORI_LINE_BASIC_ID, or the LINE credentials): "
                         "no LINE codes")
    if not settings.public_url.startswith("https://"):
        kit.notes.append(f"OTAYORI_PUBLIC_URL is {settings.public_url}: phones outside this machine cannot open "
                         "the landing page; use your https:// address for printing")
    links = campaign_links(settings.public_url, campaign.code, telegram_username=ids.telegram_username,
                           line_basic_id=ids.line_basic_id)
    kit.codes = write_qr_codes(links, directory)
    if poster:
        facts = PosterFacts(campaign.label, campaign.event_date, facts_from(settings), links)
        kit.poster = list(write_poster(facts, directory))
    return kit
