"""The cluster side of `dispatch = "ray"`: one Ray Serve application per engine.

A replica never sees the store or the master key. Each request carries what one
job needs and nothing more: the input blob as it lies on the API node's disk
(ciphertext, sealed under that blob's own data key), that data key, and a fresh
blob id and data key for the result. The replica opens the input in memory, runs
its engine (loaded once at start and kept warm), seals the GLB itself and streams
back progress and then the sealed result. So only ciphertext ever enters Ray's
object store, and an object spilled to disk under memory pressure is unreadable.
The data keys are small arguments sent inline with the request, never stored in
the object store; between nodes they need Ray's TLS (docs/server-ray.md).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator

from pydantic import BaseModel, Field
from ray import serve

from .blobs import BlobError, seal, unseal
from .settings import RayDeployment, ray_deployment
from .worker import OFFLINE_ENV, Failed, Progress, glb_etag, load_plugins, make_glb

# how often a running job's progress is streamed back (the API node throttles again)
PROGRESS_PERIOD_S = 0.25
# exit status of a replica whose engine ignored a cancel; Serve starts a fresh one
IGNORED_CANCEL_EXIT = 70


class EngineReplica:
    """One replica of one engine's deployment: a warm engine behind an async streaming method."""

    def __init__(self, engine: str, plugins: list[str], env: dict[str, str], slots: int) -> None:
        os.environ.update({**OFFLINE_ENV, **env})  # engines never reach the network: no sharing
        load_plugins(plugins)
        from partcrafter_blender.inference import EngineUnavailable, create_engine

        self.engine_name = engine
        self.engine = create_engine(engine)
        available = self.engine.availability()
        if not available.ok:  # Serve reports the deployment as failed with this reason
            raise EngineUnavailable(available.reason or f"Engine '{engine}' cannot run on this node.")
        warm_up = getattr(self.engine, "warm_up", None)
        if warm_up is not None:
            warm_up()  # e.g. PartCrafter's weights: seconds to load, so once per replica, not per job
        self.pool = ThreadPoolExecutor(slots, thread_name_prefix="engine")
        context = serve.get_replica_context()
        self.identity = {"replica": context.replica_id.unique_id, "pid": os.getpid()}

    def check_health(self) -> None:
        """Called by Serve every `health_check_period_s`; raising makes Serve replace this replica."""
        available = self.engine.availability()
        if not available.ok:
            raise RuntimeError(available.reason or "the engine became unavailable")

    async def run(
        self, job_id: str, params: dict[str, Any], keys: tuple[str, bytes, str, bytes], sealed_input: bytes, grace_s: float
    ) -> AsyncIterator[dict[str, Any]]:
        """Stream {"event": "started" | "progress" | "error" | "done", ...} for one job."""
        from partcrafter_blender.inference import CancelToken

        input_blob, input_key, result_blob, result_key = keys
        token = CancelToken()
        latest: dict[str, tuple[str, float]] = {}

        def send(msg: Progress) -> None:  # from the engine thread; the stream picks up the newest
            latest["now"] = (msg.stage, msg.fraction)

        def work() -> dict[str, Any]:
            try:
                pixels = unseal(input_blob, input_key, sealed_input)
            except (BlobError, ValueError):
                return {"event": "error", "code": "internal_error", "message": "The stored input could not be read; please submit again.", "parts": []}
            made = make_glb(lambda _name: self.engine, job_id, params, pixels, token, send)
            del pixels
            if isinstance(made, Failed):
                return {"event": "error", "code": made.code, "message": made.message, "parts": made.parts}
            t0 = time.perf_counter()
            sealed = seal(result_blob, result_key, made.glb)
            made.timings["seal_seconds"] = round(time.perf_counter() - t0, 4)
            return {"event": "done", "parts": made.parts, "timings": made.timings, "size": len(made.glb), "etag": glb_etag(made.glb), "sealed": sealed}

        yield {"event": "started", **self.identity}
        future = asyncio.wrap_future(self.pool.submit(work))
        try:
            shown = None
            while True:
                done, _ = await asyncio.wait({future}, timeout=PROGRESS_PERIOD_S)
                now = latest.get("now")
                if now is not None and now != shown:
                    shown = now
                    yield {"event": "progress", "stage": now[0], "progress": now[1]}
                if done:
                    break
            yield future.result()
        except asyncio.CancelledError:  # the API node canceled the request: stop the engine between steps
            token.cancel()
            try:
                await asyncio.wait_for(asyncio.shield(future), grace_s)
            except (TimeoutError, asyncio.CancelledError):
                print(f"engine '{self.engine_name}' ignored a cancel for {grace_s:g} s; replacing this replica", file=sys.stderr, flush=True)
                os._exit(IGNORED_CANCEL_EXIT)
            raise


class AppArgs(BaseModel):
    """What `engine_app` needs; also the `args` of a RayService `serveConfigV2` application."""

    engine: str
    engine_plugins: list[str] = Field(default_factory=list)
    weights_dir: str | None = None
    deployment: RayDeployment | None = None  # None or partial: the engine's defaults (settings.ray_deployment)
    graceful_shutdown_timeout_s: float = 1800.0


def engine_app(args: AppArgs) -> Any:
    """The Serve application of one engine (its one deployment, GPU-aware and autoscaled on the queue)."""
    d = ray_deployment(args.engine, args.deployment)
    env = {"PARTCRAFTER_WEIGHTS": args.weights_dir} if args.weights_dir else {}
    scaling: dict[str, Any]
    if d.min_replicas == d.max_replicas:
        scaling = {"num_replicas": d.min_replicas}
    else:
        scaling = {
            "autoscaling_config": {
                "min_replicas": d.min_replicas,
                "initial_replicas": max(d.min_replicas, 1),
                "max_replicas": d.max_replicas,
                "target_ongoing_requests": d.target_ongoing_requests,
                "upscale_delay_s": d.upscale_delay_s,
                "downscale_delay_s": d.downscale_delay_s,
            }
        }
    deployment = serve.deployment(
        EngineReplica,
        name=args.engine,
        ray_actor_options={"num_cpus": d.num_cpus, "num_gpus": d.num_gpus},
        max_ongoing_requests=d.max_ongoing_requests,
        health_check_period_s=d.health_check_period_s,
        health_check_timeout_s=d.health_check_timeout_s,
        graceful_shutdown_timeout_s=args.graceful_shutdown_timeout_s,  # a replica scaled down finishes its job first
        logging_config={"enable_access_log": False},
        **scaling,
    )
    return deployment.bind(args.engine, args.engine_plugins, env, d.max_ongoing_requests)


def app_builder(args: dict[str, Any]) -> Any:
    """`import_path: partcrafter_server.ray_replica:app_builder` for a RayService's serveConfigV2."""
    return engine_app(AppArgs.model_validate(args))
