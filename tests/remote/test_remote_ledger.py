"""Consent ledger and pending-jobs store: append-only, durable, tolerant of torn lines."""

from __future__ import annotations

import json
from pathlib import Path

from partcrafter_blender.remote.consent import ConsentLedger
from partcrafter_blender.remote.pending import PendingJob, PendingJobs

SERVER = "https://gpu.example.com"


def test_consent_needed_until_accepted_and_again_for_a_new_policy(tmp_path: Path) -> None:
    ledger = ConsentLedger(tmp_path)
    assert ledger.needs_consent(SERVER, "v1", ask_every_time=False)
    ledger.record(host="gpu.example.com", server=SERVER, policy_version="v1", decision="declined", sha256="a" * 64)
    assert ledger.needs_consent(SERVER, "v1", ask_every_time=False)
    ledger.record(host="gpu.example.com", server=SERVER, policy_version="v1", decision="accepted", sha256="b" * 64)
    ledger.record(host="gpu.example.com", server=SERVER, policy_version="v1", decision="uploaded", sha256="c" * 64)
    assert not ledger.needs_consent(SERVER, "v1", ask_every_time=False)
    assert ledger.needs_consent(SERVER, "v1", ask_every_time=True)
    assert ledger.needs_consent(SERVER, "v2", ask_every_time=False)  # policy changed
    assert ledger.needs_consent("https://other.example.com", "v1", ask_every_time=False)


def test_ledger_is_append_only_json_lines(tmp_path: Path) -> None:
    ledger = ConsentLedger(tmp_path)
    ledger.record(host="h", server=SERVER, policy_version="v1", decision="accepted", sha256="d" * 64, width=10, height=20, size=300)
    first = ledger.path.read_bytes()
    ledger.record(host="h", server=SERVER, policy_version="v1", decision="withdrawn")
    assert ledger.path.read_bytes().startswith(first)
    rows = [json.loads(line) for line in ledger.path.read_text().splitlines()]
    assert [r["decision"] for r in rows] == ["accepted", "withdrawn"]
    assert {"time", "host", "policy_version", "decision", "sha256"} <= set(rows[0])
    assert rows[0]["sha256"] == "d" * 64 and rows[0]["bytes"] == 300
    assert ledger.needs_consent(SERVER, "v1", ask_every_time=False)  # withdrawn


def test_torn_line_is_not_a_consent(tmp_path: Path) -> None:
    ledger = ConsentLedger(tmp_path)
    ledger.path.write_text('{"time": "x", "server": "' + SERVER + '", "policy_version": "v1", "decision": "acc')
    assert ledger.entries() == []
    assert ledger.needs_consent(SERVER, "v1", ask_every_time=False)


def test_pending_jobs_survive_a_new_store_object(tmp_path: Path) -> None:
    PendingJobs(tmp_path).add(PendingJob(job_id="j1", server=SERVER, host="h", policy_version="v1", num_parts=3))
    PendingJobs(tmp_path).add(PendingJob(job_id="j2", server=SERVER, host="h", policy_version="v1"))
    store = PendingJobs(tmp_path)  # as after a restart
    assert [j.job_id for j in store.list()] == ["j1", "j2"]
    assert store.get(SERVER, "j1").num_parts == 3
    store.remove(SERVER, "j1")
    assert [j.job_id for j in PendingJobs(tmp_path).list()] == ["j2"]
    store.path.write_text("not json")
    assert store.list() == []


def test_pending_jobs_skip_entries_that_are_not_jobs(tmp_path: Path) -> None:
    store = PendingJobs(tmp_path)
    good = {"job_id": "j1", "server": SERVER, "host": "h", "policy_version": "v1"}
    store.path.write_text(json.dumps({"jobs": ["j0", 7, None, good, {"job_id": "no server"}]}))
    assert [j.job_id for j in store.list()] == ["j1"]
    store.path.write_text(json.dumps({"jobs": {"j1": good}}))
    assert store.list() == []
