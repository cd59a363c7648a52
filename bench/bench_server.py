"""What the server itself adds: submit/poll throughput and end-to-end time for a big result.

Runs a real `partcrafter-server` process on loopback with engines that return
prepared meshes instantly (this module is also the engine plugin it loads), then:

1. submit requests/s (small image, several concurrent clients);
2. poll requests/s with 50 concurrent clients;
3. end-to-end seconds for a 16-part, ~1.3 M-triangle result (upload, queue, worker,
   encrypt, store, poll, download, decrypt) while 50 clients keep polling, against
   writing the same GLB to disk in-process; prints both and their ratio.

    .venv/bin/python bench/bench_server.py [--pollers 50] [--seconds 5] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from partcrafter_blender.inference import PartMesh, register_engine
from partcrafter_blender.inference.glb import write_glb
from partcrafter_blender.inference.testing import FixtureEngine

BIG_PARTS = 16
BIG_TRIANGLES = 1_300_000
TYPICAL_GPU_JOB_S = 30.0  # PartCrafter on one GPU: tens of seconds per image; the overhead goal is 5 % of that


def _sphere(stacks: int, slices: int, centre: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    theta = np.linspace(0, np.pi, stacks + 1)
    phi = np.linspace(0, 2 * np.pi, slices, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    v = np.stack([np.sin(t) * np.cos(p), np.cos(t), np.sin(t) * np.sin(p)], -1).reshape(-1, 3) * radius + centre
    i, j = np.meshgrid(np.arange(stacks), np.arange(slices), indexing="ij")
    a = i * slices + j
    b = i * slices + (j + 1) % slices
    c, d = a + slices, b + slices
    faces = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([b, c, d], -1).reshape(-1, 3)])
    return v.astype(np.float32), faces.astype(np.int32)


def big_parts() -> list[PartMesh]:
    per_part = BIG_TRIANGLES // BIG_PARTS
    stacks = int(np.sqrt(per_part / 2))
    slices = per_part // (2 * stacks)
    parts = []
    for k in range(BIG_PARTS):
        centre = np.array([(k % 4) * 0.45 - 0.7, (k // 4) * 0.45 - 0.7, 0.0])
        v, f = _sphere(stacks, slices, centre, 0.2)
        parts.append(PartMesh(name=f"part_{k:02d}", vertices=v, faces=f))
    return parts


_PREPARED: list[PartMesh] = []


class BenchBig(FixtureEngine):
    name = "bench_big"

    def generate(self, request, progress=None, cancel=None):
        if not _PREPARED:
            _PREPARED.extend(big_parts())  # built once per worker, before timing starts (warm-up job)
        return self.result(request, _PREPARED)


class BenchTiny(FixtureEngine):
    name = "bench_tiny"

    def generate(self, request, progress=None, cancel=None):
        v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
        return self.result(request, [PartMesh("part_00", v, np.array([[0, 1, 2]], np.int32))])


register_engine("bench_big", BenchBig)
register_engine("bench_tiny", BenchTiny)


# --- the benchmark --------------------------------------------------------------------------
def _png(side: int) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(0)
    arr = np.full((side, side, 3), 255, np.uint8)
    q = side // 4
    arr[q : 3 * q, q : 3 * q] = rng.integers(0, 255, (2 * q, 2 * q, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: Path) -> tuple[subprocess.Popen, str, str]:
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH", "")]),
        "PARTCRAFTER_SERVER_DATA_DIR": str(root / "data"),
        "PARTCRAFTER_SERVER_ENGINE_PLUGINS": '["bench_server"]',
        "PARTCRAFTER_SERVER_ALLOWED_ENGINES": '["bench_big","bench_tiny"]',
        "PARTCRAFTER_SERVER_DEFAULT_ENGINE": "bench_tiny",
        "PARTCRAFTER_SERVER_CPU_WORKERS": "1",
        "PARTCRAFTER_SERVER_MAX_QUEUE": "100000",
        "PARTCRAFTER_SERVER_MAX_ACTIVE_JOBS_PER_KEY": "100000",
        "PARTCRAFTER_SERVER_SUBMIT_RATE_PER_MINUTE": "1000000",
        "PARTCRAFTER_SERVER_REQUEST_RATE_PER_MINUTE": "100000000",
        "TMPDIR": str(root),
    }
    key = subprocess.run(
        [sys.executable, "-m", "partcrafter_server", "keys", "create", "--holder-is-13-or-older"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    proc = subprocess.Popen(
        [sys.executable, "-m", "partcrafter_server", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(root / "server.log", "w"),
    )
    url = f"http://127.0.0.1:{port}"
    import httpx

    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url, key
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("server did not start; see " + str(root / "server.log"))


async def submit_rps(url: str, key: str, image: bytes, clients: int, seconds: float) -> tuple[float, list[str]]:
    import httpx

    ids: list[str] = []
    stop = time.perf_counter() + seconds

    async def one(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < stop:
            r = await client.post(
                "/v1/jobs", files={"image": ("i.png", image, "image/png")}, data={"params": "{}", "policy_version": "2025-01-13"}
            )
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])

    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60, limits=httpx.Limits(max_connections=clients)
    ) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(one(client) for _ in range(clients)))
        return len(ids) / (time.perf_counter() - t0), ids


async def poll_load(
    url: str, key: str, job_ids: list[str], clients: int, stop: asyncio.Event, lat: list[float], interval: float = 0.0
) -> int:
    """`clients` keep-alive connections polling job status as fast as the server answers.

    A minimal HTTP/1.1 client on asyncio streams: httpx's async pool spends more CPU
    than the server under 50 connections, which would measure the client instead.
    """
    host, port = url.removeprefix("http://").split(":")
    count = 0

    async def one(i: int) -> None:
        nonlocal count
        reader, writer = await asyncio.open_connection(host, int(port))
        request = (
            f"GET /v1/jobs/{job_ids[i % len(job_ids)]} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n\r\n"
        ).encode()
        while not stop.is_set():
            t = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head[:40]
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t)
            count += 1
            if interval:
                await asyncio.sleep(interval)
        writer.close()

    await asyncio.gather(*(one(i) for i in range(clients)))
    return count


def end_to_end(url: str, key: str, image: bytes) -> tuple[float, int, dict]:
    import httpx

    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}", "Accept-Encoding": "identity"}, timeout=120) as c:
        t0 = time.perf_counter()
        job = c.post(
            "/v1/jobs",
            files={"image": ("i.png", image, "image/png")},
            data={"params": json.dumps({"engine": "bench_big"}), "policy_version": "2025-01-13"},
        ).json()
        t_submit = time.perf_counter()
        while True:
            state = c.get(f"/v1/jobs/{job['id']}").json()
            if state["status"] in ("succeeded", "failed"):
                break
            time.sleep(0.01)
        assert state["status"] == "succeeded", state
        t_done = time.perf_counter()
        body = c.get(f"/v1/jobs/{job['id']}/result").content
        elapsed = time.perf_counter() - t0
        c.delete(f"/v1/jobs/{job['id']}")
    phases = {"submit": t_submit - t0, "until_succeeded": t_done - t_submit, "download": t0 + elapsed - t_done}
    return elapsed, len(body), {**state["timings"], **{k: round(v, 3) for k, v in phases.items()}}


def drain(url: str, key: str, ids: list[str]) -> None:
    """Let the worker finish the submit phase's jobs, so polling is measured on a steady server."""
    import httpx

    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
        while c.get(f"/v1/jobs/{ids[-1]}").json()["status"] in ("queued", "running"):
            time.sleep(0.2)


