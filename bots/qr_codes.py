"""QR codes for a campaign (``otayori qr CODE --out DIR``), drawn with segno: one SVG and one PNG per link.

Files (``<code>`` is the campaign code as registered): ``<code>-join`` (the landing page), ``<code>-telegram`` (the
deep link ``?start=<code>``), ``<code>-line-friend`` (add the LINE account as a friend) and ``<code>-line-message``
(open the LINE chat with ``登録 <code>`` typed in), each ``.svg`` and ``.png``. A channel whose identity is unknown
gets no file. Error correction level M (15 %), boosted by segno when the version allows; quiet zone of 4 modules
(ISO/IEC 18004), as phone cameras expect.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import segno
from PIL import Image

from core.links import CampaignLinks

#: Pixels per module of the PNG files: a 33-module code (with its quiet zone) is 330 px, sharp when printed small.
PNG_SCALE = 10
#: Quiet zone in modules (ISO/IEC 18004 asks for 4).
BORDER = 4


@dataclass(frozen=True)
class QrCode:
    """One link's QR code: ``kind`` (``join``, ``telegram``, ``line-friend``, ``line-message``), the ``url`` it
    encodes, and the ``svg`` and ``png`` files written."""

    kind: str
    url: str
    svg: Path
    png: Path


def link_kinds(links: CampaignLinks) -> list[tuple[str, str]]:
    """``(kind, url)`` for every link of ``links`` that is known, in poster order."""
    pairs = [("join", links.join), ("line-friend", links.line_add_friend), ("line-message", links.line_message),
             ("telegram", links.telegram)]
    return [(kind, url) for kind, url in pairs if url]


def make(url: str) -> segno.QRCode:
    """The QR code of ``url`` (byte mode, level M or better, never a Micro QR: phones do not read those)."""
    return segno.make(url, error="m", micro=False)


def write_qr_codes(links: CampaignLinks, directory: Path) -> list[QrCode]:
    """Write the SVG and PNG of every known link of ``links`` into ``directory`` (created when missing); the codes
    written, in :func:`link_kinds` order. Raises OSError when the directory cannot be written."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = links.code or "general"
    written = []
    for kind, url in link_kinds(links):
        code = make(url)
        svg, png = directory / f"{stem}-{kind}.svg", directory / f"{stem}-{kind}.png"
        code.save(svg, kind="svg", scale=PNG_SCALE, border=BORDER, xmldecl=True, svgclass=None, lineclass=None,
                  title=url)
        code.save(png, kind="png", scale=PNG_SCALE, border=BORDER)
        written.append(QrCode(kind, url, svg, png))
    return written


def qr_image(url: str, size: int) -> Image.Image:
    """The QR code of ``url`` as a black-and-white Pillow image of at most ``size`` pixels square (whole pixels per
    module, so every module stays sharp; never smaller than 1 px per module)."""
    code = make(url)
    modules = code.symbol_size(scale=1, border=BORDER)[0]
    buffer = io.BytesIO()
    code.save(buffer, kind="png", scale=max(1, size // modules), border=BORDER)
    buffer.seek(0)
    image = Image.open(buffer)
    image.load()
    return image.convert("L")
