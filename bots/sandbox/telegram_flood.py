"""Flood control for the Telegram emulator: sliding-window limits answered with 429 ``retry_after``.

Telegram does not publish exact limits (https://core.telegram.org/bots/faq: about 30 messages/second to different
chats, about 1/second in one chat, 20/minute in a group); over a limit it answers ``429 Too Many Requests: retry after
N`` with ``parameters.retry_after = N`` and refuses that scope until N seconds have passed. Tests choose the numbers.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from bots.sandbox.telegram_wire import ApiError

__all__ = ["FloodControl"]


@dataclass
class _Window:
    """A sliding window admitting ``capacity`` events per ``period`` seconds."""

    capacity: int
    period: float
    stamps: deque = field(default_factory=deque)

    @classmethod
    def per_second(cls, rate: float) -> _Window:
        """``rate`` >= 1: int(rate) per second; below 1: one per 1/rate seconds. ValueError unless positive."""
        if rate <= 0:
            raise ValueError("rates must be positive")
        return cls(int(rate), 1.0) if rate >= 1 else cls(1, 1.0 / rate)

    def full(self, now: float) -> bool:
        while self.stamps and self.stamps[0] <= now - self.period:
            self.stamps.popleft()
        return len(self.stamps) >= self.capacity


class FloodControl:
    """Limits configured by ``configure``; ``check(chat_id, now)`` admits a send or raises the 429 ``ApiError``.

    Counters: ``too_many_requests`` (429s given), ``retry_after_violations`` (sends that arrived while a previous 429's
    ``retry_after`` was still running; only counted with ``enforce_retry_after``).
    """

    def __init__(self) -> None:
        self.too_many_requests = 0
        self.retry_after_violations = 0
        self._on = False
        self._overall: _Window | None = None
        self._per_chat_rate: float | None = None
        self._per_group_per_minute: int | None = None
        self._retry_after = 1
        self._enforce = True
        self._chats: dict[int, _Window] = {}
        self._groups: dict[int, _Window] = {}
        self._until: dict[object, float] = {}  # scope ("*" or a chat id) -> monotonic time its penalty ends

    def configure(
        self,
        overall_per_second: float | None,
        per_chat_per_second: float | None,
        retry_after: int,
        *,
        per_group_per_minute: int | None = None,
        enforce_retry_after: bool = True,
    ) -> None:
        """Set the limits (all None: off) and forget earlier windows and penalties. ValueError for a non-positive
        rate or ``retry_after`` below 1 (PTB ignores ``retry_after: 0``)."""
        if retry_after < 1:
            raise ValueError("retry_after is at least 1 second (PTB ignores 0)")
        if per_chat_per_second is not None:
            _Window.per_second(per_chat_per_second)  # validates
        if per_group_per_minute is not None and per_group_per_minute < 1:
            raise ValueError("per_group_per_minute must be at least 1")
        self._overall = _Window.per_second(overall_per_second) if overall_per_second is not None else None
        self._per_chat_rate = per_chat_per_second
        self._per_group_per_minute = per_group_per_minute
        self._retry_after = int(retry_after)
        self._enforce = enforce_retry_after
        self._on = any(v is not None for v in (overall_per_second, per_chat_per_second, per_group_per_minute))
        self._chats.clear()
        self._groups.clear()
        self._until.clear()

    def check(self, chat_id: int, now: float) -> None:
        """Admit one send to ``chat_id`` at monotonic time ``now`` (seconds), or raise ``ApiError(429, ...)``."""
        if not self._on:
            return
        if self._enforce:
            for scope in ("*", chat_id):
                until = self._until.get(scope)
                if until is not None and now < until:
                    self.retry_after_violations += 1
                    self._refuse(math.ceil(until - now))
        windows: list[tuple[object, _Window]] = []
        if self._overall is not None:
            windows.append(("*", self._overall))
        if self._per_chat_rate is not None:
            windows.append((chat_id, self._chats.setdefault(chat_id, _Window.per_second(self._per_chat_rate))))
        if self._per_group_per_minute is not None and chat_id < 0:
            windows.append((chat_id, self._groups.setdefault(chat_id, _Window(self._per_group_per_minute, 60.0))))
        for scope, window in windows:
            if window.full(now):
                if self._enforce:
                    self._until[scope] = now + self._retry_after
                self._refuse(self._retry_after)
        for _, window in windows:
            window.stamps.append(now)

    def _refuse(self, seconds: int) -> None:
        self.too_many_requests += 1
        raise ApiError(429, f"Too Many Requests: retry after {seconds}", {"retry_after": seconds})
