"""Retry policy: which failures are temporary, how long to wait, when to give up. Pure, no HTTP."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable

from ocibox._record import record

#: statuses worth another try: request timeout, too many requests, server errors
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def is_retryable_status(status: int) -> bool:
    return status in RETRY_STATUSES or (500 <= status <= 599 and status not in (501, 505))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@record
class RetryPolicy:
    """Exponential backoff with jitter, bounded in attempts and in each wait.

    Attempt ``k`` (0-based: the wait after the k-th failure) waits a random time in
    ``[d/2, d]`` with ``d = min(max_delay, base * 2**k)`` ("equal jitter": never zero, so a
    burst of clients spreads out, never longer than ``max_delay``). A ``Retry-After`` from
    the server wins when it is longer, capped at ``max_retry_after``.
    """

    attempts: int = 5  # total tries, including the first
    base: float = 0.25
    max_delay: float = 8.0
    max_retry_after: float = 60.0

    def delay(self, failures: int, retry_after: float | None = None,
              rand: Callable[[float, float], float] = random.uniform) -> float:
        d = min(self.max_delay, self.base * (2 ** max(0, failures - 1)))
        wait = rand(d / 2, d)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_retry_after))
        return wait

    def should_retry(self, failures: int) -> bool:
        """``failures`` tries have failed; may we try again?"""
        return failures < self.attempts


DEFAULT_POLICY = RetryPolicy()
