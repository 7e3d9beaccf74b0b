"""The printable seminar poster: A4 portrait at 300 dpi (2480 × 3508 px), PNG and PDF, drawn with Pillow in Noto Sans
CJK JP (bots/fonts.py).

What it shows, top to bottom: the campaign label (and date), whose newsletter it is, a short lead (scan, read the
terms, agree), the landing page's QR code (big: it offers every channel and carries the campaign), then the LINE
add-friend, LINE ``登録 <code>`` and Telegram deep-link codes side by side, and the terms as on the landing page
(sender, what is sent and how often, purpose of use, how to stop, privacy policy URL: core.texts.terms_items).
Everything is drawn as text: a label holding ``<b>`` shows those characters, nothing is interpreted.

Long labels or settings do not spill off the page: the layout is drawn at a smaller type scale until it fits (a
bounded number of tries), QR codes keep whole pixels per module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from bots.fonts import japanese_font
from bots.qr_codes import qr_image
from core import texts
from core.links import CampaignLinks, line_subscribe_text

#: A4 at 300 dpi, in pixels (210 × 297 mm).
DPI = 300
PAGE = (2480, 3508)
MARGIN = 170
INK = (29, 35, 48)
MUTED = (85, 85, 95)
ACCENT = (11, 110, 79)
#: The platforms' own colours for the captions (LINE green, Telegram blue).
COLOURS = {"join": ACCENT, "line-friend": (6, 199, 85), "line-message": (6, 199, 85), "telegram": (34, 158, 217)}
#: Type scales tried in order until everything fits on the page.
SCALES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)
#: Characters that must not start a line (Japanese line-breaking rules, 行頭禁則, the common ones): they hang at the
#: end of the line before instead.
NO_LINE_START = set("、。，．,.)）」』】〕!！?？ー…・:：;；%％")


@dataclass(frozen=True)
class PosterFacts:
    """What the poster says: the campaign ``label`` and ``event_date`` (may be empty), the ``terms`` facts, and the
    ``links`` (channels whose link is None get no QR code)."""

    label: str
    event_date: str | None
    terms: texts.TermsFacts
    links: CampaignLinks


def wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """``text`` broken into lines no wider than ``width`` pixels in ``font`` (at any character, as Japanese is; a
    character of :data:`NO_LINE_START` stays on the line before). Newlines in ``text`` are kept."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for char in paragraph:
            if not line or char in NO_LINE_START or font.getlength(line + char) <= width:
                line += char
                continue
            # A Latin word or code (seminar-2026-12) moves to the next line whole, unless it fills the line alone.
            word = len(line) - len(line.rstrip(_WORD_CHARS)) if char in _WORD_CHARS else 0
            if 0 < word < len(line):
                lines.append(line[:-word])
                line = line[-word:] + char
            else:
                lines.append(line)
                line = char
        lines.append(line)
    return lines


_WORD_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-@./:?=%&"


