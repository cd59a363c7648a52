"""Run one piece of work off Blender's main thread and hand its progress and outcome
back through a queue. No bpy: the operator mix-in drains it from a timer.

The work is any callable `work(progress, cancel) -> result`; it must not touch bpy.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable

from .inference import CancelToken, ProgressCallback, ProgressEvent

Work = Callable[[ProgressCallback, CancelToken], Any]


class JobRunner:
    def __init__(self, work: Work) -> None:
        self._work = work
        self.cancel_token = CancelToken()
        self.events: queue.Queue[ProgressEvent] = queue.Queue()
        self.result: Any = None
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Run on a daemon thread (a hung engine must not keep Blender from quitting)."""
        self._thread = threading.Thread(target=self._run, name="partcrafter-job", daemon=True)
        self._thread.start()

    def run_blocking(self) -> None:
        """Run in the calling thread (Blender in the background, scripts, the CLI)."""
        self._run()

    def cancel(self) -> None:
        self.cancel_token.cancel()

    @property
    def cancelled(self) -> bool:
        return self.cancel_token.cancelled

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def drain(self) -> list[ProgressEvent]:
        """Every progress event reported since the last drain, oldest first."""
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    def _progress(self, event: ProgressEvent) -> None:
        self.events.put(event)

    def _run(self) -> None:
        try:
            self.result = self._work(self._progress, self.cancel_token)
        except BaseException as exc:  # handed to the main thread, which reports it
            self.error = exc
        finally:
            self._done.set()


# The one job the UI shows; the Cancel button and Esc reach it through here.
_active: JobRunner | None = None
_lock = threading.Lock()


def claim(runner: JobRunner) -> bool:
    """Make `runner` the active job; False when another job is still active."""
    global _active
    with _lock:
        if _active is not None:
            return False
        _active = runner
        return True


def release(runner: JobRunner) -> None:
    global _active
    with _lock:
        if _active is runner:
            _active = None


def active() -> JobRunner | None:
    return _active


def cancel_active() -> bool:
    """Ask the active job to stop; True when there was one."""
    runner = _active
    if runner is None:
        return False
    runner.cancel()
    return True
