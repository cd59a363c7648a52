"""Per-key token buckets (in memory: limits protect this process, they are not billing)."""

from __future__ import annotations

import math
import threading

from .clock import Clock


class RateLimiter:
    def __init__(self, per_minute: int, clock: Clock) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, who: str) -> float:
        """Spend one token; returns 0 when allowed, else the seconds to wait."""
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(who, (self.capacity, now))
            tokens = min(self.capacity, tokens + max(0.0, now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[who] = (tokens - 1.0, now)
                return 0.0
            self._buckets[who] = (tokens, now)
            return (1.0 - tokens) / self.rate


def retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}
