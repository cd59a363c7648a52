"""A full disk, for real: the server's data folder on a small tmpfs, filled with a file."""

from __future__ import annotations

import errno
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from plaintext_scan import scan_disk
from server_test_support import STARTED, Client, ServerProcess, png_bytes

SIZE_MB, FLOOR_MB = 24, 8


@pytest.fixture()
def small_disk_server(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path, env={"PARTCRAFTER_SERVER_MIN_FREE_DISK_MB": str(FLOOR_MB)})
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m,mode=0700", "tmpfs", str(server.data_dir)], check=True)
    try:
        yield server
    finally:
        try:
            server.stop()
            scan_disk([server])  # before the tmpfs and all it holds go away
        finally:
            STARTED.remove(server)
            subprocess.run(["umount", str(server.data_dir)], check=True)


def _fill(folder: Path, leave_bytes: int) -> Path:
    """Write a filler file until the file system has about `leave_bytes` free (0: until it is full)."""
    filler = folder / "filler.bin"
    chunk = b"\0" * 65536
    with open(filler, "wb") as f:
        try:
            while True:
                if shutil.disk_usage(folder).free - len(chunk) < leave_bytes:
                    break
                f.write(chunk)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_disk_below_its_floor_refuses_new_jobs_with_507_and_says_so_in_readyz(small_disk_server: ServerProcess) -> None:
    server = small_disk_server
    server.start()
    c = Client(server, server.new_key())
    try:
        assert c.wait(c.submit(png_bytes(seed=31)).json()["id"])["status"] == "succeeded"
        assert httpx.get(f"{server.url}/readyz").status_code == 200

        filler = _fill(server.data_dir, (FLOOR_MB - 3) * 1024 * 1024)
        refused = c.submit(png_bytes(seed=32))
        assert refused.status_code == 507, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "insufficient_storage" and "min_free_disk_mb" in refused.json()["detail"]
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 503 and ready.json()["code"] == "insufficient_storage"
        assert httpx.get(f"{server.url}/healthz").status_code == 200  # alive, only not ready

        filler.unlink()  # space is back: jobs are taken again
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        assert c.wait(c.submit(png_bytes(seed=33)).json()["id"])["status"] == "succeeded"
    finally:
        c.close()


def test_a_disk_that_fills_up_completely_answers_507_and_leaves_no_orphan_file(small_disk_server: ServerProcess) -> None:
    server = small_disk_server
    server.env["PARTCRAFTER_SERVER_MIN_FREE_DISK_MB"] = "0"  # no floor: the write itself meets the full disk
    server.start()
    c = Client(server, server.new_key())
    try:
        filler = _fill(server.data_dir, 0)
        refused = c.submit(png_bytes((512, 512), seed=34))
        assert refused.status_code == 507, refused.text
        assert refused.json()["code"] == "insufficient_storage"
        assert list((server.data_dir / "blobs").glob("*.part")) == []
        filler.unlink()
        assert c.wait(c.submit(png_bytes(seed=35)).json()["id"])["status"] == "succeeded"
    finally:
        c.close()


def test_a_job_whose_end_meets_a_full_disk_fails_once_space_is_back_never_stays_running(
    small_disk_server: ServerProcess,
) -> None:
    server = small_disk_server
    server.env["PARTCRAFTER_SERVER_MIN_FREE_DISK_MB"] = "0"
    server.start()
    c = Client(server, server.new_key())
    try:
        job = c.submit(png_bytes(seed=36), {"engine": "slow", "steps": 40}).json()
        c.wait(job["id"], until=("running",))
        filler = _fill(server.data_dir, 0)  # full while it runs: its heartbeat or its end cannot be written
        time.sleep(6)  # the job would have ended by now (2 s of work)
        filler.unlink()
        done = c.wait(job["id"], timeout=15)  # soon after space is back, not when its lease runs out (60 s)
        assert done["status"] == "failed" and done["error"]["code"] == "insufficient_storage", done
        assert list((server.data_dir / "blobs").glob("*.part")) == []
        assert c.wait(c.submit(png_bytes(seed=37)).json()["id"])["status"] == "succeeded"  # and the worker goes on
    finally:
        c.close()
