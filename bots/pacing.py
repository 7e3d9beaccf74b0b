"""Rate limiters for the senders: one request every 1/rate seconds, never a burst.

``aiolimiter.AsyncLimiter(rate, 1)`` is a leaky bucket holding ``rate`` units: after a quiet moment it lets ``rate``
requests through at once and then ``rate`` more within the same second, i.e. up to twice the rate in one sliding
second. Telegram counts about 30 messages per second and LINE 200 multicast requests per second
(reference/telegram.md "Limits", reference/line.md "Sending") without saying how the window slides, so our senders
must stay under the rate in *every* one-second window. A bucket of one unit that leaks every ``1 / rate`` seconds
does: at most ``floor(rate) + 1`` requests start in any one-second window.
"""

from __future__ import annotations

from aiolimiter import AsyncLimiter


def paced_limiter(rate_per_second: float) -> AsyncLimiter:
    """A limiter that lets one request start every ``1 / rate_per_second`` seconds (``rate_per_second`` > 0,
    requests/s). Raises ``ValueError`` for a rate <= 0."""
    if rate_per_second <= 0:
        raise ValueError(f"rate must be > 0 requests/s, got {rate_per_second}")
    return AsyncLimiter(1, 1.0 / rate_per_second)
