"""Operator mix-in for long jobs: modal with a timer when a person invoked it, blocking
otherwise (Blender in the background, `bpy.ops` from a script, the bpy module).

A subclass implements:
- `job_prepare(context) -> work`: main thread; reads its properties and returns a
  callable `work(progress, cancel) -> result` that must not touch bpy. Raise a
  PartCrafterError for anything the user must fix; it is reported as an error.
- `job_finish(context, result)`: main thread; puts the result into the scene.

Progress reaches the status bar and the panel through `WindowManager.partcrafter_job`
(a JobState). The state is cleared in `finally` on every path, including a worker
that raises and Blender aborting the operator.

The modal branch's logic is `modal_step(runner, event, state)`: a plain function of the
runner, the kind of event (timer, Esc, anything else) and the JobState, which needs no
window (tests drive it with real bpy); `modal()` only adds the redraws and the conclusion.

Blocking runs still do the work on a thread, so that the main thread can take Ctrl+C
at once: the first SIGINT cancels the job cleanly (nothing is imported, the call
reports an error so the script stops), a second one stops waiting at once. In the
background, progress goes to stdout, at most one line a second (and at each new stage).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable

import bpy

from .. import job_runner
from ..inference import Cancelled, PartCrafterError, ProgressEvent
from ..job_runner import JobRunner

TIMER_STEP = 0.1  # seconds between queue drains while modal
WAIT_STEP = 0.05  # seconds between queue drains while blocking
PRINT_STEP = 1.0  # at most one progress line a second on the console
INTERRUPTED_MESSAGE = "Cancelled by Ctrl+C; nothing was added to the scene."


class PARTCRAFTER_PG_job_state(bpy.types.PropertyGroup):
    running: bpy.props.BoolProperty(name="Running", default=False)
    title: bpy.props.StringProperty(name="Job")
    stage: bpy.props.StringProperty(name="Stage")
    message: bpy.props.StringProperty(name="Message")
    fraction: bpy.props.FloatProperty(name="Progress", min=0.0, max=1.0, subtype="FACTOR")
    cancelling: bpy.props.BoolProperty(name="Cancelling", default=False)
    last_result: bpy.props.StringProperty(name="Last result", description="What the last job produced or why it stopped")


def job_state(context: bpy.types.Context | None = None) -> PARTCRAFTER_PG_job_state:
    wm = (context or bpy.context).window_manager
    return wm.partcrafter_job


def _tag_redraw(context: bpy.types.Context) -> None:
    wm = context.window_manager
    for window in wm.windows:
        if window.screen is None:
            continue
        for area in window.screen.areas:
            if area.type in {"VIEW_3D", "STATUSBAR"}:
                area.tag_redraw()


class JobOperatorMixin:
    """See the module docstring. Subclasses set bl_idname, bl_label and
    `job_title`, and implement job_prepare / job_finish."""

    job_title = "PartCrafter job"

    _runner: JobRunner | None = None
    _timer: Any = None
    _interrupted: bool = False

    # --- to implement -------------------------------------------------------------
    def job_prepare(self, context: bpy.types.Context) -> Callable[..., Any]:
        raise NotImplementedError

    def job_finish(self, context: bpy.types.Context, result: Any) -> None:
        raise NotImplementedError

    # --- Blender entry points -----------------------------------------------------
    @classmethod
    def job_poll(cls, context: bpy.types.Context) -> bool:
        """Use from a subclass's poll(): disabled while any job runs, and says why."""
        reason = job_runner.busy_reason()
        if reason is not None:
            cls.poll_message_set(reason)
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        modal = self.options.is_invoke and not bpy.app.background and context.window is not None
        try:
            work = self.job_prepare(context)
        except Cancelled as exc:  # e.g. paused for the server consent dialog
            self.report({"INFO"}, str(exc))
            return {"CANCELLED"}
        except PartCrafterError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        runner = JobRunner(work)
        if not job_runner.claim(runner):
            self.report({"ERROR"}, job_runner.busy_reason() or job_runner.BUSY_MESSAGE)
            return {"CANCELLED"}
        self._begin(context, runner)
        if modal:
            try:
                wm = context.window_manager
                self._timer = wm.event_timer_add(TIMER_STEP, window=context.window)
                wm.modal_handler_add(self)
                runner.start()
            except BaseException:
                self._end(context)
                raise
            return {"RUNNING_MODAL"}
        try:
            self._run_blocking(context, runner)
            apply_progress(job_state(context), runner.drain())
            return self._conclude(context, runner)
        finally:
            self._end(context)

    def _run_blocking(self, context: bpy.types.Context, runner: JobRunner) -> None:
        """The work on a thread while this thread relays progress and takes Ctrl+C."""
        self._interrupted = False
        if threading.current_thread() is not threading.main_thread():
            runner.run_blocking()  # signals reach the main thread only
            return
        console = _ConsoleProgress(self.job_title) if bpy.app.background else None
        with self._cancel_on_sigint(runner):
            runner.start()
            try:
                while not runner.wait(WAIT_STEP):
                    events = runner.drain()
                    apply_progress(job_state(context), events)
                    if console is not None:
                        console(events)
            except KeyboardInterrupt:  # the second Ctrl+C: stop waiting, let the worker wind down
                job_runner.abandon(runner)
                raise
        if console is not None:
            console(runner.drain(), final=True)

    @contextlib.contextmanager
    def _cancel_on_sigint(self, runner: JobRunner) -> Iterator[None]:
        def handler(_signum: int, _frame: Any) -> None:
            if runner.cancelled:
                raise KeyboardInterrupt
            self._interrupted = True
            print("PartCrafter: cancelling… (Ctrl+C again to stop waiting at once)", file=sys.stderr, flush=True)
            runner.cancel()

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        runner = self._runner
        step = modal_step(runner, event_kind(event), job_state(context))
        if step.redraw:
            _tag_redraw(context)
        if step.result is not None:
            return step.result
        assert runner is not None  # modal_step ends a job only when there is one
        try:
            return self._conclude(context, runner)
        finally:
            self._end(context)

    def cancel(self, context: bpy.types.Context) -> None:
        """Blender aborts the modal operator (new file, quit): stop the worker, clean up.
        The job slot stays claimed until the worker has really stopped (job_runner.abandon)."""
        if self._runner is not None:
            job_runner.abandon(self._runner)
            self._end(context)

    # --- internals ----------------------------------------------------------------
    def _begin(self, context: bpy.types.Context, runner: JobRunner) -> None:
        self._runner = runner
        state = job_state(context)
        state.running = True
        state.cancelling = False
        state.title = self.job_title
        state.stage = "starting"
        state.message = "Starting"
        state.fraction = 0.0
        state.last_result = ""  # the panel shows the running job, not what the previous one did

    def _end(self, context: bpy.types.Context) -> None:
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        if self._runner is not None:
            job_runner.release(self._runner)
            self._runner = None
        reset_state(context)
        _tag_redraw(context)

    def _conclude(self, context: bpy.types.Context, runner: JobRunner) -> set[str]:
        """Report the worker's outcome and, on success, import on the main thread."""
        state = job_state(context)
        error = runner.error
        if error is None:
            try:
                self.job_finish(context, runner.result)
            except BaseException as exc:
                error = exc
        if error is None:
            return {"FINISHED"}
        if isinstance(error, Cancelled) and self._interrupted:
            state.last_result = INTERRUPTED_MESSAGE
            self.report({"ERROR"}, INTERRUPTED_MESSAGE)  # a script's bpy.ops call raises: Ctrl+C stops it
        elif isinstance(error, Cancelled):
            state.last_result = str(error)
            self.report({"WARNING"}, str(error))
        elif isinstance(error, PartCrafterError):
            state.last_result = str(error)
            self.report({"ERROR"}, str(error))
        else:
            traceback.print_exception(error)
            state.last_result = f"Unexpected error: {error}"
            self.report({"ERROR"}, f"Unexpected error ({type(error).__name__}: {error}); details are in the system console.")
        return {"CANCELLED"}


