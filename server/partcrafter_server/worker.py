"""The worker process: runs engines on jobs sent over a pipe, nothing else.

It never touches the database. The parent sends the cleaned pixels (one raw
`send_bytes` after a small header message) with a fresh blob id and data key; the
worker seals the GLB with that key and writes only ciphertext to the blob file, so
the 10-100 MB result never crosses the pipe and plaintext stays in memory. The
parent wraps the data key and records it; an unrecorded file is unreadable noise. One listener thread
receives messages (a cancel must arrive while the engine is busy); the main
thread runs the engine. A closed pipe means the server is gone: exit at once.
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
from pathlib import Path
from typing import Any

# engines must never fetch anything from the network on the server: no sharing
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


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

    def send(msg: tuple, payload: bytes | None = None) -> None:
        with send_lock:
            conn.send(msg)
            if payload is not None:
                conn.send_bytes(payload)

    def listen() -> None:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                os._exit(0)
            if msg[0] == "run":
                try:
                    payload = conn.recv_bytes()
                except (EOFError, OSError):
                    os._exit(0)
                jobs.put((msg[1], payload, msg[2], msg[3]))
            elif msg[0] == "cancel":
                with lock:
                    if current["job"] == msg[1] and current["token"] is not None:
                        current["token"].cancel()
            elif msg[0] == "stop":
                os._exit(0)

    threading.Thread(target=listen, daemon=True, name="listener").start()
    send(("ready", os.getpid()))
    while True:
        job_id, pixels, params, sink = jobs.get()
        token = CancelToken()
        with lock:
            current.update(job=job_id, token=token)
        try:
            reply = _run(job_id, pixels, params, token, send, sink)
            del pixels
            send(reply)
        finally:
            with lock:
                current.update(job=None, token=None)


def _run(job_id: str, pixels: bytes, params: dict[str, Any], token: Any, send: Any, sink: tuple[str, str, bytes]) -> tuple:
    from partcrafter_blender.inference import (
        Cancelled,
        EngineFailed,
        EngineUnavailable,
        GenerationParams,
        GenerationRequest,
        InputImageError,
        create_engine,
        run_engine,
    )
    from partcrafter_blender.inference.glb import write_glb

    from .blobs import seal_to_file
    from .intake import unpack_pixels

    last = [0.0, ""]

    def progress(event: Any) -> None:
        now = time.monotonic()
        if event.stage != last[1] or now - last[0] >= 0.1:  # throttle: the pipe is not a log
            last[0], last[1] = now, event.stage
            send(("progress", job_id, str(event.stage)[:32], float(min(max(event.fraction, 0.0), 1.0))))

    try:
        rgba = unpack_pixels(pixels)
        request = GenerationRequest.from_params(
            GenerationParams.from_wire(params), image=rgba, image_name="image", options=params.get("options", {})
        )
        engine = create_engine(params["engine"])
        t0 = time.perf_counter()
        result = run_engine(engine, request, progress, token)
        t1 = time.perf_counter()
        glb = write_glb(result.parts, extras={"engine": result.engine, "engine_version": result.engine_version})
        t2 = time.perf_counter()
    except Cancelled:
        return ("error", job_id, "canceled", "Canceled.", [])
    except InputImageError as exc:
        return ("error", job_id, "invalid_image", str(exc), [])
    except EngineUnavailable as exc:
        return ("error", job_id, "engine_unavailable", str(exc), [])
    except EngineFailed as exc:
        return ("error", job_id, "engine_failed", str(exc), [])
    except Exception as exc:  # an engine bug must fail one job, not the worker
        traceback.print_exc(file=sys.stderr)
        return ("error", job_id, "internal_error", f"The engine hit an unexpected error ({type(exc).__name__}).", [])
    parts = [
        {"index": i, "name": p.name, "status": "ok", "vertices": int(len(p.vertices)), "faces": int(len(p.faces)), "reason": None}
        for i, p in enumerate(result.parts)
    ]
    parts += [
        {"index": f.index, "name": f"part_{f.index:02d}", "status": "failed", "vertices": 0, "faces": 0, "reason": f.reason}
        for f in result.failed_parts
    ]
    timings = {"engine_seconds": round(t1 - t0, 4), "glb_seconds": round(t2 - t1, 4)}
    path, blob_id, data_key = sink
    seal_to_file(Path(path), blob_id, data_key, glb)
    timings["seal_seconds"] = round(time.perf_counter() - t2, 4)
    return ("done", job_id, parts, timings, len(glb), hashlib.sha256(glb).hexdigest()[:32])