def in_process_baseline(folder: Path, parts: list[PartMesh]) -> float:
    """What a local engine run pays for its result: serialise the GLB and write it to disk."""
    t0 = time.perf_counter()
    (folder / "baseline.glb").write_bytes(write_glb(parts))
    elapsed = time.perf_counter() - t0
    (folder / "baseline.glb").unlink()
    return elapsed


async def main_async(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="pcs-bench-"))
    proc, url, key = start_server(root)
    try:
        small = _png(64)
        upload = _png(args.image_side)
        parts = big_parts()
        glb_mb = len(write_glb(parts)) / 1e6
        tris = sum(len(p.faces) for p in parts)
        print(
            f"result: {BIG_PARTS} parts, {tris:,} triangles, GLB {glb_mb:.1f} MB; upload {args.image_side} px PNG {len(upload) / 1e3:.0f} kB"
        )

        rps, ids = await submit_rps(url, key, small, clients=8, seconds=args.seconds)
        print(f"submit: {rps:.0f} requests/s (8 concurrent clients, 64 px PNG)")
        await asyncio.to_thread(drain, url, key, ids)

        stop = asyncio.Event()
        lat: list[float] = []
        task = asyncio.create_task(poll_load(url, key, ids[:200], args.pollers, stop, lat))
        await asyncio.sleep(args.seconds)
        stop.set()
        polls = await task
        lat.sort()
        print(
            f"poll: {polls / args.seconds:.0f} requests/s with {args.pollers} concurrent clients "
            f"(p50 {lat[len(lat) // 2] * 1000:.1f} ms, p95 {lat[int(len(lat) * 0.95)] * 1000:.1f} ms)"
        )

        await asyncio.to_thread(end_to_end, url, key, upload)  # warm-up: the worker builds its meshes once
        scenarios = (
            ("idle server", 0, 0.0),
            (f"{args.pollers} clients polling every 1 s, as Retry-After asks", args.pollers, 1.0),
            (f"{args.pollers} clients polling flat out", args.pollers, 0.0),
        )
        for label, pollers, interval in scenarios:
            stop = asyncio.Event()
            task = asyncio.create_task(poll_load(url, key, ids[:200], pollers, stop, [], interval)) if pollers else None
            runs, bases = [], []
            for _ in range(args.runs):  # interleaved, so both sides see the same background load
                bases.append(await asyncio.to_thread(in_process_baseline, root, parts))
                runs.append(await asyncio.to_thread(end_to_end, url, key, upload))
            stop.set()
            if task:
                await task
            e2e, base = statistics.median(r[0] for r in runs), statistics.median(bases)
            phases = runs[[r[0] for r in runs].index(sorted(r[0] for r in runs)[len(runs) // 2])][2]
            overhead = e2e - base
            print(
                f"end-to-end ({label}): server {e2e:.3f} s vs in-process write_glb + write to disk {base:.3f} s "
                f"(medians of {args.runs}); ratio {e2e / base:.2f}x; server overhead {overhead:.3f} s = "
                f"{overhead / TYPICAL_GPU_JOB_S * 100:.2f} % of a {TYPICAL_GPU_JOB_S:.0f} s GPU job\n    phases of the median run: {phases}"
            )
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pollers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--image-side", type=int, default=1024, help="side of the uploaded PNG for the end-to-end run")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
