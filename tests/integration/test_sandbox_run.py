"""``otayori run`` with nothing configured (as ``make run`` on a fresh clone): a subprocess in an empty directory
(no ``.env``, ``HOME`` there too, no ``OTAYORI_*`` variable but the port) serves the rehearsal sandbox on 127.0.0.1,
and SIGINT or SIGTERM stop it cleanly (exit 0)."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest

from bots.sandbox.stack import free_loopback_port
from tests.integration.test_cli import OTAYORI, cli_env

#: Bounds (seconds): start-up includes importing both SDKs; a stop includes the emulators' shutdown.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_run_without_credentials_serves_the_sandbox_and_stops_on_a_signal(tmp_path, signum):
    port = free_loopback_port()
    env = {**cli_env(http_port=port), "HOME": str(tmp_path)}
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(*OTAYORI, "run", cwd=tmp_path, env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        page = None
        async with httpx.AsyncClient() as client:
            while time.monotonic() - started < START_TIMEOUT and process.returncode is None:
                try:
                    page = await client.get(f"http://127.0.0.1:{port}/sandbox")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            assert page is not None, f"no answer within {START_TIMEOUT} s (exit {process.returncode})"
            listening_after = time.monotonic() - started
            assert page.status_code == 200 and "リハーサル" in page.text
            health = (await client.get(f"http://127.0.0.1:{port}/healthz")).json()
            assert sorted(health["channels"]) == ["email", "line", "telegram"]
        print(f"sandbox listening after {listening_after:.1f} s")
        assert (tmp_path / "var" / "sandbox" / "secret_key").stat().st_size >= 32  # generated, never a placeholder
        assert (tmp_path / "var" / "sandbox" / "otayori.sqlite3").is_file()
    finally:
        if process.returncode is None:
            process.send_signal(signum)  # the one process this test started
        out, err = await asyncio.wait_for(process.communicate(), STOP_TIMEOUT)
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    assert f"http://127.0.0.1:{port}/sandbox" in out.decode()
    assert "Traceback" not in err.decode(errors="replace")
