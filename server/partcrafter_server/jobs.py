"""Job life cycle: every state change, with its blobs and audit entry in one transaction.

The API and any dispatcher (the local worker pool today, a distributed one later)
go through this class, so the rules (owner scoping, erasing the input when a job
ends, retention dates, retries) live in one place.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from partcrafter_blender.api_v1 import FINISHED_STATES, JobStatus

from . import audit
from .blobs import BlobRef, BlobStore
from .clock import Clock
from .metrics import Metrics
from .settings import Settings
from .store import Database, Job

DAY = 86400.0


@dataclass(frozen=True)
class _Ending:
    """How a running job ends: the columns `JobService._end` writes besides the bookkeeping."""

    status: JobStatus
    stage: str
    parts: list[dict[str, Any]]
    progress: float | None = None  # None: as it was
    error_code: str | None = None
    error_message: str | None = None
    result: BlobRef | None = None
    etag: str | None = None
    expires_at: float | None = None


class JobGone(Exception):
    """The job was deleted or finished while a worker held it; its output is discarded."""


class JobService:
    def __init__(self, settings: Settings, db: Database, blobs: BlobStore, clock: Clock, metrics: Metrics) -> None:
        self.settings, self.db, self.blobs, self.clock, self.metrics = settings, db, blobs, clock, metrics

    # --- shredding ---------------------------------------------------------------
    def _finish_shred(self, blob_ids: list[str], owner: str) -> None:
        """After the transaction that forgot the keys committed: truncate the WAL (the erased
        keys' old page images leave it), then remove the (now unreadable) files."""
        self.db.checkpoint()
        if blob_ids:
            self.blobs.unlink(blob_ids)
            self.metrics.inc("partcrafter_blobs_shredded_total", len(blob_ids), owner=owner)

    # --- API side ----------------------------------------------------------------
    def find_idempotent(self, owner: str, idem_key: str) -> dict[str, Any] | None:
        return self.db.one("SELECT request_hash, job_id FROM idempotency WHERE owner=? AND idem_key=?", (owner, idem_key))

    def submit(
        self,
        owner: str,
        pixels: bytes,
        params: dict[str, Any],
        policy_version: str,
        idem: tuple[str, str] | None = None,
        result_retention_s: float | None = None,
    ) -> Job:
        """Queue a job; `result_retention_s` is a shorter result retention the client asked for."""
        now = self.clock()
        job_id = "job_" + secrets.token_hex(12)
        ref = self.blobs.write(job_id, "input", pixels)
        purge_at = now + self.settings.max_retention_days * DAY
        try:
            with self.db.write() as con:
                con.execute(
                    "INSERT INTO jobs(id, owner, status, engine, params, policy_version, created_at, input_blob, purge_at,"
                    " result_retention_s) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        job_id,
                        owner,
                        "queued",
                        params["engine"],
                        json.dumps(params),
                        policy_version,
                        now,
                        ref.blob_id,
                        purge_at,
                        result_retention_s,
                    ),
                )
                self.blobs.record(con, ref, now)
                if idem:
                    con.execute(
                        "INSERT INTO idempotency(owner, idem_key, request_hash, job_id, created_at) VALUES (?,?,?,?,?)",
                        (owner, idem[0], idem[1], job_id, now),
                    )
                audit.append(self.db, con, now, "job.created", owner, job_id, policy_version)
        except BaseException:
            self.blobs.unlink([ref.blob_id])
            raise
        self.metrics.inc("partcrafter_jobs_submitted_total", owner=owner)
        return self.db.job(job_id)  # type: ignore[return-value]  (just written)

    def request_cancel(self, owner: str, job_id: str) -> tuple[Job | None, bool]:
        """Returns (job, whether a running worker must be told)."""
        now = self.clock()
        with self.db.write() as con:
            job = self.db.job(job_id, owner)
            if job is None or job.status in FINISHED_STATES:
                return job, False
            if job.status == "queued":
                con.execute(
                    "UPDATE jobs SET status='canceled', stage='canceled', finished_at=?, input_blob=NULL, input_deleted_at=? WHERE id=?",
                    (now, now, job_id),
                )
                self.blobs.forget_keys(con, job.blob_ids)
                audit.append(self.db, con, now, "job.canceled", owner, job_id)
                audit.append(self.db, con, now, "input.deleted", owner, job_id)
            else:
                con.execute("UPDATE jobs SET cancel_requested=1 WHERE id=?", (job_id,))
                audit.append(self.db, con, now, "job.cancel_requested", owner, job_id)
        if job.status == "queued":
            self._finish_shred(job.blob_ids, owner)
            self.metrics.inc("partcrafter_jobs_finished_total", labels={"status": "canceled"}, owner=owner)
        return self.db.job(job_id, owner), job.status == "running"

    def delete(self, owner: str, job_id: str, event: str = "job.deleted") -> Job | None:
        """Erase a job now: keys first, then files, then the row. Returns the job as it was."""
        now = self.clock()
        with self.db.write() as con:
            job = self.db.job(job_id, owner)
            if job is None:
                return None
            blob_ids = [r["blob_id"] for r in self.db.all("SELECT blob_id FROM blob_keys WHERE job_id=?", (job_id,))]
            self.blobs.forget_keys(con, blob_ids)
            con.execute("DELETE FROM jobs WHERE id=?", (job_id,))
            con.execute("DELETE FROM idempotency WHERE job_id=?", (job_id,))
            audit.append(self.db, con, now, event, owner, job_id)
        self._finish_shred(blob_ids, owner)
        return job

    def read_result(self, job: Job) -> bytes:
        return self.blobs.read(job.result_blob)

    # --- dispatcher side -----------------------------------------------------------
    def lease_next(self, worker: str, engine: str | None = None) -> Job | None:
        """Lease the oldest queued job (of one engine, for dispatchers with a queue per engine)."""
        now = self.clock()
        with self.db.write() as con:
            row = con.execute(
                "UPDATE jobs SET status='running', stage='starting', progress=0, lease_owner=:worker, lease_expires_at=:until,"
                " started_at=COALESCE(started_at, :now), attempts=attempts+1"
                " WHERE seq=(SELECT seq FROM jobs WHERE status='queued' AND (:engine IS NULL OR engine=:engine)"
                " AND owner NOT IN (SELECT key_id FROM holders WHERE restricted_at IS NOT NULL)"  # restricted: kept, not run
                " ORDER BY seq LIMIT 1) RETURNING id, owner, attempts",
                {"worker": worker, "until": now + self.settings.lease_s, "now": now, "engine": engine},
            ).fetchone()
            if row is None:
                return None
            audit.append(self.db, con, now, "job.started", row["owner"], row["id"])
        return self.db.job(row["id"])

    def heartbeat(self, job_id: str, worker: str, stage: str | None = None, progress: float | None = None) -> bool:
        """Renew the lease (and record progress). False when the job is no longer this worker's."""
        now = self.clock()
        with self.db.write() as con:
            n = con.execute(
                "UPDATE jobs SET lease_expires_at=?, stage=COALESCE(?, stage), progress=COALESCE(?, progress)"
                " WHERE id=? AND status='running' AND lease_owner=?",
                (now + self.settings.lease_s, stage, progress, job_id, worker),
            ).rowcount
        return bool(n)

    def keep_lease(self, job_id: str, worker: str, stage: str | None, progress: float | None) -> bool:
        """Heartbeat with progress; False when the worker must stop: the job was deleted, taken over or canceled."""
        return self.heartbeat(job_id, worker, stage, progress) and not self.cancel_requested(job_id)

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.db.scalar("SELECT cancel_requested FROM jobs WHERE id=?", (job_id,)) in (1, None))

    def read_input(self, job: Job) -> bytes:
        return self.blobs.read(job.input_blob)

    def _end(self, job_id: str, worker: str, ending: _Ending, extra_timings: dict[str, float] | None = None) -> None:
        now = self.clock()
        with self.db.write() as con:
            job = self.db.job(job_id)
            if job is None or job.status != "running" or job.lease_owner != worker:
                raise JobGone(job_id)
            timings = dict(job.timings, **(extra_timings or {}), queue_seconds=round((job.started_at or now) - job.created_at, 4))
            timings["run_seconds"] = round(now - (job.started_at or now), 4)
            result = ending.result
            if result is not None:
                self.blobs.record(con, result, now)
            self.blobs.forget_keys(con, [job.input_blob] if job.input_blob else [])
            con.execute(
                "UPDATE jobs SET status=?, stage=?, progress=COALESCE(?, progress), parts=?, error_code=?, error_message=?,"
                " result_blob=?, result_size=?, result_etag=?, result_expires_at=?, finished_at=?, input_blob=NULL,"
                " input_deleted_at=?, lease_owner=NULL, lease_expires_at=NULL, timings=? WHERE id=?",
                (
                    ending.status,
                    ending.stage,
                    ending.progress,
                    json.dumps(ending.parts),
                    ending.error_code,
                    ending.error_message,
                    result.blob_id if result else None,
                    result.size if result else None,
                    ending.etag,
                    ending.expires_at,
                    now,
                    now,
                    json.dumps(timings),
                    job_id,
                ),
            )
            audit.append(self.db, con, now, f"job.{ending.status}", job.owner, job_id)
            audit.append(self.db, con, now, "input.deleted", job.owner, job_id)
        self._finish_shred([job.input_blob] if job.input_blob else [], job.owner)
        self.metrics.inc("partcrafter_jobs_finished_total", labels={"status": ending.status}, owner=job.owner)

    def succeed(self, job_id: str, worker: str, glb: bytes, parts: list[dict], extra_timings: dict[str, float]) -> None:
        """Store the result GLB and end the job (for dispatchers that hand over the bytes)."""
        if self.db.job(job_id) is None:
            raise JobGone(job_id)
        ref = self.blobs.write(job_id, "result", glb)
        self.succeed_sealed(job_id, worker, ref, hashlib.sha256(glb).hexdigest()[:32], parts, extra_timings)

    def succeed_sealed(
        self, job_id: str, worker: str, ref: BlobRef, etag: str, parts: list[dict], extra_timings: dict[str, float]
    ) -> None:
        """End the job with a result the worker already sealed to its blob file."""
        try:
            job = self.db.job(job_id)
            if job is None:
                raise JobGone(job_id)
            keep = job.result_retention_s or self.settings.result_retention_days * DAY
            expires = min(self.clock() + keep, job.purge_at)
            ending = _Ending(JobStatus.SUCCEEDED, "done", parts, progress=1.0, result=ref, etag=etag, expires_at=expires)
            self._end(job_id, worker, ending, extra_timings)
        except BaseException:
            self.blobs.unlink([ref.blob_id])  # never recorded: its key died with this function
            raise

    def fail(self, job_id: str, worker: str, code: str, message: str, parts: list[dict] | None = None) -> None:
        if code == "canceled":
            self._end(job_id, worker, _Ending(JobStatus.CANCELED, "canceled", parts or []))
        else:
            self._end(job_id, worker, _Ending(JobStatus.FAILED, "failed", parts or [], error_code=code, error_message=message))

    def worker_lost(self, job_id: str, worker: str | None, why: str) -> str:
        """The worker died: retry (back at the head of the queue) or, after max_attempts, fail."""
        now = self.clock()
        with self.db.write() as con:
            job = self.db.job(job_id)
            if job is None or job.status != "running" or (worker is not None and job.lease_owner != worker):
                return "gone"
            if job.attempts < self.settings.max_attempts and not job.cancel_requested:
                con.execute(
                    "UPDATE jobs SET status='queued', stage='queued', progress=0, lease_owner=NULL, lease_expires_at=NULL WHERE id=?",
                    (job_id,),
                )
                audit.append(self.db, con, now, "job.retried", job.owner, job_id)
                outcome = "retried"
            else:
                outcome = "failed"
        self.metrics.inc("partcrafter_worker_losses_total", owner=job.owner)
        if outcome == "failed":
            if job.cancel_requested:
                self.fail(job_id, job.lease_owner, "canceled", "")
            else:
                msg = f"The worker processing this job stopped unexpectedly ({why}) on {job.attempts} attempts; the job was not completed."
                self.fail(job_id, job.lease_owner, "worker_crashed", msg)
        return outcome

    def release(self, job_id: str, worker: str) -> None:
        """Graceful shutdown: back to the queue without using up an attempt."""
        with self.db.write() as con:
            con.execute(
                "UPDATE jobs SET status='queued', stage='queued', progress=0, lease_owner=NULL, lease_expires_at=NULL,"
                " attempts=MAX(attempts-1, 0) WHERE id=? AND status='running' AND lease_owner=?",
                (job_id, worker),
            )

    def recover_after_restart(self) -> int:
        """At start-up every 'running' job belonged to a previous process: retry or fail each."""
        rows = self.db.all("SELECT id FROM jobs WHERE status='running'")
        for r in rows:
            self.worker_lost(r["id"], None, "the server restarted")
        return len(rows)
