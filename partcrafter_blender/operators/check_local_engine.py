"""Check Local Engine: start the engine's Python once and report the interpreter, torch
and CUDA versions, each GPU's name and memory, and whether the weights folder verifies.

Runs through the job mix-in: on a worker thread when a person clicks the button (Blender
stays responsive, Esc or Cancel stop waiting), blocking in the background. The last
report stays in `WindowManager.partcrafter_engine_check` for the preferences to show.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

import bpy

from ..inference import CancelToken, EngineUnavailable, ProgressEvent
from ..inference.worker import check_local_engine, default_python_executable
from ..preferences import get_preferences
from ._job_mixin import JobOperatorMixin

CANCEL_POLL_S = 0.1  # how often a waiting check looks at the cancel token


class PARTCRAFTER_PG_engine_check(bpy.types.PropertyGroup):
    text: bpy.props.StringProperty(name="Report", description="What the last check found, one line per finding")
    ok: bpy.props.BoolProperty(name="Verified", description="The last check found no problem")


def engine_check(context: bpy.types.Context | None = None) -> PARTCRAFTER_PG_engine_check:
    return (context or bpy.context).window_manager.partcrafter_engine_check


def run_check(
    python_executable: str,
    weights_path: str | None,
    cancel: CancelToken,
    check: Callable[[str, str | None], dict[str, Any]] = check_local_engine,
) -> dict[str, Any]:
    """`check` on its own daemon thread so that a cancel returns at once; an abandoned
    check still ends by itself (its child process has a deadline)."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["report"] = check(python_executable, weights_path)
        except BaseException as exc:  # handed to the waiting thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="partcrafter-engine-check", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(CANCEL_POLL_S)
        cancel.raise_if_cancelled()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["report"]


def _tag_preferences_redraw(context: bpy.types.Context) -> None:
    for window in context.window_manager.windows:
        if window.screen is not None:
            for area in window.screen.areas:
                if area.type in {"PREFERENCES", "VIEW_3D"}:
                    area.tag_redraw()


class PARTCRAFTER_OT_check_local_engine(JobOperatorMixin, bpy.types.Operator):
    """Start the local engine's Python once and report its torch and CUDA versions, the GPUs, and whether the weights folder verifies"""

    bl_idname = "partcrafter.check_local_engine"
    bl_label = "Check Local Engine"
    bl_options = {"REGISTER"}

    job_title = "Checking the local engine"

    _blender_python: bool = False

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return cls.job_poll(context)

    def job_prepare(self, context: bpy.types.Context) -> Callable[..., dict[str, Any]]:
        prefs = get_preferences(context)
        # Without an Engine Python the engine runs inside Blender: check Blender's own Python.
        self._blender_python = not prefs.python_executable
        python = default_python_executable() if self._blender_python else bpy.path.abspath(prefs.python_executable)
        weights = bpy.path.abspath(prefs.weights_dir) if prefs.weights_dir else os.environ.get("PARTCRAFTER_WEIGHTS")
        check = engine_check(context)
        check.text = ""
        check.ok = False

        def work(progress: Any, cancel: CancelToken) -> dict[str, Any]:
            progress(ProgressEvent("check", 0.0, f"Starting {python}"))
            return run_check(python, weights or None, cancel)

        return work

    def job_finish(self, context: bpy.types.Context, result: dict[str, Any]) -> None:
        lines = [str(line) for line in result["summary"]]
        if self._blender_python:
            lines.append("No Engine Python is set: this is Blender's own Python, where the engine then runs.")
        check = engine_check(context)
        check.text = "\n".join(lines)
        check.ok = bool(result["ok"])
        _tag_preferences_redraw(context)
        if not check.ok:
            raise EngineUnavailable("Local engine check: " + " ".join(str(p) for p in result["problems"]))
        self.report({"INFO"}, "; ".join(lines))


classes = (PARTCRAFTER_OT_check_local_engine,)


def register() -> None:
    """The report's property group (the operator itself is in `classes`)."""
    bpy.utils.register_class(PARTCRAFTER_PG_engine_check)
    bpy.types.WindowManager.partcrafter_engine_check = bpy.props.PointerProperty(type=PARTCRAFTER_PG_engine_check)


def unregister() -> None:
    del bpy.types.WindowManager.partcrafter_engine_check
    bpy.utils.unregister_class(PARTCRAFTER_PG_engine_check)
