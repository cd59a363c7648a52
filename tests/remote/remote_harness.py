"""A real inference server process on loopback, and a counting, fault-injecting
reverse proxy in front of it. Shared by tests/remote and the Blender server tests
(they load this file by path)."""

from __future__ import annotations

import http.client
import json
import re
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]
SHARED = (REPO / ".." / "shared").resolve()
IMAGES = SHARED / "images"
SAMPLE_IMAGE = IMAGES / "np3_5bbc755b07924fcba6ccd702191f90df.png"
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    tls: tuple[Path, Path] | None = None  # (cert, key)
    port: int = 0
    key: str = ""
    proc: subprocess.Popen | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PARTCRAFTER_SERVER_")}
        env.update(
            PARTCRAFTER_SERVER_DATA_DIR=str(self.data_dir),
            PARTCRAFTER_SERVER_SWEEP_INTERVAL_S="3600",
            PARTCRAFTER_SERVER_HEARTBEAT_S="0.5",
            PARTCRAFTER_SERVER_ENGINE_PLUGINS='["remote_slow_engine"]',
            PARTCRAFTER_SERVER_ALLOWED_ENGINES='["relief", "partcrafter", "remote_slow", "remote_failing"]',
            PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).parent), str(REPO), os.environ.get("PYTHONPATH", "")])),
        )
        env.update(self.env)
        return env

    def create_key(self) -> str:
        out = subprocess.run(
            [PYTHON, "-m", "partcrafter_server", "keys", "create", "--holder-is-13-or-older"],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if out.returncode != 0:
            raise RuntimeError(f"keys create failed: {out.stderr}")
        return out.stdout.strip().splitlines()[-1]

    def start(self) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.key:
            self.key = self.create_key()
        self.port = self.port or free_port()  # a restart keeps its address
        env = self._env()
        if self.tls:
            env.update(PARTCRAFTER_SERVER_SSL_CERTFILE=str(self.tls[0]), PARTCRAFTER_SERVER_SSL_KEYFILE=str(self.tls[1]))
        self.log = self.data_dir / f"serve-{self.port}.log"
        with open(self.log, "wb") as log:  # the child keeps its own handle
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "partcrafter_server", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not start in 90 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, **env: str) -> None:
        self.stop()
        self.env.update(env)
        self.start()


class FaultProxy:
    """Forwards to the server; counts requests; injects one kind of fault per path.

    faults: {regex on "METHOD /path": mode}; modes: "status:NNN[:code[:retry-after]]",
    "truncate", "corrupt"; a "once:" prefix removes the fault after its first use.
    on_request(method, path), when set, runs on the proxy's thread as each request
    arrives, before it is forwarded (the client is waiting for its answer meanwhile).
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.requests: list[tuple[str, str]] = []
        self.faults: dict[str, str] = {}
        self.on_request: Callable[[str, str], None] | None = None
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    proxy.requests.append((self.command, self.path))
                    line = f"{self.command} {self.path}"
                    key = next((k for k in proxy.faults if re.search(k, line)), None)
                    mode = proxy.faults.get(key, "") if key else ""
                    if mode.startswith("once:"):
                        del proxy.faults[key]
                        mode = mode[5:]
                if proxy.on_request is not None:
                    proxy.on_request(self.command, self.path)
                if mode.startswith("status:"):
                    self._status(mode)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "accept-encoding")}
                try:  # closed even when the upstream is down (a crash test)
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                if mode == "corrupt" and resp.status == 200:
                    data = data[:20] + bytes(b ^ 0x5A for b in data[20:60]) + data[60:]
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                if mode == "truncate" and resp.status == 200:
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.end_headers()
                self.wfile.write(data)

            def _status(self, mode: str) -> None:
                _, status, *rest = mode.split(":")
                code = rest[0] if rest else "injected"
                problem = json.dumps({"type": "about:blank", "title": "Injected", "status": int(status), "detail": f"injected {code}", "code": code}).encode()
                self.send_response(int(status))
                self.send_header("Content-Type", "application/problem+json")
                if len(rest) > 1:
                    self.send_header("Retry-After", rest[1])
                self.send_header("Content-Length", str(len(problem)))
                self.end_headers()
                self.wfile.write(problem)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def count(self, method: str | None = None, prefix: str = "") -> int:
        with self._lock:
            return sum(1 for m, p in self.requests if (method is None or m == method) and p.startswith(prefix))

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.faults.clear()
            self.on_request = None

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
