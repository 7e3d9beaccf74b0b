"""Serve an ASGI application in-process on a loopback port (used by the emulators, the demo and tests).

Only loopback addresses are ever bound: the emulators and the demo must never listen on a public interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from dataclasses import dataclass, field

import uvicorn


def is_loopback_host(host: str) -> bool:
    """True when ``host`` (a name or an IP literal) is a loopback address (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class LocalServer:
    """An ASGI app served by uvicorn on ``host:port`` inside the running event loop.

    Use ``await server.start()`` (returns the base URL, e.g. ``http://127.0.0.1:41234``) and ``await server.stop()``,
    or ``async with LocalServer(app) as url:``. ``port=0`` picks a free port.

    Raises ``ValueError`` when ``host`` is not a loopback address.
    """

    app: object
    host: str = "127.0.0.1"
    port: int = 0
    _server: uvicorn.Server | None = field(default=None, init=False, repr=False)
    _task: asyncio.Task | None = field(default=None, init=False, repr=False)
    _sock: socket.socket | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        """Base URL ``http://host:port`` (no trailing slash); valid after ``start()``."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> str:
        if not is_loopback_host(self.host):
            raise ValueError(f"refusing to bind a non-loopback address: {self.host}")
        # Bind the socket ourselves so that port 0 resolves before uvicorn starts and the URL is known at once.
        # proto=IPPROTO_TCP, not the default 0: accepted sockets inherit it, and asyncio turns Nagle's algorithm off
        # (TCP_NODELAY) only for sockets whose proto is IPPROTO_TCP (asyncio.base_events._set_nodelay). With proto 0
        # every response written in two parts (headers, body) waited ~40 ms for the client's delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(2048)
        sock.setblocking(False)
        self._sock = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            backlog=2048,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        # uvicorn installs signal handlers in serve(); inside a library server we leave signals to the host program.
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # re-raise the start-up error
            await asyncio.sleep(0.01)
        return self.url

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sock is not None:
            self._sock.close()
        self._server = None
        self._task = None

    async def __aenter__(self) -> str:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