class Event(Enum):
    """What the modal handler was called for, as far as a job cares."""

    TIMER = "timer"  # time to drain progress and look at the worker
    ESC = "esc"  # Esc pressed: cancel
    OTHER = "other"  # anything else: not ours, pass it through


def event_kind(event: bpy.types.Event) -> Event:
    if event.type == "TIMER":
        return Event.TIMER
    if event.type == "ESC" and event.value == "PRESS":
        return Event.ESC
    return Event.OTHER


@dataclass(frozen=True)
class Step:
    """What one modal call decided: `result` to return to Blender, or None when the job
    has ended and must be concluded (import or report, then release the slot)."""

    result: set[str] | None
    redraw: bool = False


def modal_step(runner: JobRunner | None, event: Event, state: Any) -> Step:
    """The modal branch without a window: Esc and the panel's Cancel request a cancel,
    a timer drains progress into `state` (a JobState), and a finished worker ends the job."""
    if runner is None:  # state lost (add-on reloaded): nothing left to watch
        return Step({"CANCELLED"})
    if event is Event.ESC and not runner.done:
        request_cancel(runner, state)
        return Step({"RUNNING_MODAL"}, redraw=True)
    if event is not Event.TIMER:
        return Step({"PASS_THROUGH"})
    redraw = apply_progress(state, runner.drain())
    if runner.cancelled and not state.cancelling:  # the panel's Cancel button
        request_cancel(runner, state)
        redraw = True
    if not runner.done:
        return Step({"PASS_THROUGH"}, redraw)
    return Step(None, redraw)


