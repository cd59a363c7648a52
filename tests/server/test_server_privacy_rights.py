"""The policy's rights on a real server process: erasure that erases (audit, WAL, file
modes), correction, restriction, objection, and a shorter retention per job."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sqlite3
import stat
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest
from partcrafter_server import audit
from partcrafter_server.clock import FixedClock, parse_iso
from partcrafter_server.context import build_context
from partcrafter_server.settings import Settings
from server_test_support import ISSUED_KEYS, Client, ServerProcess, png_bytes

DB = "partcrafter.sqlite3"


@pytest.fixture(scope="module")
def private_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of its own (its metrics move only with this module's requests), started under umask 022."""
    old = os.umask(0o022)
    try:
        srv = ServerProcess(tmp_path_factory.mktemp("private"))
        srv.start()
    finally:
        os.umask(old)
    yield srv
    srv.stop()


def _rows(server: ServerProcess, sql: str, args: tuple = ()) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(server.data_dir / DB)) as con:
        return con.execute(sql, args).fetchall()


def _db_and_wal_bytes(server: ServerProcess) -> bytes:
    return b"".join(
        (server.data_dir / name).read_bytes() for name in (DB, f"{DB}-wal") if (server.data_dir / name).exists()
    )


def test_erasure_unlinks_the_audit_trail_and_the_chain_still_verifies(server: ServerProcess, sample_png: bytes) -> None:
    c = Client(server, server.new_key())
    key_id = c.key.split("_")[1]
    try:
        jobs = [c.wait(c.submit(sample_png).json()["id"])["id"] for _ in range(2)]
        before = c.http.get("/v1/me").json()["audit_events"]
        assert {e["job_id"] for e in before} >= set(jobs)  # the holder sees their own trail, job ids included
        assert c.http.delete("/v1/me").status_code == 200

        me = c.http.get("/v1/me").json()
        assert me["audit_events"] == [] and me["jobs"] == []
        export = zipfile.ZipFile(io.BytesIO(c.http.get("/v1/me/export").content)).read("metadata.json").decode()
        assert not any(j in export for j in jobs)
        # nothing in the log names the holder or an erased job, in clear or otherwise
        log = json.dumps(_rows(server, "SELECT * FROM audit"))
        assert key_id not in log and not any(j in log for j in jobs)
        assert not any(j.encode() in _db_and_wal_bytes(server) for j in jobs)
        assert "intact" in server.cli("audit", "verify").stdout
    finally:
        c.close()


def test_erased_wrapped_keys_leave_the_database_and_its_wal(private_server: ServerProcess, sample_png: bytes) -> None:
    srv = private_server
    c = Client(srv, srv.new_key())
    try:
        done = c.wait(c.submit(sample_png).json()["id"])
        slow = c.submit(sample_png, {"engine": "slow", "steps": 200}).json()
        c.wait(slow["id"], until=("running",))
        wrapped = [w for (w,) in _rows(srv, "SELECT wrapped FROM blob_keys WHERE job_id IN (?, ?)", (done["id"], slow["id"]))]
        assert len(wrapped) == 2 and all(w in _db_and_wal_bytes(srv) for w in wrapped)

        assert c.http.delete(f"/v1/jobs/{done['id']}").status_code == 204
        assert wrapped[0] not in _db_and_wal_bytes(srv) or wrapped[1] not in _db_and_wal_bytes(srv)
        assert c.http.delete("/v1/me").json()["deleted_jobs"] == 1  # the running one
        on_disk = _db_and_wal_bytes(srv)
        assert not any(w in on_disk for w in wrapped)  # right after the erasure, while serving
        srv.stop()  # graceful
        on_disk = _db_and_wal_bytes(srv)
        assert not any(w in on_disk for w in wrapped)
    finally:
        c.close()
        srv.start()


