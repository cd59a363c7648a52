"""`create_app(settings)`: the FastAPI application, its workers and its sweeper."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any, AsyncIterator, Callable

from fastapi import FastAPI

try:
    import fcntl
except ImportError:  # Windows: no advisory locks there; run one server per data folder
    fcntl = None  # type: ignore[assignment]

from . import __version__, problems
from .api import jobs, me, service
from .api.deps import UNCOUNTED
from .clock import Clock, system_clock
from .connections import BodyLimit
from .context import ServerContext, build_context
from .dispatch import Dispatcher, LocalWorkerPool
from .metrics import Metrics
from .settings import Settings
from .worker import load_plugins

log = logging.getLogger("partcrafter_server.access")
startup_log = logging.getLogger("partcrafter_server")

DispatcherFactory = Callable[[ServerContext], Dispatcher]


def local_pool(ctx: ServerContext) -> Dispatcher:
    return LocalWorkerPool(ctx.settings, ctx.service, ctx.metrics)


def configured_dispatcher(ctx: ServerContext) -> Dispatcher:
    """The dispatcher the `dispatch` setting names (Ray is imported only when asked for)."""
    if ctx.settings.dispatch == "ray":
        try:
            from .ray_dispatch import ray_pool
        except ImportError as exc:
            raise RuntimeError(f'dispatch = "ray" needs Ray Serve: pip install "./server[ray]" ({exc})') from exc
        return ray_pool(ctx)
    return local_pool(ctx)


class RequestGuard:
    """Pure ASGI middleware: request timeout (408), aggregate HTTP counters, optional access line.

    The access line carries the route template (`/v1/jobs/{job_id}`), never the path,
    the client address, headers or query: nothing that identifies a person or a file.
    """

    def __init__(self, app: Any, timeout_s: float, metrics: Metrics, access_log: bool) -> None:
        self.app, self.timeout_s, self.metrics, self.access_log = app, timeout_s, metrics, access_log

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500, "sent": False}

        async def watch(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
            await send(message)

        try:
            async with asyncio.timeout(self.timeout_s):
                await self.app(scope, receive, watch)
        except TimeoutError:
            if status["sent"]:
                raise
            status["code"] = 408
            response = problems.problem_response(408, "request_timeout", f"The request took longer than {self.timeout_s:g} s.")
            await response(scope, receive, send)
        route = getattr(scope.get("route"), "path", "unmatched")
        if not scope.get("state", {}).get(UNCOUNTED):  # unless the key holder objected to being counted
            self.metrics.inc(
                "partcrafter_http_requests_total",
                labels={"method": scope["method"], "route": route, "status": str(status["code"])},
            )
        if self.access_log:
            log.info("%s %s %d %.1fms", scope["method"], route, status["code"], (time.perf_counter() - started) * 1000)


class DataDirBusy(RuntimeError):
    """Another server holds the data folder."""


def hold_data_dir(data_dir: Path) -> IO[bytes]:
    """Hold an exclusive lock on the data folder for this server's lifetime."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = os.fdopen(os.open(data_dir / "server.lock", os.O_WRONLY | os.O_CREAT, 0o600), "wb")  # held until shutdown
    if fcntl is None:
        return handle
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise DataDirBusy(f"Another partcrafter-server is already serving {data_dir}; one server per data folder.") from None
    return handle


def create_app(
    settings: Settings | None = None,
    clock: Clock = system_clock,
    dispatcher_factory: DispatcherFactory = configured_dispatcher,
    data_lock: IO[bytes] | None = None,
) -> FastAPI:
    """`data_lock`: the data folder's lock when the caller already holds it (`serve` takes it
    first, so a second server stops with one clear line instead of a failed start-up)."""
    settings = settings or Settings()
    if settings.weights_dir:  # the PartCrafter engine's own configuration; workers inherit it
        os.environ["PARTCRAFTER_WEIGHTS"] = str(settings.weights_dir)
    load_plugins(settings.engine_plugins)
    ctx = build_context(settings, clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        lock = data_lock or hold_data_dir(settings.data_dir)  # a second server would take over running jobs
        recovered = ctx.service.recover_after_restart()
        if recovered:
            startup_log.warning("%d interrupted job(s) were retried or failed after a restart", recovered)
        ctx.sweeper.sweep()
        dispatcher = dispatcher_factory(ctx)
        app.state.dispatcher = dispatcher
        await asyncio.to_thread(dispatcher.start)  # joining a Ray cluster takes seconds; keep it off the loop
        ctx.sweeper.start()
        try:
            yield
        finally:
            ctx.sweeper.stop()
            await asyncio.to_thread(dispatcher.stop)
            ctx.db.checkpoint()  # nothing erased lingers in the WAL after a stop
            lock.close()

    app = FastAPI(
        title="PartCrafter server",
        version=__version__,
        description="One image in, one multi-part GLB out. See docs/api.md and docs/server.md.",
        lifespan=lifespan,
        docs_url="/docs" if settings.api_docs else None,  # Swagger UI pulls its scripts from a CDN
        redoc_url=None,
    )
    app.state.ctx = ctx
    problems.install(app)
    app.include_router(service.router)
    app.include_router(jobs.router)
    app.include_router(me.router)
    app.add_middleware(RequestGuard, timeout_s=settings.request_timeout_s, metrics=ctx.metrics, access_log=settings.access_log)
    app.add_middleware(BodyLimit, max_body_bytes=settings.max_body_bytes)  # outermost: refused before the timer starts
    return app
