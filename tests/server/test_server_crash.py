"""Crash safety: a worker killed mid-job, a stuck engine, a server killed and restarted. No job lost."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Iterator

import pytest
from server_test_support import Client, ServerProcess, png_bytes

ENV = {"PARTCRAFTER_SERVER_CANCEL_GRACE_S": "1", "PARTCRAFTER_SERVER_JOB_TIMEOUT_S": "4"}


@pytest.fixture(scope="module")
def crash_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("crash"), env=ENV)
    srv.start()
    yield srv
    srv.stop()


def _running_worker_pid(srv: ServerProcess, client: Client, job_id: str) -> int:
    client.wait(job_id, until=("running",))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = srv.worker_pids()
        if pids:
            return max(pids, key=lambda p: (srv.pid_dir / f"{p}.pid").stat().st_mtime)
        time.sleep(0.05)
    raise AssertionError("the slow engine never reported its pid")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _clear_pids(srv: ServerProcess) -> None:
    for p in srv.pid_dir.glob("*.pid"):
        p.unlink()


def test_worker_killed_once_job_is_retried(crash_server: ServerProcess) -> None:
    c = Client(crash_server, crash_server.new_key())
    _clear_pids(crash_server)
    job = c.submit(png_bytes(seed=21), {"engine": "slow", "steps": 40}).json()
    pid = _running_worker_pid(crash_server, c, job["id"])
    _clear_pids(crash_server)
    os.kill(pid, signal.SIGKILL)
    final = c.wait(job["id"], timeout=90)
    assert final["status"] == "succeeded", final
    events = [e["event"] for e in c.http.get("/v1/me").json()["audit_events"] if e["job_id"] == job["id"]]
    assert events.count("job.started") == 2 and "job.retried" in events
    assert crash_server.healthy()
    c.close()


def test_worker_killed_twice_job_fails_clearly(crash_server: ServerProcess) -> None:
    c = Client(crash_server, crash_server.new_key())
    _clear_pids(crash_server)
    job = c.submit(png_bytes(seed=22), {"engine": "slow", "steps": 100}).json()
    for _ in range(2):
        pid = _running_worker_pid(crash_server, c, job["id"])
        _clear_pids(crash_server)
        os.kill(pid, signal.SIGKILL)
        c.wait(job["id"], until=("queued", "failed"), timeout=30)
    final = c.wait(job["id"], timeout=60)
    assert final["status"] == "failed" and final["error"]["code"] == "worker_crashed"
    assert "stopped unexpectedly" in final["error"]["message"] and final["input_deleted_at"]
    # the pool replaced the worker: the next job runs
    assert c.wait(c.submit(png_bytes(seed=23)).json()["id"])["status"] == "succeeded"
    c.close()


def test_engine_ignoring_cancel_is_killed(crash_server: ServerProcess) -> None:
    c = Client(crash_server, crash_server.new_key())
    _clear_pids(crash_server)
    job = c.submit(png_bytes(seed=24), {"engine": "stubborn", "steps": 200}).json()
    pid = _running_worker_pid(crash_server, c, job["id"])
    c.http.post(f"/v1/jobs/{job['id']}/cancel")
    assert c.wait(job["id"], timeout=30)["status"] == "canceled"
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)
    assert c.wait(c.submit(png_bytes(seed=25)).json()["id"])["status"] == "succeeded"
    c.close()


def test_job_running_too_long_is_stopped(crash_server: ServerProcess) -> None:
    c = Client(crash_server, crash_server.new_key())
    job = c.submit(png_bytes(seed=26), {"engine": "stubborn", "steps": 200}).json()  # 10 s > 4 s limit
    final = c.wait(job["id"], timeout=60)
    assert final["status"] == "failed" and final["error"]["code"] == "timeout"
    c.close()


def test_server_killed_and_restarted_loses_no_job(crash_server: ServerProcess) -> None:
    c = Client(crash_server, crash_server.new_key())
    _clear_pids(crash_server)
    running = c.submit(png_bytes(seed=27), {"engine": "slow", "steps": 60}).json()
    queued = c.submit(png_bytes(seed=28), {"num_parts": 2}).json()
    worker = _running_worker_pid(crash_server, c, running["id"])
    crash_server.stop(signal.SIGKILL)
    deadline = time.monotonic() + 10  # the orphaned worker notices its server is gone and exits
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker)

    crash_server.start()
    c.close()
    c = Client(crash_server, c.key)
    first, second = c.wait(running["id"], timeout=90), c.wait(queued["id"], timeout=90)
    assert (first["status"], second["status"]) == ("succeeded", "succeeded"), (first["error"], second["error"])
    assert len(second["parts"]) == 2
    c.close()


def test_second_server_on_the_same_data_is_refused(crash_server: ServerProcess) -> None:
    twin = ServerProcess(crash_server.root, env=ENV)
    with pytest.raises(AssertionError, match="server exited"):
        twin.start()
    assert "Another partcrafter-server is already serving" in twin.log_path.read_text()
    assert crash_server.healthy()