def test_data_folder_and_database_files_are_private_whatever_the_umask(private_server: ServerProcess) -> None:
    srv = private_server
    c = Client(srv, srv.new_key())
    try:
        c.wait(c.submit(png_bytes(seed=4)).json()["id"])  # the WAL and SHM exist now
        assert stat.S_IMODE(srv.data_dir.stat().st_mode) == 0o700
        for name in (DB, f"{DB}-wal", f"{DB}-shm", "server.lock"):
            assert stat.S_IMODE((srv.data_dir / name).stat().st_mode) == 0o600, name
    finally:
        c.close()


def test_audit_entries_live_at_most_the_audit_retention(server: ServerProcess, tmp_path: Path) -> None:
    assert Client(server, None).http.get("/v1/policy").json()["audit_retention_days"] == 30
    with pytest.raises(ValueError):
        Settings(data_dir=tmp_path, audit_retention_days=31)
    clock = FixedClock(1_700_000_000.0)
    ctx = build_context(Settings(data_dir=tmp_path / "data", engine_plugins=[], audit_retention_days=2), clock)
    with ctx.db.write() as con:
        audit.append(ctx.db, con, clock.now, "key.created", "holder")
    clock.advance(1.5 * 86400)
    with ctx.db.write() as con:
        audit.append(ctx.db, con, clock.now, "me.exported", "holder")
    clock.advance(0.6 * 86400)  # the first entry is now 2.1 days old, the second 0.6
    assert ctx.sweeper.sweep().audit_pruned == 1
    assert [e["event"] for e in audit.events_of(ctx.db, "holder")] == ["me.exported"]
    assert audit.verify(ctx.db).ok


def test_correction_of_label_and_contact(server: ServerProcess) -> None:
    out = server.cli("keys", "create", "--holder-is-13-or-older", "--label", "Studio A", "--contact", "old@example.com")
    key = out.stdout.strip()
    ISSUED_KEYS.append(key)  # the final scan checks no log holds it
    c = Client(server, key)
    try:
        me = c.http.get("/v1/me").json()
        assert (me["key"]["label"], me["key"]["contact"]) == ("Studio A", "old@example.com")
        fixed = c.http.patch("/v1/me", json={"contact": "new@example.com", "label": "Studio B"})
        assert fixed.status_code == 200 and fixed.json()["key"]["contact"] == "new@example.com"
        assert c.http.get("/v1/me").json()["key"]["label"] == "Studio B"
        assert c.http.patch("/v1/me", json={"contact": None}).json()["key"]["contact"] is None
        assert "Studio B" in server.cli("keys", "list").stdout  # the operator sees the corrected label
        assert c.http.patch("/v1/me", json={"label": "x" * 101}).status_code == 400
        assert c.http.patch("/v1/me", json={"owner": "someone else"}).status_code == 400
        events = [e["event"] for e in c.http.get("/v1/me").json()["audit_events"]]
        assert {"me.contact_corrected", "me.label_corrected"} <= set(events)
    finally:
        c.close()


def test_restriction_accepts_no_job_starts_none_keeps_everything(server: ServerProcess, sample_png: bytes) -> None:
    a, b = Client(server, server.new_key()), Client(server, server.new_key())
    try:
        blocker = b.submit(sample_png, {"engine": "slow", "steps": 200}).json()
        b.wait(blocker["id"], until=("running",))  # the one worker is busy: a's job stays queued
        waiting = a.submit(sample_png).json()
        assert a.http.patch("/v1/me", json={"processing_restricted": True}).json()["processing_restricted"] is True

        refused = a.submit(sample_png)
        assert refused.status_code == 409 and refused.json()["code"] == "processing_restricted"
        b.http.post(f"/v1/jobs/{blocker['id']}/cancel")
        later = b.wait(b.submit(sample_png).json()["id"])  # queued after a's job, yet it ran first
        assert later["status"] == "succeeded"
        held = a.job(waiting["id"]).json()
        assert held["status"] == "queued" and held["input_deleted_at"] is None  # kept, not processed

        assert a.http.patch("/v1/me", json={"processing_restricted": False}).json()["processing_restricted"] is False
        assert a.wait(waiting["id"])["status"] == "succeeded"
        assert a.submit(sample_png).status_code == 202
        events = [e["event"] for e in a.http.get("/v1/me").json()["audit_events"]]
        assert "me.restricted" in events and "me.restriction_lifted" in events
    finally:
        for cl in (a, b):
            cl.http.delete("/v1/me")
            cl.close()


