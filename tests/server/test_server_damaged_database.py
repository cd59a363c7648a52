"""A damaged database, for real: a truncated file or a garbage write-ahead log stops `serve` with one line
that names the file and the way back; `partcrafter-server check` tells a sound data folder from a damaged one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from server_test_support import Client, ServerProcess, png_bytes


def _server_with_jobs(tmp_path: Path, count: int = 3) -> tuple[ServerProcess, str, list[str]]:
    server = ServerProcess(tmp_path)
    server.start()
    key = server.new_key()
    c = Client(server, key)
    try:
        ids = [c.wait(c.submit(png_bytes(seed=60 + i)).json()["id"])["id"] for i in range(count)]
    finally:
        c.close()
    server.stop()
    return server, key, ids


def _serve_once(server: ServerProcess) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "partcrafter_server", "serve", "--host", "127.0.0.1", "--port", str(server.port)],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _assert_one_line_refusal(out: subprocess.CompletedProcess, names: Path) -> str:
    assert out.returncode == 1, out.stderr
    line = out.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, out.stderr
    assert str(names) in line and "partcrafter-server check" in line and "backup" in line
    return line


def _jobs_after_restart(server: ServerProcess, key: str, ids: list[str]) -> None:
    """The recovered server starts, is ready, and still has every job and result."""
    server.start()
    c = Client(server, key)
    try:
        assert c.http.get("/readyz").status_code == 200
        for job_id in ids:
            assert c.job(job_id).json()["status"] == "succeeded"
            assert c.http.get(f"/v1/jobs/{job_id}/result").status_code == 200
        assert server.cli("check").returncode == 0
    finally:
        c.close()
        server.stop()


def test_truncated_database_refuses_to_start_in_one_line_and_recovers_from_a_backup(tmp_path: Path) -> None:
    server, key, ids = _server_with_jobs(tmp_path)
    db = server.data_dir / "partcrafter.sqlite3"
    backup = tmp_path / "backup.sqlite3"
    shutil.copy(db, backup)
    damaged = db.read_bytes()[: db.stat().st_size // 2]
    db.write_bytes(damaged)

    line = _assert_one_line_refusal(_serve_once(server), db)
    assert "damaged" in line and ".dump" in line
    assert db.read_bytes() == damaged  # nothing touched: the operator's copy is still the evidence
    checked = server.cli("check", check=False)
    assert checked.returncode == 1 and "damaged" in checked.stdout

    shutil.copy(backup, db)  # the first recovery step the line names
    _jobs_after_restart(server, key, ids)


def test_truncated_database_rebuilt_with_sqlite3_dump_serves_again(tmp_path: Path) -> None:
    if shutil.which("sqlite3") is None:
        pytest.skip("the sqlite3 command-line tool is not installed")
    server, key, ids = _server_with_jobs(tmp_path)
    db = server.data_dir / "partcrafter.sqlite3"
    db.write_bytes(db.read_bytes()[: db.stat().st_size - 4096])  # the last page is gone
    assert _serve_once(server).returncode == 1

    broken = db.with_name(db.name + ".broken")  # the second recovery step, as the line spells it
    os.replace(db, broken)
    dump = subprocess.run(["sqlite3", str(broken), ".dump"], capture_output=True, check=True).stdout
    subprocess.run(["sqlite3", str(db)], input=dump, check=True)
    os.chmod(db, 0o600)
    _jobs_after_restart(server, key, ids)


def test_garbage_write_ahead_log_refuses_to_start_and_is_kept(tmp_path: Path) -> None:
    server, key, ids = _server_with_jobs(tmp_path)
    db = server.data_dir / "partcrafter.sqlite3"
    wal = db.with_name(db.name + "-wal")
    garbage = os.urandom(64 * 1024)
    wal.write_bytes(garbage)

    line = _assert_one_line_refusal(_serve_once(server), wal)
    assert "write-ahead log" in line
    assert wal.read_bytes() == garbage  # SQLite would have ignored and then deleted it
    checked = server.cli("check", check=False)
    assert checked.returncode == 1 and "write-ahead log" in checked.stdout
    assert wal.read_bytes() == garbage

    os.replace(wal, tmp_path / "wal.aside")  # the recovery step the line names
    _jobs_after_restart(server, key, ids)


def test_check_reports_a_missing_blob_file_and_an_orphan(tmp_path: Path) -> None:
    server, key, ids = _server_with_jobs(tmp_path, count=2)
    sound = server.cli("check")
    assert sound.returncode == 0 and "sound" in sound.stdout

    blobs = sorted(p for p in (server.data_dir / "blobs").glob("*/*"))
    assert len(blobs) == 2  # two results; inputs were erased when their jobs ended
    blobs[0].unlink()
    orphan = blobs[1].parent / ("ab" * 16)
    orphan.write_bytes(b"PCB1" + os.urandom(64))
    os.utime(orphan, (0, 0))  # long past the grace a fresh file gets while its key is being recorded
    hurt = server.cli("check", check=False)
    assert hurt.returncode == 1
    assert f"1 blob file(s) missing: {blobs[0].name}" in hurt.stdout
    assert "1 orphan blob file(s)" in hurt.stdout
