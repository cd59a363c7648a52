"""When a client should poll a job again (its `Retry-After`), from how long jobs really take here.

A fixed "1 s + queue position" made clients of short jobs wait many times longer than their job
(50 clients, 0.05-0.3 s jobs: p95 12 s end to end). The wait is instead the time the jobs ahead of
this one need on the workers that are busy, plus the job's own run, from recently finished jobs.
"""

from __future__ import annotations

import threading

from .clock import Clock
from .store import Database

RECENT_JOBS = 20  # enough to smooth one outlier, few enough to follow a change of engine or load
PRIOR_RUN_S = 1.0  # before any job has finished on this server
MEASURE_EVERY_S = 1.0  # the recent mean is read from the database at most this often
MAX_WAIT_S = 30.0  # never ask a client to wait longer, however long the queue


class Pace:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db, self.clock = db, clock
        self._lock = threading.Lock()
        self._mean: tuple[float, float] | None = None  # (measured at, mean run seconds)

    def run_seconds(self) -> float:
        """The mean run time of the most recently finished jobs (PRIOR_RUN_S before the first)."""
        now = self.clock()
        with self._lock:
            if self._mean is None or now - self._mean[0] >= MEASURE_EVERY_S:
                measured = self.db.recent_run_seconds(RECENT_JOBS)
                self._mean = (now, sum(measured) / len(measured) if measured else PRIOR_RUN_S)
            return self._mean[1]

    def queued_wait(self, position: int) -> float:
        """Seconds until a job at this queue position (1: next) has likely finished: the jobs up to it
        share the busy workers (all are busy while jobs queue), then it runs itself."""
        busy = max(1, self.db.running_count())
        return min(MAX_WAIT_S, (position / busy + 1) * self.run_seconds())
