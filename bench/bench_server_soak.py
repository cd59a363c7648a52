"""A bounded soak: many holders against one real server for minutes; do memory, descriptors and threads level off?

Each holder (its own API key) loops: submit a small image, poll as `Retry-After` says, download the result.
Every minute it prints the server process's RSS, open files and threads; at the end the jobs lost (accepted
but not succeeded once the queue drained) and the p50/p95 end-to-end time (submit to downloaded result).
The engine is bench_server.py's `bench_tiny` (a prepared mesh at once): this measures the server, not a model.

    .venv/bin/python bench/bench_server_soak.py --minutes 10 --holders 20
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench_server import _png, start_server

POLICY = "2025-01-13"


def server_sample(pid: int) -> dict[str, int]:
    """RSS (MiB), open files and threads of the server process, from /proc."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {
        "rss_mib": int(status["VmRSS"].split()[0]) // 1024,
        "open_files": len(list(Path(f"/proc/{pid}/fd").iterdir())),
        "threads": int(status["Threads"]),
    }


class Holder(threading.Thread):
    def __init__(self, url: str, key: str, image: bytes, stop_at: float) -> None:
        super().__init__(daemon=True)
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        self.image, self.stop_at = image, stop_at
        self.accepted: list[str] = []
        self.end_to_end: list[float] = []
        self.errors = 0

    def run(self) -> None:
        while time.monotonic() < self.stop_at:
            started = time.perf_counter()
            r = self.http.post(
                "/v1/jobs", files={"image": ("i.png", self.image, "image/png")}, data={"params": "{}", "policy_version": POLICY}
            )
            if r.status_code != 202:
                self.errors += 1
                time.sleep(float(r.headers.get("retry-after", 1)))
                continue
            job_id = r.json()["id"]
            self.accepted.append(job_id)
            while True:
                job = self.http.get(f"/v1/jobs/{job_id}")
                if job.json()["status"] in ("succeeded", "failed", "canceled", "expired"):
                    break
                time.sleep(min(float(job.headers.get("retry-after", 1)), 1.0))
            if job.json()["status"] == "succeeded" and self.http.get(f"/v1/jobs/{job_id}/result").status_code == 200:
                self.end_to_end.append(time.perf_counter() - started)

    def lost(self) -> int:
        return sum(1 for j in self.accepted if self.http.get(f"/v1/jobs/{j}").json()["status"] != "succeeded")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--holders", type=int, default=20)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pcsoak-"))
    proc, url, first_key = start_server(root)
    from partcrafter_server.auth import create_key
    from partcrafter_server.store import Database

    db = Database(root / "data" / "partcrafter.sqlite3")
    keys = [first_key] + [create_key(db, time.time(), True)[1] for _ in range(args.holders - 1)]
    image = _png(64)
    started = time.monotonic()
    stop_at = started + args.minutes * 60
    holders = [Holder(url, k, image, stop_at) for k in keys]
    try:
        print(f"minute  rss_mib  open_files  threads  jobs_done", flush=True)
        print(f"{0:6.1f}  " + "  ".join(f"{v:>{w}}" for v, w in zip(server_sample(proc.pid).values(), (7, 10, 7))) + f"  {0:>9}")
        for h in holders:
            h.start()
        minute = 1
        while any(h.is_alive() for h in holders):
            time.sleep(1.0)
            if time.monotonic() >= started + minute * 60:
                done = sum(len(h.end_to_end) for h in holders)
                sample = server_sample(proc.pid)
                print(f"{minute:6.1f}  " + "  ".join(f"{v:>{w}}" for v, w in zip(sample.values(), (7, 10, 7))) + f"  {done:>9}", flush=True)
                minute += 1
        times = sorted(t for h in holders for t in h.end_to_end)
        accepted = sum(len(h.accepted) for h in holders)
        lost = sum(h.lost() for h in holders)
        q = statistics.quantiles(times, n=20)
        print(
            f"holders {args.holders}, {args.minutes:g} min: {accepted} jobs accepted, {len(times)} downloaded, "
            f"{lost} lost, {sum(h.errors for h in holders)} refused submits; end-to-end p50 {statistics.median(times):.2f} s, "
            f"p95 {q[18]:.2f} s; server at the end: {server_sample(proc.pid)}"
        )
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
