"""Retention by time travel: the real sweep command at a chosen time, and the sweeper with an injected clock."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from partcrafter_server.clock import FixedClock
from partcrafter_server.context import build_context
from partcrafter_server.retention import ORPHAN_GRACE_S
from partcrafter_server.settings import Settings
from server_test_support import Client, ServerProcess, png_bytes


def _at(days: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(days=days)).isoformat()


def test_results_expire_then_everything_is_purged(server: ServerProcess) -> None:
    c = Client(server, server.new_key())
    try:
        job = c.wait(c.submit(png_bytes(seed=11)).json()["id"])
        expires = datetime.fromisoformat(job["result_expires_at"].replace("Z", "+00:00"))
        assert timedelta(days=6.99) < expires - datetime.now(timezone.utc) <= timedelta(days=7)
        report = json.loads(server.cli("sweep", "--at", _at(6.9)).stdout)
        assert report["results_expired"] == 0 and c.http.get(job["links"]["result"]).status_code == 200

        report = json.loads(server.cli("sweep", "--at", _at(7.01)).stdout)
        assert report["results_expired"] >= 1
        gone = c.http.get(job["links"]["result"])
        assert gone.status_code == 410 and gone.json()["code"] == "expired"
        assert c.job(job["id"]).json()["status"] == "expired"
        with sqlite3.connect(server.data_dir / "partcrafter.sqlite3") as con:
            assert con.execute("SELECT COUNT(*) FROM blob_keys WHERE job_id=?", (job["id"],)).fetchone()[0] == 0

        report = json.loads(server.cli("sweep", "--at", _at(30.01)).stdout)
        assert report["jobs_purged"] >= 1
        assert c.job(job["id"]).status_code == 404  # nothing outlives 30 days
    finally:
        c.close()


def _context(tmp_path: Path, clock: FixedClock, **kw):
    settings = Settings(data_dir=tmp_path / "data", engine_plugins=[], **kw)
    return build_context(settings, clock)


def test_sweeper_with_injected_clock(tmp_path: Path) -> None:
    clock = FixedClock(1_700_000_000.0)
    ctx = _context(tmp_path, clock, result_retention_days=2, max_retention_days=3)
    svc = ctx.service
    params = {"engine": "instant", "num_parts": 1, "seed": 0, "steps": 1, "guidance": 1.0, "quality": "draft"}
    job = svc.submit("owner", png_bytes(), params, "2025-01-13")
    leased = svc.lease_next("w")
    assert leased.id == job.id and leased.attempts == 1
    clock.advance(2 * 86400)  # finishes late: the result may keep at most until the 3-day ceiling
    svc.succeed(job.id, "w", b"glTF-result", [], {})
    done = ctx.db.job(job.id)
    assert done.input_blob is None and done.input_deleted_at == clock.now
    assert done.result_expires_at == done.purge_at == job.created_at + 3 * 86400

    clock.advance(86400 - 1)
    assert ctx.sweeper.sweep().results_expired == 0
    clock.advance(2)
    report = ctx.sweeper.sweep()
    assert report.results_expired == 1 and report.jobs_purged == 1  # both deadlines reached together
    assert ctx.db.job(job.id) is None and ctx.blobs.files() == []


def test_sweeper_recovers_orphans_and_leftover_inputs(tmp_path: Path) -> None:
    clock = FixedClock(time.time())
    ctx = _context(tmp_path, clock)
    params = {"engine": "instant", "num_parts": 1, "seed": 0, "steps": 1, "guidance": 1.0, "quality": "draft"}
    job = ctx.service.submit("owner", png_bytes(), params, "2025-01-13")
    # a crash after the job failed but before its input was erased
    with ctx.db.write() as con:
        con.execute("UPDATE jobs SET status='failed', finished_at=? WHERE id=?", (clock.now, job.id))
    # a crash between writing a blob and recording its key: an old file nobody can decrypt
    stray = ctx.blobs.write("job_gone", "result", b"glTF whatever")
    old = time.time() - ORPHAN_GRACE_S - 10
    os.utime(ctx.blobs.path(stray.blob_id), (old, old))
    # a key whose job row vanished
    other = ctx.blobs.write("job_vanished", "input", b"x")
    with ctx.db.write() as con:
        ctx.blobs.record(con, other, clock.now)
    fresh = ctx.blobs.write("job_in_flight", "input", b"y")  # just written, key not recorded yet: left alone

    report = ctx.sweeper.sweep()
    assert (report.inputs_erased, report.orphan_files, report.orphan_keys) == (1, 1, 1)
    assert ctx.db.job(job.id).input_deleted_at == clock.now
    remaining = {p.name for p in ctx.blobs.files()}
    assert remaining == {fresh.blob_id}


def test_lapsed_lease_is_retried_then_failed(tmp_path: Path) -> None:
    clock = FixedClock(time.time())
    ctx = _context(tmp_path, clock, lease_s=10, max_attempts=2)
    params = {"engine": "instant", "num_parts": 1, "seed": 0, "steps": 1, "guidance": 1.0, "quality": "draft"}
    job = ctx.service.submit("owner", png_bytes(), params, "2025-01-13")
    ctx.service.lease_next("w1")
    clock.advance(11)
    assert ctx.sweeper.sweep().leases_recovered == 1
    assert ctx.db.job(job.id).status == "queued"
    ctx.service.lease_next("w2")
    clock.advance(11)
    ctx.sweeper.sweep()
    failed = ctx.db.job(job.id)
    assert failed.status == "failed" and failed.error_code == "worker_crashed" and failed.input_blob is None


def test_lease_next_by_engine_takes_the_oldest_job_of_that_engine(tmp_path: Path) -> None:
    """The Ray dispatcher's feeders lease per engine: a slow engine's queue never blocks another's."""
    ctx = _context(tmp_path, FixedClock(1_700_000_000.0))
    params = {"num_parts": 1, "seed": 0, "steps": 1, "guidance": 1.0, "quality": "draft"}
    first = ctx.service.submit("owner", png_bytes(), {**params, "engine": "partcrafter"}, "2025-01-13")
    second = ctx.service.submit("owner", png_bytes(), {**params, "engine": "relief"}, "2025-01-13")
    assert ctx.service.lease_next("w", "relief").id == second.id
    assert ctx.service.lease_next("w", "relief") is None
    assert ctx.service.lease_next("w").id == first.id  # no engine: the oldest of all, as before
