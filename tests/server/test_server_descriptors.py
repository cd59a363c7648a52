"""Open files stay flat under load: bursts of concurrent jobs from several holders, with pauses long enough for
the request thread pool's idle threads to end (anyio ends a thread idle for 10 s), must not grow the server's
descriptors, and its SQLite handles stay bounded by the threads alive to hold them."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest
from server_test_support import Client, ServerProcess, png_bytes

HOLDERS = 8
BURSTS = 5
JOBS_PER_BURST = 16
IDLE_S = 11  # longer than anyio's worker-thread idle time, so each burst meets fresh threads
SLACK_FDS = 6  # sockets and pipes in flight when the count is taken


@pytest.fixture(scope="module")
def fd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("fds"), env={"PARTCRAFTER_SERVER_ACCESS_LOG": "false"})
    srv.start()
    yield srv
    srv.stop()


def _fd_targets(pid: int) -> list[str]:
    out = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            out.append(os.readlink(fd))
        except FileNotFoundError:  # closed while listing
            pass
    return out


def _threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def _burst(clients: list[Client], seed: int) -> None:
    def one(i: int) -> str:
        c = clients[i % len(clients)]
        r = c.submit(png_bytes(seed=seed * 100 + i))
        assert r.status_code in (200, 201, 202), r.text
        return c.wait(r.json()["id"], timeout=120)["status"]

    with ThreadPoolExecutor(JOBS_PER_BURST) as pool:
        assert set(pool.map(one, range(JOBS_PER_BURST))) == {"succeeded"}


def test_open_files_stay_flat_over_bursts(fd_server: ServerProcess) -> None:
    pid = fd_server.proc.pid
    clients = [Client(fd_server, fd_server.new_key()) for _ in range(HOLDERS)]
    db_file = str(fd_server.data_dir / "partcrafter.sqlite3")
    totals, sqlite_handles = [], []
    try:
        for burst in range(BURSTS):
            _burst(clients, burst)
            time.sleep(IDLE_S)
            targets = _fd_targets(pid)
            totals.append(len(targets))
            sqlite_handles.append(sum(t in (db_file, db_file + "-wal") for t in targets))
            # each live thread holds at most one connection: its database file and its WAL
            assert sqlite_handles[-1] <= 2 * _threads(pid), (sqlite_handles, _threads(pid))
    finally:
        for c in clients:
            c.close()
    print(f"open files after each burst {totals}, sqlite handles {sqlite_handles}")
    assert totals[-1] <= totals[0] + SLACK_FDS, totals
    assert sqlite_handles[-1] <= sqlite_handles[0] + 2, sqlite_handles
