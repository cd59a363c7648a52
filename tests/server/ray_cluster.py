"""A real local Ray cluster for the tests: `ray start --head --block` on loopback, few CPUs.

Its temp folder (session logs, sockets), spill folder and the workers' TMPDIR all
live under a pytest tmp folder and are registered for the final plaintext scan.
Stopping sends SIGTERM to the `ray start` process (which stops what it started),
then, after a few seconds, kills by pid whatever is still in its session: no
raylet outlives the tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from server_test_support import HERE, SCANNED_FOLDERS, free_port

# single-machine cluster: every Ray process binds 127.0.0.1 instead of the host's address; token
# authentication explicitly off, so a token someone left in ~/.ray cannot split the cluster from its driver
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


class RayCluster:
    def __init__(
        self, root: Path, num_cpus: int = 4, object_store_bytes: int = 100 * 1024 * 1024, plugin_dirs: tuple[Path, ...] = (HERE,)
    ) -> None:
        self.root = root
        self.plugin_dirs = plugin_dirs  # where the replicas import engine plugins from
        self.temp_dir = root / "ray"  # short: Ray's unix socket paths must fit in 107 bytes
        self.spill_dir = root / "spill"
        self.tmp_dir = root / "tmp"
        self.pid_dir = root / "pids"  # the slow test engine writes its replica's pid here
        for d in (self.temp_dir, self.spill_dir, self.tmp_dir, self.pid_dir):
            d.mkdir(parents=True, exist_ok=True)
        SCANNED_FOLDERS.extend([self.temp_dir, self.spill_dir, self.tmp_dir])
        self.port = free_port()
        self.num_cpus, self.object_store_bytes = num_cpus, object_store_bytes
        self.log_path = root / "ray-start.log"
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "PARTCRAFTER_WEIGHTS"}
        env.update(LOOPBACK_ENV)
        # the replicas' environment: test engines importable, their pid files, their temp files
        env["PYTHONPATH"] = os.pathsep.join([*map(str, self.plugin_dirs), env.get("PYTHONPATH", "")])
        env["PARTCRAFTER_TEST_PIDDIR"] = str(self.pid_dir)
        env["TMPDIR"] = str(self.tmp_dir)
        command = [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={self.port}",
            f"--num-cpus={self.num_cpus}",
            "--num-gpus=0",
            f"--temp-dir={self.temp_dir}",
            f"--object-spilling-directory={self.spill_dir}",
            f"--object-store-memory={self.object_store_bytes}",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"ray start exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            if b"Ray runtime started" in self.log_path.read_bytes():
                return
            time.sleep(0.2)
        self.stop()
        raise AssertionError("the Ray cluster did not start")

    def session_pids(self) -> list[int]:
        """Every live process of the cluster (they share the session `ray start` opened)."""
        if self.proc is None:
            return []
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[3]) == self.proc.pid and fields[0] != "Z":  # fields[3]: session id
                pids.append(int(stat.parent.name))
        return pids

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)  # a clean stop; Serve's graceful shutdown can take much longer
            except subprocess.TimeoutExpired:
                pass
        for pid in self.session_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.proc = None
