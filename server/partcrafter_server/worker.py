"""The worker process: runs engines on jobs sent over a pipe, nothing else.

It never touches the database. The parent sends the cleaned pixels (one raw
`send_bytes` after a small header message) with a fresh blob id and data key; the
worker seals the GLB with that key and writes only ciphertext to the blob file, so
the 10-100 MB result never crosses the pipe and plaintext stays in memory. The
parent wraps the data key and records it; an unrecorded file is unreadable noise. One listener thread
receives messages (a cancel must arrive while the engine is busy); the main
thread runs the engine. A closed pipe means the server is gone: exit at once.

Why this is not the extension's worker (partcrafter_blender/inference/worker): that one
starts a fresh process per job in whichever Python the user installed torch into, so it
can only speak JSON lines and files (npz) to it; this one is a long-lived
multiprocessing child of the server's own interpreter that keeps its engine loaded
between jobs, receives pixels as raw bytes and seals its result itself. What both share
is the engine run (inference.run_engine) and the error codes (inference.errors.ERROR_CODES).

Messages are the dataclasses below (pickled by the pipe), never positional tuples.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import queue
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# engines must never fetch anything from the network on the server: no sharing
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


# --- parent -> worker ------------------------------------------------------------------


@dataclass(frozen=True)
class Sink:
    """Where the worker seals the result: the reserved blob file and its data key."""

    path: str
    blob_id: str
    data_key: bytes


@dataclass(frozen=True)
class Run:
    """Run a job; the cleaned pixels follow as one raw `send_bytes`."""

    job_id: str
    params: dict[str, Any]
    sink: Sink


@dataclass(frozen=True)
class Cancel:
    job_id: str


# --- worker -> parent ------------------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    pid: int


@dataclass(frozen=True)
class Progress:
    job_id: str
    stage: str
    fraction: float


@dataclass(frozen=True)
class Done:
    job_id: str
    parts: list[dict[str, Any]]
    timings: dict[str, float]
    size: int  # of the sealed GLB's plaintext
    etag: str


@dataclass(frozen=True)
class Failed:
    job_id: str
    code: str  # inference.errors.ERROR_CODES, or internal_error
    message: str
    parts: list[dict[str, Any]]


Outcome = Done | Failed


def load_plugins(modules: list[str]) -> None:
    for name in modules:
        importlib.import_module(name)


def child_main(conn: Any, plugins: list[str], gpu_index: int | None) -> None:
    if gpu_index is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu_index)
    os.environ.update(OFFLINE_ENV)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    load_plugins(plugins)

    from partcrafter_blender.inference import CancelToken

    jobs: queue.Queue = queue.Queue()
    current: dict[str, Any] = {"job": None, "token": None}
    lock = threading.Lock()
    send_lock = threading.Lock()

    def send(msg: Ready | Progress | Outcome) -> None:
        with send_lock:
            conn.send(msg)

    def listen() -> None:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                os._exit(0)
            if isinstance(msg, Run):
                try:
                    payload = conn.recv_bytes()
                except (EOFError, OSError):
                    os._exit(0)
                jobs.put((msg, payload))
            elif isinstance(msg, Cancel):
                with lock:
                    if current["job"] == msg.job_id and current["token"] is not None:
                        current["token"].cancel()

    threading.Thread(target=listen, daemon=True, name="listener").start()
    send(Ready(os.getpid()))
    while True:
        run, pixels = jobs.get()
        token = CancelToken()
        with lock:
            current.update(job=run.job_id, token=token)
        try:
            reply = _run(run, pixels, token, send)
            del pixels
            send(reply)
        finally:
            with lock:
                current.update(job=None, token=None)


def _run(run: Run, pixels: bytes, token: Any, send: Any) -> Outcome:
    from partcrafter_blender.inference import create_engine

    from .blobs import seal_to_file

    made = make_glb(create_engine, run.job_id, run.params, pixels, token, send)
    if isinstance(made, Failed):
        return made
    t0 = time.perf_counter()
    seal_to_file(Path(run.sink.path), run.sink.blob_id, run.sink.data_key, made.glb)
    made.timings["seal_seconds"] = round(time.perf_counter() - t0, 4)
    return Done(run.job_id, made.parts, made.timings, len(made.glb), glb_etag(made.glb))


@dataclass(frozen=True)
class Made:
    """A job's GLB, in memory and not sealed yet."""

    parts: list[dict[str, Any]]
    timings: dict[str, float]
    glb: bytes


def glb_etag(glb: bytes) -> str:
    return hashlib.sha256(glb).hexdigest()[:32]


def make_glb(engine_for: Any, job_id: str, params: dict[str, Any], pixels: bytes, token: Any, send: Any) -> Made | Failed:
    """Run one job up to its GLB. The local worker process and the Ray replicas (`ray_replica`,
    which keep their engine loaded) share it: `engine_for(name)` gives the engine, `send`
    receives throttled `Progress` messages."""
    from partcrafter_blender.inference import GenerationParams, GenerationRequest, part_name, run_engine
    from partcrafter_blender.inference.errors import error_code
    from partcrafter_blender.inference.glb import write_glb

    from .engine_messages import unavailable_reason
    from .intake import unpack_pixels

    last = [0.0, ""]

    def progress(event: Any) -> None:
        now = time.monotonic()
        if event.stage != last[1] or now - last[0] >= 0.1:  # throttle: the pipe is not a log
            last[0], last[1] = now, event.stage
            send(Progress(job_id, str(event.stage)[:32], float(min(max(event.fraction, 0.0), 1.0))))

    try:
        rgba = unpack_pixels(pixels)
        request = GenerationRequest.from_params(
            GenerationParams.from_wire(params), image=rgba, image_name="image", options=params.get("options", {})
        )
        engine = engine_for(params["engine"])
        t0 = time.perf_counter()
        result = run_engine(
            engine,
            request,
            progress,
            token,
            explain_unavailable=lambda a: f"The engine '{params['engine']}' cannot run on this server: {unavailable_reason(a)}.",
        )
        t1 = time.perf_counter()
        glb = write_glb(result.parts, extras={"engine": result.engine, "engine_version": result.engine_version},
                        variant_seeds=result.variant_seeds, texture=result.texture)
        t2 = time.perf_counter()
    except Exception as exc:  # an engine bug must fail one job, not the worker
        code = error_code(exc)
        if code is None:
            traceback.print_exc(file=sys.stderr)
            return Failed(job_id, "internal_error", f"The engine hit an unexpected error ({type(exc).__name__}).", [])
        return Failed(job_id, code, "Canceled." if code == "canceled" else str(exc), [])
    parts = [
        {"index": i, "name": p.name, "status": "ok", "vertices": int(len(p.vertices)), "faces": int(len(p.faces)), "reason": None}
        for i, p in enumerate(result.parts)
    ]
    parts += [
        {"index": f.index, "name": part_name(f.index), "status": "failed", "vertices": 0, "faces": 0, "reason": f.reason}
        for f in result.failed_parts
    ]
    return Made(parts, {"engine_seconds": round(t1 - t0, 4), "glb_seconds": round(t2 - t1, 4)}, glb)
