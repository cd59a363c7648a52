"""Retention sweeper: the policy's deadlines as code.

- inputs: erased when their job ends (JobService does it; the sweep catches leftovers);
- results: erased `result_retention_days` after the job ended (job becomes `expired`);
- everything about a job (row, blobs, idempotency entry): erased `max_retention_days`
  (at most 30) after submission, whatever its state;
- audit entries older than `audit_retention_days` (at most 30) leave the front of the chain;
- orphans (a file without a key, a key without a job) are removed;
- running jobs whose lease lapsed (their worker died silently) are retried or failed.

The clock is injected: `partcrafter-server sweep --at <time>` and tests travel in time.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass

from . import audit
from .blobs import BlobStore
from .clock import Clock
from .jobs import DAY, JobService
from .metrics import Metrics
from .settings import Settings
from .store import Database

log = logging.getLogger("partcrafter_server.retention")
ORPHAN_GRACE_S = 600.0


@dataclass
class SweepReport:
    results_expired: int = 0
    inputs_erased: int = 0
    jobs_purged: int = 0
    leases_recovered: int = 0
    orphan_files: int = 0
    orphan_keys: int = 0
    audit_pruned: int = 0
    idempotency_pruned: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Sweeper:
    def __init__(
        self, settings: Settings, db: Database, blobs: BlobStore, service: JobService, clock: Clock, metrics: Metrics
    ) -> None:
        self.settings, self.db, self.blobs, self.service, self.clock, self.metrics = settings, db, blobs, service, clock, metrics
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self, now: float | None = None) -> SweepReport:
        now = self.clock() if now is None else now
        report = SweepReport()
        shred: list[str] = []
        with self.db.write() as con:
            # results past their date: keys gone, job kept as 'expired' (answers 410) until purge
            for job in self.db.all(
                "SELECT id, owner, result_blob FROM jobs WHERE status='succeeded' AND result_expires_at <= ?", (now,)
            ):
                con.execute("UPDATE jobs SET status='expired', stage='expired', result_blob=NULL WHERE id=?", (job["id"],))
                if job["result_blob"]:
                    shred.append(job["result_blob"])
                audit.append(self.db, con, now, "result.expired", job["owner"], job["id"])
                report.results_expired += 1
            # inputs of finished jobs (a crash between finishing and erasing)
            for job in self.db.all(
                "SELECT id, owner, input_blob FROM jobs WHERE status NOT IN ('queued','running') AND input_blob IS NOT NULL"
            ):
                con.execute("UPDATE jobs SET input_blob=NULL, input_deleted_at=? WHERE id=?", (now, job["id"]))
                shred.append(job["input_blob"])
                audit.append(self.db, con, now, "input.deleted", job["owner"], job["id"])
                report.inputs_erased += 1
            # the 30-day ceiling, whatever the state
            for job in self.db.all("SELECT id, owner FROM jobs WHERE purge_at <= ?", (now,)):
                shred += [r["blob_id"] for r in self.db.all("SELECT blob_id FROM blob_keys WHERE job_id=?", (job["id"],))]
                con.execute("DELETE FROM jobs WHERE id=?", (job["id"],))
                con.execute("DELETE FROM idempotency WHERE job_id=?", (job["id"],))
                audit.append(self.db, con, now, "job.purged", job["owner"], job["id"])
                report.jobs_purged += 1
            # keys whose job no longer exists
            orphans = [
                r["blob_id"] for r in self.db.all("SELECT blob_id FROM blob_keys WHERE job_id NOT IN (SELECT id FROM jobs)")
            ]
            report.orphan_keys = len(orphans)
            shred += orphans
            self.blobs.forget_keys(con, list(dict.fromkeys(shred)))
            report.idempotency_pruned = con.execute(
                "DELETE FROM idempotency WHERE created_at <= ?", (now - self.settings.idempotency_hours * 3600,)
            ).rowcount
            report.audit_pruned = audit.prune(self.db, con, now - self.settings.audit_retention_days * DAY)
        self.blobs.unlink(shred)
        # files without a key: unreadable noise from a crash between writing and recording.
        # Real file age (not the injected clock): a file written a moment ago may await its key.
        known = {r["blob_id"] for r in self.db.all("SELECT blob_id FROM blob_keys")}
        for path in self.blobs.files():
            if path.name not in known and time.time() - path.stat().st_mtime > ORPHAN_GRACE_S:
                path.unlink(missing_ok=True)
                report.orphan_files += 1
        for job in self.db.all("SELECT id FROM jobs WHERE status='running' AND lease_expires_at < ?", (now,)):
            self.service.worker_lost(job["id"], None, "its lease expired without a heartbeat")
            report.leases_recovered += 1
        self.db.checkpoint()
        self.metrics.inc("partcrafter_sweeps_total")
        self.metrics.inc("partcrafter_blobs_shredded_total", len(set(shred)))
        return report

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True, name="retention-sweeper")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.sweep_interval_s):
            try:
                self.sweep()
            except Exception:
                log.exception("retention sweep failed; retrying next period")
