"""The unfinished-jobs file: an unreadable one is kept aside, never overwritten."""

from __future__ import annotations

import json

import pytest

from partcrafter_blender.remote.pending import PENDING_FILE, PendingJob, PendingJobs


def job(job_id: str) -> PendingJob:
    return PendingJob(job_id=job_id, server="https://gpu.example", host="gpu.example", policy_version="2024-06-01")


@pytest.mark.parametrize("damaged", ['{"jobs": [{"job_id": "lost-1", "server"', "\xff\xfe not text", '["a list"]'])
def test_an_unreadable_list_is_set_aside_before_a_new_one_is_written(tmp_path, capsys, damaged):
    path = tmp_path / PENDING_FILE
    path.write_bytes(damaged.encode("latin-1"))
    original = path.read_bytes()
    pending = PendingJobs(tmp_path)
    assert pending.list() == [] and pending.notice == ""
    pending.remove("https://gpu.example", "lost-1")  # nothing to remove: the file is left alone
    assert path.read_bytes() == original and capsys.readouterr().err == ""

    pending.add(job("new-1"))

    backups = sorted(tmp_path.glob(f"{PENDING_FILE}.corrupt-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == original
    assert [j.job_id for j in PendingJobs(tmp_path).list()] == ["new-1"]
    assert str(backups[0]) in pending.notice
    assert capsys.readouterr().err.count("could not be read") == 1

    pending.add(job("new-2"))  # the new list is readable: no second backup, no second report
    assert sorted(tmp_path.glob(f"{PENDING_FILE}.corrupt-*")) == backups
    assert capsys.readouterr().err == ""
    assert [j.job_id for j in pending.list()] == ["new-1", "new-2"]


def test_two_damaged_lists_in_one_second_keep_both_backups(tmp_path):
    path = tmp_path / PENDING_FILE
    for text in ("first damage", "second damage"):
        path.write_text(text, encoding="utf-8")
        PendingJobs(tmp_path).add(job("x"))
    kept = {p.read_text(encoding="utf-8") for p in tmp_path.glob(f"{PENDING_FILE}.corrupt-*")}
    assert kept == {"first damage", "second damage"}


def test_a_readable_list_is_kept_as_is(tmp_path):
    pending = PendingJobs(tmp_path)
    pending.add(job("a"))
    pending.add(job("b"))
    pending.remove("https://gpu.example", "a")
    assert [j.job_id for j in pending.list()] == ["b"]
    assert json.loads((tmp_path / PENDING_FILE).read_text(encoding="utf-8"))["jobs"][0]["job_id"] == "b"
    assert not list(tmp_path.glob("*.corrupt-*"))
