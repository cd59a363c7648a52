"""`dispatch = "ray"` against `local`, on one machine, in one run, with an engine that sleeps.

A real local Ray cluster (loopback) and real server processes; the `sleeper` engine
(this module is also the plugin the server and the replicas load) sleeps `steps`
x 10 ms and returns one box. Measured:

1. dispatch overhead per job, one job at a time, local worker vs one Ray replica
   and their ratio: the server's own `run_seconds` (lease to finished: hand-over,
   sleep, GLB, seal, store) minus the sleep; and end to end as a client sees it
   (upload, queue, run, polls every 50 ms) minus the sleep;
2. throughput of a burst of jobs with 1 and with 2 Ray replicas, and the ratio
   (a sleeping engine shows the scaling without needing more cores).

    .venv/bin/python bench/bench_ray.py [--sleep 1.0] [--jobs 8] [--burst 12]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from partcrafter_blender.inference import PartMesh, register_engine
from partcrafter_blender.inference.testing import FixtureEngine

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests" / "server"


class Sleeper(FixtureEngine):
    name = "sleeper"
    label = "bench sleeper"

    def generate(self, request, progress=None, cancel=None):  # type: ignore[no-untyped-def]
        time.sleep(request.steps / 100)
        v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
        f = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]], np.int32)
        return self.result(request, [PartMesh("part_00", v, f)])


register_engine(Sleeper.name, Sleeper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sleep", type=float, default=1.0, help="seconds each job sleeps")
    parser.add_argument("--jobs", type=int, default=8, help="sequential jobs per dispatcher (overhead)")
    parser.add_argument("--burst", type=int, default=12, help="jobs submitted at once (throughput)")
    args = parser.parse_args()
    sys.path[:0] = [str(TESTS)]  # the tests' real-process harness: one way to run a server and a cluster
    from ray_cluster import LOOPBACK_ENV, RayCluster
    from server_test_support import Client, ServerProcess, png_bytes

    steps = round(args.sleep * 100)
    common = {
        "PARTCRAFTER_SERVER_ENGINE_PLUGINS": '["bench_ray"]',
        "PARTCRAFTER_SERVER_ALLOWED_ENGINES": '["sleeper"]',
        "PARTCRAFTER_SERVER_DEFAULT_ENGINE": "sleeper",
        "PARTCRAFTER_SERVER_ACCESS_LOG": "false",
        "PARTCRAFTER_SERVER_MAX_ACTIVE_JOBS_PER_KEY": str(args.burst + 1),
        "PYTHONPATH": f"{HERE}:{TESTS}",
    }
    image = png_bytes((96, 80), seed=1)

    def one_at_a_time(client: Client) -> tuple[float, float]:
        client.wait(client.submit(image, {"steps": steps}).json()["id"], timeout=120)  # warm-up
        server, client_side = [], []
        for _ in range(args.jobs):
            t0 = time.perf_counter()
            job = client.submit(image, {"steps": steps}).json()
            final = client.wait(job["id"], timeout=120)
            client_side.append(time.perf_counter() - t0 - args.sleep)
            server.append(final["timings"]["run_seconds"] - args.sleep)
        return statistics.median(server), statistics.median(client_side)

    def burst(client: Client) -> float:
        t0 = time.perf_counter()
        ids = [client.submit(image, {"steps": steps}).json()["id"] for _ in range(args.burst)]
        finals = [client.wait(i, timeout=600) for i in ids]
        assert all(f["status"] == "succeeded" for f in finals), finals
        return args.burst / (time.perf_counter() - t0)

    root = Path(tempfile.mkdtemp(prefix="pcbench-ray-"))
    cluster = RayCluster(root / "ray", plugin_dirs=(HERE,))
    results: dict[str, object] = {}
    servers: list[ServerProcess] = []
    try:
        cluster.start()
        cluster_env = {**LOOPBACK_ENV, "PARTCRAFTER_SERVER_DISPATCH": "ray", "PARTCRAFTER_SERVER_RAY_ADDRESS": cluster.address}
        for label, env in (
            ("local", {**common, "PARTCRAFTER_SERVER_CPU_WORKERS": "1"}),
            ("ray1", {**common, **cluster_env, "PARTCRAFTER_SERVER_RAY_APP_PREFIX": "bench1-",
                      "PARTCRAFTER_SERVER_RAY_DEPLOYMENTS": json.dumps({"sleeper": {"min_replicas": 1, "max_replicas": 1, "num_cpus": 0.5}})}),
            ("ray2", {**common, **cluster_env, "PARTCRAFTER_SERVER_RAY_APP_PREFIX": "bench2-",
                      "PARTCRAFTER_SERVER_RAY_DEPLOYMENTS": json.dumps({"sleeper": {"min_replicas": 2, "max_replicas": 2, "num_cpus": 0.5}})}),
        ):
            srv = ServerProcess(root / label, env=env)
            servers.append(srv)
            srv.start()
            client = Client(srv, srv.new_key())
            if label == "ray2":  # both replicas up before the burst
                deadline = time.monotonic() + 120
                while "partcrafter_workers 2" not in client.http.get("/metrics").text and time.monotonic() < deadline:
                    time.sleep(0.2)
            if label != "ray2":
                results[f"{label}_overhead"] = one_at_a_time(client)
            if label != "local":
                results[f"{label}_throughput"] = burst(client)
            client.close()
            srv.stop()
    finally:
        for srv in servers:
            srv.stop()
        cluster.stop()

    (local_run, local_e2e), (ray_run, ray_e2e) = results["local_overhead"], results["ray1_overhead"]  # type: ignore[misc]
    one, two = results["ray1_throughput"], results["ray2_throughput"]
    print(f"engine sleeps {args.sleep:g} s per job; median of {args.jobs} jobs one at a time, then bursts of {args.burst}\n")
    print("| measure | local worker | Ray Serve | Ray / local |\n| --- | ---: | ---: | ---: |")
    print(f"| overhead per job on the server, s (run_seconds − sleep) | {local_run:.3f} | {ray_run:.3f} | {ray_run / local_run:.2f}× |")
    print(f"| overhead per job end to end, s (client − sleep) | {local_e2e:.3f} | {ray_e2e:.3f} | {ray_e2e / local_e2e:.2f}× |")
    print(f"| throughput of the burst, jobs/s: 1 replica · 2 replicas | | {one:.3f} · {two:.3f} | 2 / 1: {two / one:.2f}× |")  # type: ignore[operator]


if __name__ == "__main__":
    main()