class _Page:
    """A drawing cursor on a white page: text blocks and images stacked from the top, ``y`` the next free row."""

    def __init__(self, scale: float) -> None:
        self.scale = scale
        # Drawn on a page twice as tall as A4, so an overflow is measured instead of being cut off.
        self.image = Image.new("RGB", (PAGE[0], PAGE[1] * 2), "white")
        self.draw = ImageDraw.Draw(self.image)
        self.y = MARGIN
        self.width = PAGE[0] - 2 * MARGIN

    def font(self, size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
        return japanese_font(max(12, round(size * self.scale)), bold=bold)

    def text(self, text: str, size: int, *, bold: bool = False, colour: tuple[int, int, int] = INK,
             left: int = MARGIN, width: int | None = None, centre: bool = False, spacing: float = 1.45) -> int:
        """Draw wrapped ``text`` from the cursor; returns the height used (the cursor moves down by it)."""
        font = self.font(size, bold)
        width = width or self.width
        step = round(font.size * spacing)
        top = self.y
        for line in wrap(text, font, width):
            x = left + (width - font.getlength(line)) / 2 if centre else left
            self.draw.text((x, self.y), line, font=font, fill=colour)
            self.y += step
        return self.y - top

    def gap(self, pixels: int) -> None:
        self.y += round(pixels * self.scale)


def _qr_column(page: _Page, kind: str, url: str, caption: str, left: int, width: int, size: int) -> int:
    """A QR code with its caption under it, centred in the column [left, left + width); returns the bottom row."""
    top = page.y
    code = qr_image(url, size)
    page.image.paste(code, (left + (width - code.width) // 2, top))
    page.y = top + code.height + round(10 * page.scale)
    page.text(caption, 46, bold=True, colour=COLOURS.get(kind, INK), left=left, width=width, centre=True)
    bottom = page.y
    page.y = top
    return bottom


def _draw(facts: PosterFacts, scale: float) -> _Page:
    page = _Page(scale)
    links = facts.links
    if facts.label:
        page.text(facts.label, 120, bold=True, colour=ACCENT, centre=True, spacing=1.3)
    if facts.event_date:
        page.gap(10)
        page.text(facts.event_date, 56, colour=MUTED, centre=True)
    page.gap(30)
    page.text(texts.text("poster_heading", sender=facts.terms.sender_name), 84, bold=True, centre=True,
              spacing=1.3)
    page.gap(20)
    page.text(texts.text("poster_lead"), 48, colour=MUTED)
    page.gap(50)

    big = round(820 * scale)
    page.y = _qr_column(page, "join", links.join, texts.text("poster_join"), MARGIN, page.width, big)
    page.text(links.join, 40, colour=MUTED, centre=True)
    page.gap(60)

    small = [(kind, url, caption) for kind, url, caption in (
        ("line-friend", links.line_add_friend, texts.text("poster_line_friend")),
        ("line-message", links.line_message,
         texts.text("poster_line_message", text=line_subscribe_text(links.code))),
        ("telegram", links.telegram, texts.text("poster_telegram")),
    ) if url]
    if small:
        column = page.width // 3
        offset = MARGIN + (page.width - column * len(small)) // 2
        bottoms = [_qr_column(page, kind, url, caption, offset + i * column, column - 40, round(560 * scale))
                   for i, (kind, url, caption) in enumerate(small)]
        page.y = max(bottoms)
        page.gap(50)

    box_top = page.y
    page.gap(40)
    inner_left, inner_width = MARGIN + 50, page.width - 100
    for label, value in texts.terms_items(facts.terms):
        page.text(label, 42, bold=True, colour=ACCENT, left=inner_left, width=inner_width, spacing=1.35)
        page.text(value, 42, left=inner_left, width=inner_width, spacing=1.45)
        page.gap(12)
    page.gap(28)
    page.draw.rounded_rectangle((MARGIN, box_top, MARGIN + page.width, page.y), radius=24, outline=ACCENT, width=4)
    return page


def render_poster(facts: PosterFacts) -> Image.Image:
    """The poster as an RGB image of :data:`PAGE` pixels (300 dpi A4). Raises bots.fonts.FontMissing without a
    Japanese font."""
    page = None
    for scale in SCALES:
        page = _draw(facts, scale)
        if page.y <= PAGE[1] - MARGIN // 2:
            break
    assert page is not None
    return page.image.crop((0, 0, *PAGE))


def write_poster(facts: PosterFacts, directory: Path) -> tuple[Path, Path]:
    """Write ``<code>-poster.png`` and ``<code>-poster.pdf`` (one A4 page, 300 dpi) into ``directory``; returns both
    paths. Raises bots.fonts.FontMissing, OSError."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = facts.links.code or "general"
    image = render_poster(facts)
    png, pdf = directory / f"{stem}-poster.png", directory / f"{stem}-poster.pdf"
    image.save(png, "PNG", dpi=(DPI, DPI), optimize=True)
    image.save(pdf, "PDF", resolution=DPI, title=facts.label or stem)
    return png, pdf