def _counters(c: Client) -> dict[str, str]:
    """Every counter line but the ones the /metrics request itself and the sweeper move."""
    lines = [line for line in c.http.get("/metrics").text.splitlines() if line and not line.startswith("#")]
    counters = {}
    for line in lines:
        name, _, value = line.rpartition(" ")
        if "_total" in name and 'route="/metrics"' not in name and not name.startswith("partcrafter_sweeps_total"):
            counters[name] = value
    return counters


def _use_the_service(c: Client, png: bytes) -> None:
    job = c.wait(c.submit(png).json()["id"])
    assert c.http.get(job["links"]["result"]).status_code == 200
    assert c.submit(b"GIF89a" + b"\0" * 64).status_code == 415
    assert c.http.get("/v1/jobs/job_nope").status_code == 404
    assert c.http.delete(f"/v1/jobs/{job['id']}").status_code == 204
    c.http.get("/v1/me")


def test_objection_leaves_the_holder_out_of_the_metrics(private_server: ServerProcess) -> None:
    objecting, counted = Client(private_server, private_server.new_key()), Client(private_server, private_server.new_key())
    try:
        assert objecting.http.patch("/v1/me", json={"analytics_objection": True}).json()["analytics_objection"] is True
        before = _counters(objecting)
        _use_the_service(objecting, png_bytes(seed=5))
        assert _counters(objecting) == before  # not one counter moved
        _use_the_service(counted, png_bytes(seed=6))  # the same use by anyone else is counted
        after = _counters(counted)
        assert after != before
        assert float(after['partcrafter_jobs_submitted_total']) == float(before.get("partcrafter_jobs_submitted_total", 0)) + 1

        objecting.http.patch("/v1/me", json={"analytics_objection": False})
        objecting.http.get("/v1/me")
        assert _counters(objecting) != after  # withdrawn: counted again
    finally:
        objecting.close()
        counted.close()


def test_a_job_may_keep_its_result_shorter_never_longer(server: ServerProcess, sample_png: bytes) -> None:
    c = Client(server, server.new_key())
    try:
        policy = c.http.get("/v1/policy").json()
        assert (policy["result_retention_minutes_min"], policy["result_retention_minutes_max"]) == (5, 7 * 1440)
        for bad in ("4", str(7 * 1440 + 1), "soon"):
            r = c.http.post(
                "/v1/jobs",
                files={"image": ("a.png", sample_png, "image/png")},
                data={"params": "{}", "policy_version": "2025-01-13", "result_retention_minutes": bad},
            )
            assert r.status_code == 422 and "result_retention_minutes" in r.json()["detail"], bad
        r = c.http.post(
            "/v1/jobs",
            files={"image": ("a.png", sample_png, "image/png")},
            data={"params": "{}", "policy_version": "2025-01-13", "result_retention_minutes": "10"},
        )
        assert r.status_code == 202 and r.json()["result_retention_minutes"] == 10
        done = c.wait(r.json()["id"])
        finished, expires = parse_iso(done["finished_at"]), parse_iso(done["result_expires_at"])
        assert abs(expires - finished - 600) < 1
        at = (datetime.fromtimestamp(finished, timezone.utc) + timedelta(minutes=11)).isoformat()
        assert json.loads(server.cli("sweep", "--at", at).stdout)["results_expired"] >= 1
        assert c.http.get(done["links"]["result"]).status_code == 410
        default = c.wait(c.submit(sample_png).json()["id"])
        assert default["result_retention_minutes"] is None
        assert parse_iso(default["result_expires_at"]) - parse_iso(default["finished_at"]) > 6.9 * 86400
    finally:
        c.http.delete("/v1/me")
        c.close()
