"""Rate limiters for the senders: an even pace with a tiny burst, never more than the platform's rate per second.

``aiolimiter.AsyncLimiter(rate, 1)`` is a leaky bucket holding ``rate`` units: after a quiet moment it lets ``rate``
requests through at once and then ``rate`` more within the same second, i.e. up to twice the rate in one sliding
second. Telegram counts about 30 messages per second and LINE 200 multicast requests per second
(reference/telegram.md "Limits", reference/line.md "Sending") without saying how the window slides, so our senders
must stay under the rate in *every* one-second window.

A bucket of ``burst`` units that drains at ``rate`` units per second (``AsyncLimiter(burst, burst / rate)``) lets at
most ``burst + rate`` requests start in any one-second window. ``burst`` = 1 would be a strict metronome, but every
moment the event loop is late to wake a waiting sender is then capacity lost for good (measured with
``bench/telegram_rate.py``: 0.89 of the rate, at 147.5/s as at 295/s); a second unit absorbs that lateness.
"""

from __future__ import annotations

from aiolimiter import AsyncLimiter

#: Requests that may start back to back after a pause (see the module docstring). Our defaults stay under the
#: platforms' limits with it: Telegram 25 + 2 < 30 messages/s, LINE 150 + 2 < 200 requests/s.
BURST = 2


def paced_limiter(rate_per_second: float, burst: int = BURST) -> AsyncLimiter:
    """A limiter that lets requests start at ``rate_per_second`` (requests/s, > 0) on average, at most ``burst``
    (>= 1) back to back: any one-second window holds at most ``burst + rate_per_second`` starts.

    Raises ``ValueError`` for a rate <= 0 or a burst < 1.
    """
    if rate_per_second <= 0 or burst < 1:
        raise ValueError(f"rate must be > 0 requests/s and burst >= 1, got {rate_per_second} and {burst}")
    return AsyncLimiter(burst, burst / rate_per_second)
