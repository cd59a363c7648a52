"""Job dispatch behind a small interface.

The API only ever calls `wake` (a job was queued) and `cancel` (a running job must
stop). Workers take jobs by leasing them from the store and report through
`JobService`, so a distributed dispatcher (e.g. Ray Serve replicas leasing from the
same store) can replace `LocalWorkerPool` without touching the API or the store.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import secrets
import threading
import time
from typing import Any, Protocol

from . import diskspace
from .blobs import BlobError
from .jobs import JobGone, JobService
from .store import Job
from .metrics import Metrics
from .settings import Settings
from .worker import Cancel, Done, Failed, Progress, Ready, Run, Sink, child_main

log = logging.getLogger("partcrafter_server.dispatch")


class Dispatcher(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def wake(self) -> None: ...
    def cancel(self, job_id: str) -> None: ...


class _Lost(Exception):
    pass


class WorkerSlot:
    """One worker process and the thread in the server that feeds it, heartbeats and watches it."""

    def __init__(self, pool: LocalWorkerPool, index: int, gpu: int | None) -> None:
        self.pool, self.index, self.gpu = pool, index, gpu
        self.name = f"{pool.instance}/w{index}"
        self.proc: Any = None
        self.conn: Any = None
        self.job_id: str | None = None
        self.result_blob: str | None = None
        self.cancel_flag = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name=f"worker-slot-{index}")

    def _spawn(self) -> None:
        ctx = mp.get_context("spawn")  # never fork a threaded server
        parent, child = ctx.Pipe(duplex=True)
        proc = ctx.Process(
            target=child_main,
            args=(child, self.pool.settings.engine_plugins, self.gpu),
            daemon=True,
            name=f"partcrafter-worker-{self.index}",
        )
        proc.start()
        child.close()
        try:
            ready = parent.poll(120) and isinstance(parent.recv(), Ready)
        except (EOFError, OSError):  # it died while starting (e.g. an engine plugin failed to import)
            ready = False
        if not ready:
            proc.kill()
            proc.join(5)
            parent.close()
            raise RuntimeError(f"worker process did not start (exit code {proc.exitcode})")
        self.proc, self.conn = proc, parent

    def _kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.join(5)
            self.conn.close()
        self.proc = self.conn = None

    def _loop(self) -> None:
        pool = self.pool
        while not pool.stopping.is_set():
            try:
                if self.proc is None or not self.proc.is_alive():
                    restarted = self.proc is not None
                    self._kill()
                    self._spawn()
                    if restarted:
                        pool.metrics.inc("partcrafter_worker_restarts_total")
                job = pool.service.lease_next(self.name)
                if job is None:
                    pool.wakeup.wait(1.0)
                    pool.wakeup.clear()
                    continue
                self._run(job)
            except Exception:
                log.exception("worker slot %d hit an error; restarting its worker", self.index)
                self._kill()
                time.sleep(1.0)
        self._kill()

    def _run(self, job: Job) -> None:
        service = self.pool.service
        job_id = job.id
        self.job_id = job_id
        self.cancel_flag.clear()
        try:
            try:
                pixels = service.read_input(job)
            except BlobError:
                service.fail(job_id, self.name, "internal_error", "The stored input could not be read; please submit again.")
                return
            params = dict(job.params)
            blob_id, data_key, path = service.blobs.reserve()  # the worker seals the result itself
            self.result_blob = blob_id
            self.conn.send(Run(job_id, params, Sink(str(path), blob_id, data_key)))
            self.conn.send_bytes(pixels)  # raw bytes: no pickling copy of a large payload
            del pixels
            self._watch(job_id, data_key)
        except _Lost as lost:
            self._kill()
            service.worker_lost(job_id, self.name, str(lost))
        except JobGone:
            pass  # deleted or taken over while running: its output was discarded
        except Exception as exc:
            if not diskspace.is_disk_full(exc):
                raise
            self._kill()
            self._fail_when_space_is_back(job_id)
        finally:
            if self.result_blob:  # not adopted: a partial or abandoned file, never readable
                service.blobs.unlink([self.result_blob])
            self.job_id = self.result_blob = None

    def _fail_when_space_is_back(self, job_id: str) -> None:
        """The job's end (or a heartbeat) met a full disk: its result cannot be kept, so fail it, retrying
        until a write goes through, instead of leaving it `running` until a restart."""
        log.warning("the disk is full: job %s fails once its end can be recorded", job_id)
        while not self.pool.stopping.is_set():  # a stop leaves it to recover_after_restart
            try:
                self.pool.service.fail(
                    job_id, self.name, "insufficient_storage", "The server's disk was full when this job ran; please submit again."
                )
                return
            except JobGone:
                return
            except Exception as exc:
                if not diskspace.is_disk_full(exc):
                    raise
                time.sleep(1.0)

    def _watch(self, job_id: str, data_key: bytes) -> None:
        service, settings = self.pool.service, self.pool.settings
        deadline = time.monotonic() + settings.job_timeout_s
        last_beat = time.monotonic()
        stage = progress = None
        dirty = False
        cancel_sent: float | None = None
        while True:
            if self.conn.poll(0.1):
                try:
                    msg = self.conn.recv()
                except (EOFError, OSError):
                    raise _Lost(f"worker exit code {self._exitcode()}") from None
                if isinstance(msg, Progress):
                    stage, progress, dirty = msg.stage, msg.fraction, True
                elif isinstance(msg, Done):
                    blob_id, self.result_blob = self.result_blob, None
                    ref = service.blobs.adopt(job_id, "result", blob_id, data_key, msg.size)
                    service.succeed_sealed(job_id, self.name, ref, msg.etag, msg.parts, msg.timings)
                    return
                elif isinstance(msg, Failed):
                    service.fail(job_id, self.name, msg.code, msg.message, msg.parts)
                    return
            elif not self.proc.is_alive():
                raise _Lost(f"worker exit code {self._exitcode()}")
            if self.pool.stopping.is_set():
                self._kill()
                service.release(job_id, self.name)  # the next start runs it again
                return
            now = time.monotonic()
            if now - last_beat >= settings.heartbeat_s or (dirty and now - last_beat >= 0.25):
                if not service.keep_lease(job_id, self.name, stage, progress):
                    self.cancel_flag.set()  # canceled, or deleted under us: stop the engine, discard the output
                last_beat, dirty = now, False
            if self.cancel_flag.is_set():
                if cancel_sent is None:
                    cancel_sent = now
                    self.conn.send(Cancel(job_id))
                elif now - cancel_sent > settings.cancel_grace_s:
                    self._kill()  # the engine ignored the cancel
                    service.fail(job_id, self.name, "canceled", "")
                    return
            if now > deadline:
                self._kill()
                service.fail(
                    job_id, self.name, "timeout", f"The job ran longer than {settings.job_timeout_s:g} s and was stopped."
                )
                return

    def _exitcode(self) -> Any:
        self.proc.join(2)
        return self.proc.exitcode


class LocalWorkerPool:
    """Worker processes on this machine: one per GPU, or `cpu_workers` on CPU."""

    def __init__(self, settings: Settings, service: JobService, metrics: Metrics) -> None:
        self.settings, self.service, self.metrics = settings, service, metrics
        self.instance = secrets.token_hex(4)
        self.stopping = threading.Event()
        self.wakeup = threading.Event()
        count, gpus = settings.worker_count()
        self.slots = [WorkerSlot(self, i, gpus[i]) for i in range(count)]
        metrics.gauge("partcrafter_workers", lambda: float(len(self.slots)))

    def start(self) -> None:
        for slot in self.slots:
            slot.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.wakeup.set()
        for slot in self.slots:
            slot.thread.join(10)

    def wake(self) -> None:
        self.wakeup.set()

    def cancel(self, job_id: str) -> None:
        for slot in self.slots:
            if slot.job_id == job_id:
                slot.cancel_flag.set()
