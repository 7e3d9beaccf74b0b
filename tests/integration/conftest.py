"""Integration fixtures: a whole stack (emulators + our app + real SDK clients) on loopback with a SQLite file."""

from __future__ import annotations

import pytest

from bots.sandbox.stack import running_stack, sandbox_settings


@pytest.fixture
async def stack(tmp_path):
    async with running_stack(sandbox_settings(tmp_path)) as running:
        yield running
