"""Test support: a real `python -m partcrafter_server serve` on 127.0.0.1 and a thin HTTP client."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from partcrafter_blender.api_v1 import FINISHED_STATES

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SHARED = (REPO / ".." / "shared").resolve()
IMAGES = SHARED / "images"
POLICY = "2025-01-13"

BASE_ENV = {
    "PARTCRAFTER_SERVER_ENGINE_PLUGINS": '["server_test_engines"]',
    "PARTCRAFTER_SERVER_ALLOWED_ENGINES": '["instant","slow","stubborn","halfway","offline_probe","relief","partcrafter"]',
    "PARTCRAFTER_SERVER_DEFAULT_ENGINE": "instant",
    "PARTCRAFTER_SERVER_CPU_WORKERS": "1",
    "PARTCRAFTER_SERVER_HEARTBEAT_S": "0.5",
    "PARTCRAFTER_SERVER_MAX_ACTIVE_JOBS_PER_KEY": "50",
    "PARTCRAFTER_SERVER_SUBMIT_RATE_PER_MINUTE": "600",
    "PARTCRAFTER_SERVER_REQUEST_RATE_PER_MINUTE": "100000",
    "PARTCRAFTER_SERVER_ACCESS_LOG": "true",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


STARTED: list["ServerProcess"] = []  # every server of the session; the final scan covers them all
ISSUED_KEYS: list[str] = []  # every API key handed out; the log scan looks for them
SCANNED_FOLDERS: list[Path] = []  # other folders the final scan covers (a Ray cluster's temp, spill and TMPDIR)
UPLOAD_NAME = "secret-holiday-photo.png"  # the client's file name; must never be logged or stored


class ServerProcess:
    """One server process over a data dir that survives restarts (crash tests restart it)."""

    def __init__(self, root: Path, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.tmp_dir = root / "tmp"
        self.pid_dir = root / "pids"
        self.log_path = root / "server.log"
        for d in (self.data_dir, self.tmp_dir, self.pid_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.scheme = "http"
        self.env = {
            **os.environ,
            **BASE_ENV,
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
            "PARTCRAFTER_SERVER_DATA_DIR": str(self.data_dir),
            "PARTCRAFTER_TEST_PIDDIR": str(self.pid_dir),
            "TMPDIR": str(self.tmp_dir),  # the scan checks nothing plaintext landed here
            **(env or {}),
        }
        self.env.pop("PARTCRAFTER_WEIGHTS", None)  # the PartCrafter engine stays unconfigured here
        self.proc: subprocess.Popen | None = None
        STARTED.append(self)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run(
            [sys.executable, "-m", "partcrafter_server", *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        with open(self.log_path, "a") as log:  # CLI output is log too: the scan covers it
            log.write("<key shown once on stdout>\n" if args[:2] == ("keys", "create") and out.stdout.strip() else out.stdout)
            log.write(out.stderr)
        if check and out.returncode != 0:
            raise AssertionError(f"partcrafter-server {' '.join(args)} failed: {out.stderr}")
        return out

    def new_key(self) -> str:
        """Issue a key straight into the real database (the CLI itself is tested separately; this is faster)."""
        from partcrafter_server.auth import create_key
        from partcrafter_server.store import Database

        key = create_key(Database(self.data_dir / "partcrafter.sqlite3"), time.time(), True)[1]
        ISSUED_KEYS.append(key)
        return key

    def start(self, extra: tuple[str, ...] = (), client_kwargs: dict[str, Any] | None = None) -> None:
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "partcrafter_server", "serve", "--host", "127.0.0.1", "--port", str(self.port), *extra],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1, **(client_kwargs or {})).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("server did not come up")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def worker_pids(self) -> set[int]:
        return {int(p.stem) for p in self.pid_dir.glob("*.pid")}

    def healthy(self) -> bool:
        return httpx.get(f"{self.url}/healthz", timeout=5).json() == {"status": "ok"}


class Client:
    """A thin API client for tests: one key, real HTTP."""

    def __init__(self, server: ServerProcess, key: str | None) -> None:
        self.server = server
        self.key = key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=server.url, headers=headers, timeout=30)

    def submit(
        self,
        image: bytes,
        params: dict | None = None,
        policy: str | None = POLICY,
        filename: str = UPLOAD_NAME,
        content_type: str = "image/png",
        headers: dict | None = None,
    ) -> httpx.Response:
        data = {"params": json.dumps(params or {})}
        if policy is not None:
            data["policy_version"] = policy
        return self.http.post("/v1/jobs", files={"image": (filename, image, content_type)}, data=data, headers=headers or {})

    def job(self, job_id: str) -> httpx.Response:
        return self.http.get(f"/v1/jobs/{job_id}")

    def wait(
        self, job_id: str, until: Iterable[str] = FINISHED_STATES, timeout: float = 60
    ) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.job(job_id)
            assert r.status_code == 200, r.text
            if r.json()["status"] in until:
                return r.json()
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} stuck in {r.json()['status']}")

    def close(self) -> None:
        self.http.close()


def png_bytes(size: tuple[int, int] = (64, 48), seed: int = 0, **save: Any) -> bytes:
    rng = np.random.default_rng(seed)
    arr = np.full((size[1], size[0], 3), 255, np.uint8)
    arr[size[1] // 4 : 3 * size[1] // 4, size[0] // 4 : 3 * size[0] // 4] = rng.integers(0, 200, 3, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", **save)
    return buf.getvalue()
