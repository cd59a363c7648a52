"""Unfinished server jobs (they survive a Blender restart): resume one, or cancel it.
Both talk to the server on the job worker thread when a person clicked."""

from __future__ import annotations

import time
from typing import Any, Callable

import bpy
import numpy as np

from ..generation import GenerationOutcome
from ..inference import ProgressEvent
from ..inference.images import LoadedImage
from ..preferences import get_preferences
from ..remote.errors import RemoteError
from ..remote.pending import PendingJob, PendingJobs
from ..scene.build import part_objects
from ..server_backend import finish_remote_import, pending_job_engine, server_dir
from ._job_mixin import JobOperatorMixin, job_state
from .generate import import_outcome


def _pending(server: str, job_id: str) -> PendingJob:
    job = PendingJobs(server_dir()).get(server, job_id)
    if job is None:
        raise RemoteError(f"Job {job_id} is no longer in the list of unfinished jobs.")
    return job


class PARTCRAFTER_OT_server_resume(JobOperatorMixin, bpy.types.Operator):
    """Wait for an unfinished server job and import its result like a fresh one"""

    bl_idname = "partcrafter.server_resume"
    bl_label = "Resume Server Job"
    bl_options = {"REGISTER", "UNDO"}

    job_title = "Resuming server job"

    job_id: bpy.props.StringProperty(name="Job", options={"SKIP_SAVE"})
    server: bpy.props.StringProperty(name="Server", options={"SKIP_SAVE"})

    _pending_job: PendingJob | None = None
    _size: float = 2.0
    _location: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return cls.job_poll(context)

    def job_prepare(self, context: bpy.types.Context) -> Callable[..., GenerationOutcome]:
        pending = _pending(self.server, self.job_id)
        engine = pending_job_engine(context, pending)
        self._pending_job = pending
        self._size = get_preferences(context).import_size
        self._location = tuple(context.scene.cursor.location)
        # The pixels stay on this computer and are not needed again; provenance keeps the hash.
        image = LoadedImage(rgba=np.zeros((1, 1, 4), np.uint8), sha256=pending.image_sha256, name=pending.image_name, format="PNG")

        def work(progress: Any, cancel: Any) -> GenerationOutcome:
            started = time.perf_counter()
            with engine:
                result = engine.resume(pending, progress, cancel)
            return GenerationOutcome(
                result=result,
                image=image,
                params=pending.params,
                job_id=pending.job_id,
                created=pending.submitted_at,
                seconds=time.perf_counter() - started,
                # Only the neural engine is PartCrafter; anything else the server ran is a preview.
                is_preview=result.engine != "partcrafter",
            )

        return work

    def job_finish(self, context: bpy.types.Context, outcome: GenerationOutcome) -> None:
        collection = import_outcome(context, outcome, self._size, self._location)
        warning = finish_remote_import(context, outcome.result)
        summary = f"{collection.name}: {len(part_objects(collection))} parts from server job {outcome.job_id}"
        job_state(context).last_result = summary
        self.report({"WARNING"} if warning else {"INFO"}, warning or summary)


class PARTCRAFTER_OT_server_cancel_job(JobOperatorMixin, bpy.types.Operator):
    """Cancel an unfinished job on the server, erase it there (unless you keep server copies) and remove it from this list"""

    bl_idname = "partcrafter.server_cancel_job"
    bl_label = "Cancel Server Job"
    bl_options = {"INTERNAL"}

    job_title = "Cancelling server job"

    job_id: bpy.props.StringProperty(name="Job", options={"SKIP_SAVE"})
    server: bpy.props.StringProperty(name="Server", options={"SKIP_SAVE"})

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return cls.job_poll(context)

    def job_prepare(self, context: bpy.types.Context) -> Callable[..., str]:
        pending = _pending(self.server, self.job_id)
        engine = pending_job_engine(context, pending)

        def work(progress: Any, _cancel: Any) -> str:
            with engine:
                progress(ProgressEvent("cancel", 0.1, f"Cancelling job {pending.job_id} on {engine.client.host}"))
                return engine.cancel_on_server(pending.job_id)

        return work

    def job_finish(self, context: bpy.types.Context, outcome: str) -> None:
        job_state(context).last_result = outcome
        self.report({"INFO"}, outcome)


classes = (PARTCRAFTER_OT_server_resume, PARTCRAFTER_OT_server_cancel_job)
