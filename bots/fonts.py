"""A Japanese font for pictures drawn with Pillow (the seminar poster; a rich menu image): Noto Sans CJK JP from
Debian's ``fonts-noto-cjk`` (installed by ``make fonts`` / ``.ci/run``).

The font files are collections (``NotoSansCJK-Regular.ttc`` holds JP, KR, SC, TC, HK…): the face is chosen by its
name, not by a fixed index, so a package that reorders the collection still gives Japanese glyph shapes.
"""

from __future__ import annotations

import functools
import os

from PIL import ImageFont

#: The family we draw Japanese with.
FAMILY = "Noto Sans CJK JP"


class FontMissing(RuntimeError):
    """No Noto Sans CJK JP font is installed (install Debian's fonts-noto-cjk: ``make fonts``)."""


@functools.cache
def _face(bold: bool) -> tuple[str, int] | None:
    """(file, index in the collection) of Noto Sans CJK JP Regular or Bold, or None."""
    from matplotlib import font_manager  # matplotlib knows where the system keeps its fonts on every platform

    wanted = "bold" if bold else "regular"
    candidates = sorted(path for path in font_manager.findSystemFonts()
                        if os.path.basename(path).lower().replace("-", "").startswith("notosanscjk"))
    for path in candidates:
        if wanted not in os.path.basename(path).lower():
            continue
        for index in range(16):  # a collection holds a handful of faces; bounded
            try:
                name, _style = ImageFont.truetype(path, 10, index=index).getname()
            except OSError:
                break
            if name == FAMILY:
                return path, index
    return None


def japanese_font(size: int, *, bold: bool = False) -> ImageFont.FreeTypeFont:
    """Noto Sans CJK JP at ``size`` pixels (Bold when ``bold``; Regular stands in when no Bold file is installed).
    Raises :class:`FontMissing` when neither is installed."""
    face = _face(bold) or _face(False)
    if face is None:
        raise FontMissing(f"no {FAMILY} font: install Debian's fonts-noto-cjk (make fonts)")
    path, index = face
    return ImageFont.truetype(path, size, index=index)
