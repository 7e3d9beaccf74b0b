"""The stats chart: sign-ups over time per channel as a PNG (issue 5 item 8; ``otayori stats --chart FILE.png``, and
the picture the admin's stats command sends).

Drawn with matplotlib's object API (``Figure`` + the Agg canvas): no pyplot global state, no GUI backend, safe in a
server. Labels are Japanese, so a CJK font is needed: Noto Sans CJK JP (Debian ``fonts-noto-cjk``, installed by
``make fonts`` / ``.ci/run``). Without it the chart is still written, with a warning, but Japanese shows as boxes.
"""

from __future__ import annotations

import io
import logging
import os
from datetime import date
from pathlib import Path

from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from core import texts

log = logging.getLogger(__name__)

#: Font families tried in order (the first that matplotlib can find wins).
JAPANESE_FAMILIES = ("Noto Sans CJK JP", "Noto Sans JP", "IPAexGothic", "IPAGothic", "TakaoGothic")
#: One colour per channel, the platforms' own where they have one (LINE green, Telegram blue).
CHANNEL_COLOURS = {"line": "#06C755", "telegram": "#229ED9", "email": "#7A5C99"}


def japanese_font() -> str | None:
    """The family name of an installed Japanese font, or None.

    matplotlib caches its font list on first use; a font installed afterwards (``make fonts``) is found by scanning
    the system font files for Noto Sans CJK and registering it.
    """
    for family in JAPANESE_FAMILIES:
        try:
            font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
            return family
        except ValueError:
            continue
    for path in font_manager.findSystemFonts():
        if "notosanscjk" in os.path.basename(path).lower().replace("-", ""):
            font_manager.fontManager.addfont(path)
            return font_manager.FontProperties(fname=path).get_name()
    return None


def signup_chart_png(series: dict[str, list[tuple[date, int]]], *, language: texts.Language = "ja") -> bytes:
    """PNG bytes of the cumulative sign-ups per channel over the days of ``series``
    (:func:`core.stats.signups_per_day`): one line per channel, labelled in ``language``."""
    family = japanese_font()
    if family is None:
        log.warning("no Japanese font found (install fonts-noto-cjk): the chart's labels will show boxes")
    figure = Figure(figsize=(8, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    font = {"family": family} if family else {}
    for channel, points in series.items():
        days = [day for day, _ in points]
        running, total = [], 0
        for _, count in points:
            total += count
            running.append(total)
        name = texts.CHANNEL_NAMES[channel][language] if channel in texts.CHANNEL_NAMES else channel
        axes.plot(days, running, marker="o", markersize=3, drawstyle="steps-post", color=CHANNEL_COLOURS.get(channel),
                  label=texts.text("chart_legend", language, channel=name, total=total))
    locator = AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    days_shown = max((len(points) for points in series.values()), default=0)
    axes.set_title(texts.text("chart_signups_title", language, days=days_shown), fontdict=font)
    axes.set_ylabel(texts.text("chart_signups_axis", language), fontdict=font)
    axes.grid(alpha=0.3)
    axes.set_ylim(bottom=0)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))  # people, not fractions
    axes.legend(prop=font_manager.FontProperties(family=family) if family else None, loc="upper left")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def write_signup_chart(path: Path, series: dict[str, list[tuple[date, int]]], *,
                       language: texts.Language = "ja") -> int:
    """Write :func:`signup_chart_png` to ``path`` (parent directories created); returns the number of bytes."""
    data = signup_chart_png(series, language=language)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data)
