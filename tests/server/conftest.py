"""Fixtures: one shared server process for the session, keys and clients."""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from plaintext_scan import scan_disk, scan_logs  # noqa: E402
from ray_cluster import RayCluster  # noqa: E402
from server_test_support import SCANNED_FOLDERS, STARTED, Client, ServerProcess, png_bytes  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def plaintext_scan() -> Iterator[None]:
    """Set up first, so torn down last: once every server of the session has stopped,
    scan what they left on disk and in their logs (a failure is a teardown error)."""
    yield
    if STARTED:
        scan_disk(STARTED, SCANNED_FOLDERS)
        scan_logs(STARTED)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("server"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """One real local Ray cluster for the whole session (starting one takes seconds), always stopped.
    Its folders sit in a short temp folder, not pytest's deep one: Ray's unix socket paths under it
    must fit in 107 bytes. Removed at exit, after the plaintext scan has read them."""
    root = Path(tempfile.mkdtemp(prefix="pcray-"))
    atexit.register(shutil.rmtree, root, True)
    cluster = RayCluster(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def server_keys(server: ServerProcess) -> list[str]:
    return [server.new_key() for _ in range(3)]


@pytest.fixture()
def client(server: ServerProcess, server_keys: list[str]) -> Iterator[Client]:
    c = Client(server, server_keys[0])
    yield c
    c.close()


@pytest.fixture()
def other_client(server: ServerProcess, server_keys: list[str]) -> Iterator[Client]:
    c = Client(server, server_keys[1])
    yield c
    c.close()


@pytest.fixture(scope="session")
def sample_png() -> bytes:
    return png_bytes((96, 80), seed=1)
