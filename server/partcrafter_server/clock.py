"""Time as a dependency, so retention can be tested by travelling in time."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Callable

Clock = Callable[[], float]  # seconds since the epoch, UTC


def system_clock() -> float:
    return time.time()


class FixedClock:
    """A clock that only moves when told (tests)."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


def parse_iso(text: str) -> float:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()
