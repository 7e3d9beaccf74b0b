"""Campaigns: source codes for attribution (a seminar, a flyer), carried by QR codes and deep links.

Codes use the Telegram deep-link alphabet ``[A-Za-z0-9_-]{1,64}`` (reference/telegram.md "Deep links";
:data:`core.commands.CAMPAIGN_CODE_RE`) so one code works on every channel; they match case-insensitively. Labels may
be Japanese; they are the author's text, shown escaped (pages autoescape, the CLI prints them as plain text).

What people bring in as a campaign (a ``/start`` payload, the text after ``登録``, a landing page's path) is resolved
by :func:`resolve_code`: a registered code, or None = campaign unknown, with the raw text kept as evidence
(:func:`raw_evidence`, cut to :data:`RAW_LIMIT` characters; DESIGN.md "Chat grammar").
"""

from __future__ import annotations

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from core.commands import is_valid_campaign_code
from storage.database import Database
from storage.models import Campaign

#: The rule, as the author reads it when a code is refused.
CODE_RULE_TEXT = "campaign codes are 1-64 characters of A-Z a-z 0-9 _ - (the Telegram deep-link alphabet)"
#: Labels longer than this do not fit the ``campaign.label`` column (nor a poster's heading).
LABEL_LIMIT = 200
#: Characters of an unknown campaign text kept as evidence (the ``terms_offer.campaign_raw`` column's length): a
#: 4,000-character ``登録 …`` must not overflow a PostgreSQL ``VARCHAR`` nor bloat the ledger.
RAW_LIMIT = 200


class CampaignError(ValueError):
    """A campaign code breaks the rule, already exists, or is unknown; or a label is too long."""


def check_code(code: str) -> None:
    """Raise :class:`CampaignError` naming the rule (and the code) when ``code`` is not ``[A-Za-z0-9_-]{1,64}``."""
    if not is_valid_campaign_code(code):
        raise CampaignError(f"{CODE_RULE_TEXT}; got {code!r} ({len(code)} characters)")


async def add_campaign(db: Database, code: str, label: str = "", event_date: str | None = None) -> Campaign:
    """Register ``code`` with ``label`` (stripped; at most :data:`LABEL_LIMIT` characters) and an optional
    ``event_date`` (ISO text). Raises :class:`CampaignError` for a code outside ``[A-Za-z0-9_-]{1,64}``, one that
    exists already (compared case-insensitively), or a label that is too long."""
    check_code(code)
    label = label.strip()
    if len(label) > LABEL_LIMIT:
        raise CampaignError(f"--label is {len(label)} characters long; at most {LABEL_LIMIT}")
    async with db.write() as session:
        existing = (await session.exec(select(Campaign).where(Campaign.code_key == code.lower()))).first()
        if existing is not None:
            raise CampaignError(f"campaign {existing.code!r} exists already")
        campaign = Campaign(code=code, code_key=code.lower(), label=label, event_date=event_date)
        session.add(campaign)
        await session.flush()
        return campaign


async def list_campaigns(db: Database) -> list[Campaign]:
    """Every campaign, oldest first."""
    async with db.read() as session:
        return list((await session.exec(select(Campaign).order_by(Campaign.id))).all())  # type: ignore[arg-type]


async def find_campaign(session: AsyncSession, text: str | None) -> Campaign | None:
    """The registered campaign whose code matches ``text`` case-insensitively; None for no text, a text outside the
    code alphabet (never looked up) or an unknown code."""
    if not text or not is_valid_campaign_code(text):
        return None
    return (await session.exec(select(Campaign).where(Campaign.code_key == text.lower()))).first()


async def get_campaign(db: Database, code: str) -> Campaign:
    """The campaign ``code`` (case-insensitive). Raises :class:`CampaignError` for a code breaking the rule or one
    that is not registered."""
    check_code(code)
    async with db.read() as session:
        campaign = await find_campaign(session, code)
    if campaign is None:
        raise CampaignError(f"no campaign {code!r} (add it with: otayori campaign add {code} --label …)")
    return campaign


async def resolve_code(session: AsyncSession, text: str | None) -> str | None:
    """The registered code (as registered) matching ``text``, or None: absent, invalid or unknown = campaign
    unknown."""
    campaign = await find_campaign(session, text)
    return campaign.code if campaign is not None else None


def raw_evidence(text: str | None, code: str | None) -> str | None:
    """What to keep as ``campaign_raw``: the text as typed (first :data:`RAW_LIMIT` characters) when it named no
    registered campaign, else None."""
    if not text or code is not None:
        return None
    return text[:RAW_LIMIT]
