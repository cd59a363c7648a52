"""Run one piece of work off Blender's main thread and hand its progress and outcome
back through a queue. No bpy: the operator mix-in drains it from a timer.

The work is any callable `work(progress, cancel) -> result`; it must not touch bpy.
"""

from __future__ import annotations

import queue
import threading
import time
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
# A job whose operator Blender aborted (new file, quit): told to stop, but its worker
# may still be winding down, so no new job may start until it has (or STOP_GRACE passed).
_stopping: JobRunner | None = None
_stopping_since = 0.0
_lock = threading.Lock()

# How long an aborted job may take to stop before a new job may start anyway: a worker
# that never ends must not keep every job disabled for the rest of the session.
STOP_GRACE = 30.0  # seconds

BUSY_MESSAGE = "A PartCrafter job is already running; wait for it or cancel it."


def claim(runner: JobRunner) -> bool:
    """Make `runner` the active job; False while another job is active or still stopping."""
    global _active
    with _lock:
        if _active is not None or _stopping_left() is not None:
            return False
        _active = runner
        return True


def release(runner: JobRunner) -> None:
    global _active
    with _lock:
        if _active is runner:
            _active = None


def abandon(runner: JobRunner) -> None:
    """Its operator is gone: ask `runner` to stop and keep the slot claimed until its
    worker has actually finished, at most STOP_GRACE seconds."""
    global _active, _stopping, _stopping_since
    runner.cancel()
    with _lock:
        if _active is runner:
            _active = None
        if not runner.done:
            _stopping, _stopping_since = runner, time.monotonic()


def busy_reason() -> str | None:
    """Why no job can start now (for polls and reports), or None when one can."""
    with _lock:
        if _active is not None:
            return BUSY_MESSAGE
        left = _stopping_left()
    if left is None:
        return None
    return f"The previous PartCrafter job is still stopping; try again in a moment (at most {left:.0f} s)."


def _stopping_left() -> float | None:
    """Seconds the aborted job may still take to stop, or None once it stopped or ran
    out of grace. Call with _lock held."""
    global _stopping
    if _stopping is None:
        return None
    left = STOP_GRACE - (time.monotonic() - _stopping_since)
    if _stopping.done or left <= 0:
        _stopping = None  # a worker past its grace is a daemon thread left to itself
        return None
    return max(left, 1.0)


def active() -> JobRunner | None:
    return _active


def cancel_active() -> bool:
    """Ask the active job to stop; True when there was one."""
    runner = _active
    if runner is None:
        return False
    runner.cancel()
    return True
