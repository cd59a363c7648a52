"""Cancel the running PartCrafter job (the panel's Cancel button; Esc does the same)."""

from __future__ import annotations

import bpy

from .. import job_runner


class PARTCRAFTER_OT_cancel(bpy.types.Operator):
    """Stop the running PartCrafter job; nothing is added to the scene"""

    bl_idname = "partcrafter.cancel"
    bl_label = "Cancel"
    bl_options = {"INTERNAL"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if job_runner.active() is None:
            cls.poll_message_set("No PartCrafter job is running.")
            return False
        return True

    def execute(self, context: bpy.types.Context) -> set[str]:
        job_runner.cancel_active()
        return {"FINISHED"}


classes = (PARTCRAFTER_OT_cancel,)
