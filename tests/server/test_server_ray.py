"""dispatch = "ray": a real server process on a real local Ray cluster (loopback, 4 logical CPUs).

The relief engine runs with two replicas; the `slow` test engine autoscales
between one and two replicas and writes its replica's pid so a test can kill it
mid-job; `stubborn` ignores cancels. One cluster serves the whole session and one
server this module (restarted once); the final scan covers the cluster's folders.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from typing import Iterator

import httpx
import pytest
from ray_cluster import LOOPBACK_ENV, RayCluster
from server_test_support import IMAGES, Client, ServerProcess, png_bytes

from partcrafter_server.ray_dispatch import transport_problem

DEPLOYMENTS = {
    "relief": {"min_replicas": 2, "max_replicas": 2, "num_cpus": 1},
    "slow": {"min_replicas": 1, "max_replicas": 2, "num_cpus": 0.5, "upscale_delay_s": 0},
    "stubborn": {"min_replicas": 1, "max_replicas": 1, "num_cpus": 0.5},
}
STARTED_ON = re.compile(r"a (\w+) job started on replica (\w+) \(pid (\d+)\)")


@pytest.fixture(scope="module")
def ray_server(ray_cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        **LOOPBACK_ENV,
        "PARTCRAFTER_SERVER_DISPATCH": "ray",
        "PARTCRAFTER_SERVER_RAY_ADDRESS": ray_cluster.address,
        "PARTCRAFTER_SERVER_RAY_APP_PREFIX": "test-",
        "PARTCRAFTER_SERVER_ALLOWED_ENGINES": json.dumps(list(DEPLOYMENTS)),
        "PARTCRAFTER_SERVER_DEFAULT_ENGINE": "relief",
        "PARTCRAFTER_SERVER_RAY_DEPLOYMENTS": json.dumps(DEPLOYMENTS),
        "PARTCRAFTER_SERVER_CANCEL_GRACE_S": "2",
    }
    srv = ServerProcess(tmp_path_factory.mktemp("ray-server"), env=env)
    srv.start()
    _wait_for_replicas(srv, sum(d["min_replicas"] for d in DEPLOYMENTS.values()))
    yield srv
    srv.stop()


@pytest.fixture()
def client(ray_server: ServerProcess) -> Iterator[Client]:
    c = Client(ray_server, ray_server.new_key())
    yield c
    c.close()


def _wait_for_replicas(srv: ServerProcess, count: int) -> None:
    """The server answers at once; its replicas come up in the background (`partcrafter_workers`)."""

    def ready() -> bool:
        metrics = httpx.get(f"{srv.url}/metrics", timeout=5).text
        return float(re.search(r"^partcrafter_workers (\S+)", metrics, re.M)[1]) >= count  # type: ignore[index]

    _wait_for(ready, timeout=120, what=f"{count} running replicas")


def _placements(srv: ServerProcess, engine: str) -> list[tuple[str, int]]:
    """(replica id, pid) of every job of `engine` this server has dispatched, in order (from its log)."""
    return [(m[2], int(m[3])) for m in STARTED_ON.finditer(srv.log_path.read_text()) if m[1] == engine]


def _alive(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead here
    except FileNotFoundError:
        return False


def _wait_for(predicate, timeout: float = 60, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _replica_pid(cluster: RayCluster, client: Client, job_id: str) -> int:
    """The pid of the replica running `job_id` (the slow engine writes it when it starts a job)."""
    client.wait(job_id, until=("running",))
    pids = _wait_for(lambda: list(cluster.pid_dir.glob("*.pid")), what="the slow engine's pid file")
    return int(max(pids, key=lambda p: p.stat().st_mtime).stem)


def _clear_pids(cluster: RayCluster) -> None:
    for p in cluster.pid_dir.glob("*.pid"):
        p.unlink()


def _events(client: Client, job_id: str) -> list[str]:
    return [e["event"] for e in client.http.get("/v1/me").json()["audit_events"] if e["job_id"] == job_id]


def test_relief_jobs_spread_across_both_replicas(ray_server: ServerProcess, client: Client) -> None:
    image = (IMAGES / sorted(p.name for p in IMAGES.glob("np3_*"))[0]).read_bytes()
    # On a loaded machine the second replica can still be starting when the first jobs arrive, so
    # batches of six go in until both replicas have taken jobs (at most four batches).
    for _ in range(4):
        ids = [client.submit(image, {"num_parts": 3}).json()["id"] for _ in range(6)]
        finals = [client.wait(i, timeout=180) for i in ids]
        assert [f["status"] for f in finals] == ["succeeded"] * 6, finals
        replicas = {replica for replica, _ in _placements(ray_server, "relief")}
        if len(replicas) == 2:
            break
    glb = client.http.get(f"/v1/jobs/{ids[0]}/result").content
    assert glb[:4] == b"glTF" and len(finals[0]["parts"]) >= 1
    assert len(replicas) == 2, f"all relief jobs ran on {replicas}"


def test_progress_flows_back_to_the_job(client: Client) -> None:
    job = client.submit(png_bytes(seed=31), {"engine": "slow", "steps": 60}).json()
    seen = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = client.job(job["id"]).json()
        if state["status"] == "running":
            seen.add((state["stage"], state["progress"]))
        if state["status"] in ("succeeded", "failed", "canceled"):
            break
        time.sleep(0.05)
    assert state["status"] == "succeeded", state
    fractions = [p for stage, p in seen if stage == "denoise"]
    assert fractions and any(0 < p < 1 for p in fractions), seen


def test_cancel_reaches_the_running_engine(ray_cluster: RayCluster, client: Client) -> None:
    _clear_pids(ray_cluster)
    job = client.submit(png_bytes(seed=32), {"engine": "slow", "steps": 200}).json()  # 10 s if not stopped
    pid = _replica_pid(ray_cluster, client, job["id"])
    _wait_for(lambda: client.job(job["id"]).json()["progress"] > 0, what="progress")
    assert client.http.post(f"/v1/jobs/{job['id']}/cancel").status_code == 202
    final = client.wait(job["id"], timeout=30)
    assert final["status"] == "canceled" and final["input_deleted_at"]
    time.sleep(3)  # longer than cancel_grace_s: a replica whose engine ignored the cancel exits by then
    assert _alive(pid), "the engine did not stop between steps (its replica was replaced)"
    assert "job.canceled" in _events(client, job["id"])


def test_engine_ignoring_cancel_gets_its_replica_replaced(ray_cluster: RayCluster, client: Client) -> None:
    _clear_pids(ray_cluster)
    job = client.submit(png_bytes(seed=33), {"engine": "stubborn", "steps": 200}).json()
    pid = _replica_pid(ray_cluster, client, job["id"])
    client.http.post(f"/v1/jobs/{job['id']}/cancel")
    assert client.wait(job["id"], timeout=30)["status"] == "canceled"
    _wait_for(lambda: not _alive(pid), timeout=20, what="the stubborn replica to exit")
    # Serve starts a fresh replica: the engine runs again
    again = client.submit(png_bytes(seed=34), {"engine": "stubborn", "steps": 2}).json()
    assert client.wait(again["id"], timeout=120)["status"] == "succeeded"


def test_replica_killed_mid_job_is_retried_and_nothing_lost(ray_cluster: RayCluster, client: Client) -> None:
    _clear_pids(ray_cluster)
    job = client.submit(png_bytes(seed=35), {"engine": "slow", "steps": 40}).json()
    pid = _replica_pid(ray_cluster, client, job["id"])
    _clear_pids(ray_cluster)
    os.kill(pid, signal.SIGKILL)
    final = client.wait(job["id"], timeout=150)
    assert final["status"] == "succeeded", final
    assert client.http.get(f"/v1/jobs/{job['id']}/result").content[:4] == b"glTF"
    events = _events(client, job["id"])
    assert events.count("job.started") == 2 and "job.retried" in events


def test_replica_killed_twice_fails_the_job_clearly(ray_cluster: RayCluster, client: Client) -> None:
    _clear_pids(ray_cluster)
    job = client.submit(png_bytes(seed=36), {"engine": "slow", "steps": 200}).json()
    for _ in range(2):
        pid = _replica_pid(ray_cluster, client, job["id"])
        _clear_pids(ray_cluster)
        os.kill(pid, signal.SIGKILL)  # the retry writes a fresh pid file when a replica starts it again
    final = client.wait(job["id"], timeout=60)
    assert final["status"] == "failed" and final["error"]["code"] == "worker_crashed", final
    assert "Ray replica" in final["error"]["message"] and final["input_deleted_at"]


def test_queue_scales_the_slow_engine_to_two_replicas(ray_cluster: RayCluster, ray_server: ServerProcess, client: Client) -> None:
    # one replica runs a 10 s job; the next waits in Serve's queue until the autoscaler, seeing two
    # requests for one replica, starts another (a third job covers a slow start of that replica)
    jobs = [client.submit(png_bytes(seed=40 + i), {"engine": "slow", "steps": 200}).json()["id"] for i in range(3)]
    _wait_for(
        lambda: sum(client.job(j).json()["stage"] == "denoise" for j in jobs) == 2, timeout=120, what="two jobs running at once"
    )
    running = [pid for _, pid in _placements(ray_server, "slow")][-2:]  # two feeders: the last two dispatched
    for j in jobs:
        client.http.post(f"/v1/jobs/{j}/cancel")
    assert {client.wait(j)["status"] for j in jobs} <= {"canceled", "succeeded"}
    assert len(set(running)) == 2, f"the two jobs shared one replica ({running})"


def test_server_restarts_with_the_cluster_up_and_jobs_resume(ray_cluster: RayCluster, ray_server: ServerProcess) -> None:
    c = Client(ray_server, ray_server.new_key())
    _clear_pids(ray_cluster)
    running = c.submit(png_bytes(seed=50), {"engine": "slow", "steps": 60}).json()
    queued = [c.submit(png_bytes(seed=51 + i), {"num_parts": 2}).json() for i in range(3)]
    _replica_pid(ray_cluster, c, running["id"])
    warm = {replica for replica, _ in _placements(ray_server, "relief")}
    ray_server.stop(signal.SIGKILL)
    c.close()

    ray_server.start()
    c = Client(ray_server, c.key)
    assert c.wait(running["id"], timeout=150)["status"] == "succeeded"
    assert [c.wait(q["id"], timeout=150)["status"] for q in queued] == ["succeeded"] * 3
    assert "job.retried" in _events(c, running["id"])
    # the applications were redeployed unchanged: the same warm relief replicas took the jobs
    assert {replica for replica, _ in _placements(ray_server, "relief")} <= warm
    c.close()


def test_transport_needs_tls_off_loopback() -> None:
    local = [{"NodeManagerAddress": "127.0.0.1", "Alive": True}]
    remote = local + [{"NodeManagerAddress": "10.0.0.7", "Alive": True}]
    assert transport_problem(local, {}, False) is None
    problem = transport_problem(remote, {}, False)
    assert problem and "10.0.0.7" in problem and "RAY_USE_TLS=1" in problem
    assert transport_problem(remote, {"RAY_USE_TLS": "1"}, False) is None
    assert transport_problem(remote, {}, True) is None
    assert transport_problem(local + [{"NodeManagerAddress": "10.0.0.8", "Alive": False}], {}, False) is None


def test_rayservice_app_builder_takes_the_engine_defaults() -> None:
    """serveConfigV2's `args` go through the same options (and the same validation) as the settings."""
    from ray.serve import Application

    from partcrafter_server.ray_replica import AppArgs, app_builder
    from partcrafter_server.settings import ray_deployment

    args = AppArgs.model_validate({"engine": "partcrafter", "deployment": {"max_replicas": 8}})
    options = ray_deployment(args.engine, args.deployment)
    assert (options.num_gpus, options.max_replicas, options.min_replicas) == (1.0, 8, 1)
    assert isinstance(app_builder({"engine": "relief"}), Application)
    with pytest.raises(ValueError):
        app_builder({"engine": "relief", "deployment": {"min_replicas": 3, "max_replicas": 1}})


def test_unreachable_cluster_stops_the_server_with_a_clear_message(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from server_test_support import free_port

    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    srv = ServerProcess(tmp_path, env={**LOOPBACK_ENV, "PARTCRAFTER_SERVER_DISPATCH": "ray", "PARTCRAFTER_SERVER_RAY_ADDRESS": address})
    with pytest.raises(AssertionError, match="server exited"):
        srv.start()
    assert f"Cannot reach the Ray cluster at '{address}'" in srv.log_path.read_text()
