"""Browser tests: Playwright for Python driving the system's Chromium (``/usr/bin/chromium``, Debian's package,
installed by ``make chromium`` / ``.ci/run``). A browser is never downloaded (no ``playwright install``).

Without Chromium these tests **fail** with a message saying how to install it — in CI, and on any machine that has
apt-get; they skip (with the reason printed by ``-ra``) only where neither a Chromium binary nor apt-get exists.
Screenshots go to ``test-output/browser/`` at the repository root (ignored by git; ``OTAYORI_TEST_OUTPUT`` moves it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from bots.sandbox.stack import running_stack, sandbox_settings

#: Where Debian's chromium package puts its launcher.
CHROMIUM = "/usr/bin/chromium"
#: A small phone: every page must work at this width.
PHONE = {"width": 360, "height": 780}
ROOT = Path(__file__).resolve().parents[2]


def chromium_path() -> str:
    """The Chromium binary to drive, or fail/skip as the module docstring says."""
    path = os.environ.get("OTAYORI_CHROMIUM") or CHROMIUM
    if Path(path).is_file() and os.access(path, os.X_OK):
        return path
    problem = (f"Chromium is missing ({path}): run `make chromium` (apt-get install chromium, as root or with "
               "password-less sudo); the browser tests never download a browser")
    if os.environ.get("CI") or shutil.which("apt-get"):
        pytest.fail(problem, pytrace=False)
    pytest.skip(f"{problem}; this machine has no apt-get")


@pytest.fixture
def output_dir() -> Path:
    """``test-output/browser/`` (or ``$OTAYORI_TEST_OUTPUT/browser``), created; screenshots are kept there."""
    base = Path(os.environ.get("OTAYORI_TEST_OUTPUT") or ROOT / "test-output")
    directory = base / "browser"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
async def browser():
    """A headless Chromium (the system's), closed after the test."""
    executable = chromium_path()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, args=["--headless", "--no-sandbox"],
                                                    timeout=60_000)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def stack(tmp_path):
    async with running_stack(sandbox_settings(tmp_path)) as running:
        yield running
