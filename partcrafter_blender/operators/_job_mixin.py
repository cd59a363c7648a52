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
"""

from __future__ import annotations

import traceback
from typing import Any, Callable

import bpy

from .. import job_runner
from ..inference import Cancelled, PartCrafterError, ProgressEvent
from ..job_runner import JobRunner

TIMER_STEP = 0.1  # seconds between queue drains while modal


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
            runner.run_blocking()
            self._apply(context, runner.drain())
            return self._conclude(context, runner)
        finally:
            self._end(context)

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        runner = self._runner
        if runner is None:  # state lost (add-on reloaded): nothing left to watch
            return {"CANCELLED"}
        if event.type == "ESC" and event.value == "PRESS" and not runner.done:
            self._request_cancel(context, runner)
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        self._apply(context, runner.drain())
        if runner.cancelled and not job_state(context).cancelling:
            self._request_cancel(context, runner)  # the panel's Cancel button
        if not runner.done:
            return {"PASS_THROUGH"}
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

    def _request_cancel(self, context: bpy.types.Context, runner: JobRunner) -> None:
        runner.cancel()
        state = job_state(context)
        state.cancelling = True
        state.message = "Cancelling…"
        _tag_redraw(context)

    def _apply(self, context: bpy.types.Context, events: list[ProgressEvent]) -> None:
        if not events:
            return
        state = job_state(context)
        last = events[-1]
        state.stage = last.stage
        state.fraction = min(1.0, max(0.0, float(last.fraction)))
        if not state.cancelling:
            state.message = last.message or last.stage.capitalize()
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
        if isinstance(error, Cancelled):
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