def request_cancel(runner: JobRunner, state: Any) -> None:
    runner.cancel()
    state.cancelling = True
    state.message = "Cancelling…"


def apply_progress(state: Any, events: list[ProgressEvent]) -> bool:
    """Show the latest of `events` in `state`; True when something changed."""
    if not events:
        return False
    last = events[-1]
    state.stage = last.stage
    state.fraction = min(1.0, max(0.0, float(last.fraction)))
    if not state.cancelling:
        state.message = last.message or last.stage.capitalize()
    return True


class _ConsoleProgress:
    """Progress lines on stdout for Blender in the background: one per new stage, else at
    most one every PRINT_STEP seconds."""

    def __init__(self, title: str) -> None:
        self._title = title
        self._stage = ""
        self._last = 0.0
        self._pending: ProgressEvent | None = None

    def __call__(self, events: list[ProgressEvent], final: bool = False) -> None:
        for event in events:
            now = time.monotonic()
            if event.stage != self._stage or now - self._last >= PRINT_STEP:
                self._print(event, now)
            else:
                self._pending = event
        if final and self._pending is not None:
            self._print(self._pending, time.monotonic())

    def _print(self, event: ProgressEvent, now: float) -> None:
        self._stage, self._last, self._pending = event.stage, now, None
        percent = 100.0 * min(1.0, max(0.0, float(event.fraction)))
        print(f"PartCrafter: {self._title}: [{percent:3.0f}%] {event.message or event.stage}", flush=True)


def reset_state(context: bpy.types.Context | None = None) -> None:
    state = job_state(context)
    state.running = False
    state.cancelling = False
    state.stage = ""
    state.message = ""
    state.fraction = 0.0


@bpy.app.handlers.persistent
def _on_load_post(*_args: Any) -> None:
    # A new file gets a fresh window manager; a job that was running is gone with its operator.
    if job_runner.active() is None:
        reset_state()


def register() -> None:
    bpy.utils.register_class(PARTCRAFTER_PG_job_state)
    bpy.types.WindowManager.partcrafter_job = bpy.props.PointerProperty(type=PARTCRAFTER_PG_job_state)
    bpy.app.handlers.load_post.append(_on_load_post)


def unregister() -> None:
    job_runner.cancel_active()
    if _on_load_post in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_on_load_post)
    del bpy.types.WindowManager.partcrafter_job
    bpy.utils.unregister_class(PARTCRAFTER_PG_job_state)
