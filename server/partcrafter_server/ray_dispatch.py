"""`dispatch = "ray"`: the jobs run on Ray Serve replicas (`ray_replica`) anywhere on a cluster.

The store stays on this node. Per engine, `max_replicas x max_ongoing_requests`
feeder threads each lease one job at a time from the store (exactly like the local
worker slots), hand it to the engine's Serve application and follow its stream:
progress into the job's status, heartbeats for the lease, cancel and timeout as a
Serve request cancellation (the replica stops its engine between steps), the sealed
result written to the blob folder. Leasing up to the cluster's largest capacity
puts the queue in front of Serve's autoscaler, which adds replicas when requests
wait. A replica that dies mid-job surfaces as a Ray error: the job is retried once
(`max_attempts`), then failed with a clear message. Stopping the server puts its
running jobs back in the queue and leaves the replicas warm for the next start.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import socket
import threading
import time
from typing import Any

from .blobs import BlobError, write_sealed
from .context import ServerContext
from .jobs import JobGone
from .store import Job
from .settings import is_loopback

log = logging.getLogger("partcrafter_server.ray")

WATCH_PERIOD_S = 2.0  # how often the applications' states are read from Serve
STREAM_POLL_S = 0.1


class _Lost(Exception):
    """The replica (or its node) died while it held the job."""


class RayDispatcher:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx, self.settings, self.service = ctx, ctx.settings, ctx.service
        self.instance = secrets.token_hex(4)
        self.stopping = threading.Event()
        self.engines = list(dict.fromkeys(self.settings.allowed_engines))
        self.wakeups = {engine: threading.Event() for engine in self.engines}
        self.handles: dict[str, Any] = {}
        self.failed: dict[str, str] = {}  # engine -> why its application could not deploy
        self.replicas = 0
        self.feeders: list[Feeder] = []
        self.watcher = threading.Thread(target=self._watch, daemon=True, name="ray-watch")
        ctx.metrics.gauge("partcrafter_workers", lambda: float(self.replicas))

    def app_name(self, engine: str) -> str:
        return self.settings.ray_app_prefix + engine

    # --- life cycle ----------------------------------------------------------------
    def start(self) -> None:
        import ray
        from ray import serve

        s = self.settings
        unreachable = gcs_unreachable(s.ray_address)
        if unreachable:  # ray.init would wait for it for minutes without a word
            raise RuntimeError(unreachable)
        try:
            ray.init(address=s.ray_address, log_to_driver=False, logging_level=logging.WARNING)
        except Exception as exc:  # ConnectionError, or no cluster at "auto"
            raise RuntimeError(f"Cannot join the Ray cluster at '{s.ray_address}': {exc}") from exc
        problem = transport_problem(ray.nodes(), os.environ, s.ray_allow_plaintext_transport)
        if problem:
            ray.shutdown()
            raise RuntimeError(problem)
        serve.start(proxy_location="Disabled")  # no HTTP ingress on the cluster: this server is the only way in
        if s.ray_deploy:
            from .ray_replica import AppArgs, engine_app

            weights = str(s.weights_dir) if s.weights_dir else os.environ.get("PARTCRAFTER_WEIGHTS")
            targets = [
                serve.RunTarget(
                    engine_app(AppArgs(engine=engine, engine_plugins=s.engine_plugins, weights_dir=weights,
                                       deployment=s.ray_deployment(engine), graceful_shutdown_timeout_s=s.job_timeout_s)),
                    name=self.app_name(engine),
                    route_prefix=None,
                )
                for engine in self.engines
            ]
            # replicas start in the background (loading weights can take minutes); jobs wait in the queue meanwhile
            serve.run_many(targets, wait_for_applications_running=False)
        for engine in self.engines:
            # the cluster decides whether an engine can run (this node may have no GPU or weights)
            self.ctx.engine_checks[engine] = None
            options = s.ray_deployment(engine)
            for i in range(options.max_replicas * options.max_ongoing_requests):
                self.feeders.append(Feeder(self, engine, i))
        self.watcher.start()
        for feeder in self.feeders:
            feeder.thread.start()

    def stop(self) -> None:
        import ray

        self.stopping.set()
        for event in self.wakeups.values():
            event.set()
        for feeder in self.feeders:
            feeder.thread.join(15)
        self.watcher.join(WATCH_PERIOD_S + 5)
        ray.shutdown()  # only this server's connection: the applications and their warm replicas stay

    def wake(self) -> None:
        for event in self.wakeups.values():
            event.set()

    def cancel(self, job_id: str) -> None:
        for feeder in self.feeders:
            if feeder.job_id == job_id:
                feeder.cancel_flag.set()

    # --- the applications' states ----------------------------------------------------
    def _watch(self) -> None:
        from ray import serve

        while not self.stopping.is_set():
            try:
                apps = serve.status().applications
                replicas = 0
                for engine in self.engines:
                    app = apps.get(self.app_name(engine))
                    if app is None:
                        continue
                    if engine not in self.handles and app.status in ("RUNNING", "DEPLOYING"):
                        self.handles[engine] = serve.get_app_handle(self.app_name(engine))
                    if app.status == "DEPLOY_FAILED":
                        reason = f"its Ray Serve application {self.app_name(engine)} failed to deploy (run `serve status` on the cluster)"
                        self.failed[engine] = self.ctx.engine_checks[engine] = reason
                    elif engine in self.failed:
                        del self.failed[engine]
                        self.ctx.engine_checks[engine] = None
                    for dep in app.deployments.values():
                        replicas += dep.replica_states.get("RUNNING", 0)
                self.replicas = replicas
            except Exception:
                log.exception("reading the Ray Serve status failed")
            self.stopping.wait(WATCH_PERIOD_S)


def gcs_unreachable(address: str, timeout_s: float = 5.0) -> str | None:
    """Why a `host:port` cluster address cannot be joined, or None (`auto` is Ray's own lookup)."""
    if address == "auto":
        return None
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as exc:
        return (
            f"Cannot reach the Ray cluster at '{address}' ({exc}). Start it first (`ray start --head` on that node), "
            "or correct ray_address."
        )
    return None


def transport_problem(nodes: list[dict[str, Any]], env: Any, allow_plaintext: bool) -> str | None:
    """Why this cluster must not get jobs, or None: data keys cross the wire with each request."""
    remote = sorted({n["NodeManagerAddress"] for n in nodes if n.get("Alive") and not is_loopback(n["NodeManagerAddress"])})
    if not remote or allow_plaintext or env.get("RAY_USE_TLS", "").lower() in ("1", "true"):
        return None
    return (
        f"Refusing to send jobs to Ray nodes at {', '.join(remote)} without TLS between the nodes: each job's data keys "
        "travel with its request. Start every node and this server with RAY_USE_TLS=1 (docs/server-ray.md), "
        "or set ray_allow_plaintext_transport=true on a network you trust."
    )


def _replica_lost(exc: BaseException) -> bool:
    """A Ray system failure (dead replica, dead node, lost object), as opposed to a canceled request."""
    from ray import exceptions as rex
    from ray.serve import exceptions as sex

    if isinstance(exc, (sex.RequestCancelledError, rex.TaskCancelledError)):
        return False
    if isinstance(exc, rex.RayTaskError) and not isinstance(exc, rex.RayActorError):
        return False  # our own code raised on the replica: a bug, not a death
    return isinstance(exc, (rex.RayError, sex.RayServeException))


class Feeder:
    """One lease at a time for one engine: store -> Serve request -> store."""

    def __init__(self, dispatcher: RayDispatcher, engine: str, index: int) -> None:
        self.d, self.engine = dispatcher, engine
        self.name = f"{dispatcher.instance}/{engine}/{index}"
        self.job_id: str | None = None
        self.cancel_flag = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name=f"ray-feeder-{engine}-{index}")

    def _loop(self) -> None:
        d = self.d
        wakeup = d.wakeups[self.engine]
        while not d.stopping.is_set():
            try:
                handle = d.handles.get(self.engine)
                failed = d.failed.get(self.engine)
                job = d.service.lease_next(self.name, self.engine) if handle is not None or failed else None
                if job is None:
                    wakeup.wait(1.0)
                    wakeup.clear()
                    continue
                if failed:
                    d.service.fail(job.id, self.name, "engine_unavailable", f"The engine '{self.engine}' cannot run: {failed}.")
                    continue
                self._run(handle, job)
            except JobGone:
                pass  # deleted or taken over meanwhile: nothing of it is kept
            except Exception:
                log.exception("a Ray feeder for engine %s hit an error", self.engine)
                d.stopping.wait(1.0)

    def _run(self, handle: Any, job: Job) -> None:
        service, settings = self.d.service, self.d.settings
        job_id = job.id
        self.job_id = job_id
        self.cancel_flag.clear()
        result_blob = None
        try:
            try:
                sealed_input, input_key = service.blobs.read_sealed(job.input_blob)
            except BlobError:
                service.fail(job_id, self.name, "internal_error", "The stored input could not be read; please submit again.")
                return
            result_blob, result_key, path = service.blobs.reserve()
            keys = (job.input_blob, input_key, result_blob, result_key)
            stream = handle.options(stream=True).run.remote(job_id, job.params, keys, sealed_input, settings.cancel_grace_s)
            del sealed_input
            outcome = self._follow(stream, job_id)
            if outcome is None:
                return
            if outcome["event"] == "done":
                write_sealed(path, outcome["sealed"])
                ref = service.blobs.adopt(job_id, "result", result_blob, result_key, outcome["size"])
                result_blob = None  # succeed_sealed owns the file now (and removes it if the job is gone)
                service.succeed_sealed(job_id, self.name, ref, outcome["etag"], outcome["parts"], outcome["timings"])
            else:
                service.fail(job_id, self.name, outcome["code"], outcome["message"], outcome["parts"])
        except _Lost as lost:
            service.worker_lost(job_id, self.name, str(lost))
        except JobGone:
            pass
        finally:
            if result_blob:  # not adopted: a partial or abandoned file, never readable
                service.blobs.unlink([result_blob])
            self.job_id = None

    def _follow(self, stream: Any, job_id: str) -> dict[str, Any] | None:
        """Relay one job's stream; the final "done"/"error" event, or None when this side ended the job."""
        service, settings = self.d.service, self.d.settings
        events: queue.Queue = queue.Queue()
        threading.Thread(target=_pump, args=(stream, events), daemon=True, name=f"ray-stream-{self.engine}").start()
        deadline = None  # the run time counts from a replica taking the job, not from waiting in Serve's queue
        last_beat = time.monotonic()
        stage: str | None = "waiting for a replica"
        progress: float | None = 0.0
        dirty = True
        canceled: tuple[str, str] | None = None  # (code, message) once this side canceled the request
        canceled_at = 0.0
        while True:
            try:
                kind, item = events.get(timeout=STREAM_POLL_S)
            except queue.Empty:
                kind, item = "idle", None
            now = time.monotonic()
            if kind == "event":
                if item["event"] == "started":
                    deadline = now + settings.job_timeout_s
                    stage, progress, dirty = "starting", 0.0, True
                    log.info("a %s job started on replica %s (pid %s)", self.engine, item["replica"], item["pid"])
                elif item["event"] == "progress":
                    stage, progress, dirty = item["stage"], item["progress"], True
                else:
                    return item
            elif kind == "raise":
                if canceled is not None:
                    service.fail(job_id, self.name, *canceled)
                    return None
                if _replica_lost(item):
                    raise _Lost(f"its Ray replica was lost: {type(item).__name__}")
                log.error("a %s job failed on its replica: %s", self.engine, type(item).__name__)
                service.fail(job_id, self.name, "internal_error", f"The engine hit an unexpected error ({type(item).__name__}).")
                return None
            elif kind == "end":
                raise _Lost("its Ray replica ended the stream without a result")
            if deadline is None and self.engine in self.d.failed and canceled is None:
                canceled, canceled_at = ("engine_unavailable", f"The engine '{self.engine}' cannot run: {self.d.failed[self.engine]}."), now
                stream.cancel()  # no replica will ever take it
            if self.d.stopping.is_set():
                stream.cancel()
                service.release(job_id, self.name)  # the next start runs it again
                return None
            if now - last_beat >= settings.heartbeat_s or (dirty and now - last_beat >= 0.25):
                if not service.keep_lease(job_id, self.name, stage, progress):
                    self.cancel_flag.set()  # canceled, or deleted under us: stop the engine, discard the output
                last_beat, dirty = now, False
            if canceled is None and self.cancel_flag.is_set():
                canceled, canceled_at = ("canceled", ""), now
                stream.cancel()
            elif canceled is None and deadline is not None and now > deadline:
                canceled = ("timeout", f"The job ran longer than {settings.job_timeout_s:g} s and was stopped.")
                canceled_at = now
                stream.cancel()
            elif canceled is not None and now - canceled_at > settings.cancel_grace_s + 10:
                service.fail(job_id, self.name, *canceled)  # the cancellation never came back: end it anyway
                return None


def _pump(stream: Any, events: queue.Queue) -> None:
    """Blocking iteration of a Serve stream, in its own thread so the feeder keeps heartbeating."""
    try:
        for item in stream:
            events.put(("event", item))
        events.put(("end", None))
    except BaseException as exc:  # noqa: BLE001 - handed to the feeder, which decides
        events.put(("raise", exc))


def ray_pool(ctx: ServerContext) -> RayDispatcher:
    return RayDispatcher(ctx)
