"""Server backend panels: unfinished jobs, and "Your data on this server"."""

from __future__ import annotations

import bpy

from ..operators.server_data import my_data, summary
from ..remote.endpoint import parse_server_url
from ..remote.errors import InvalidServerURL
from ..remote.pending import PendingJobs
from ..server_backend import server_config, server_dir, uses_server


class _ServerPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "PartCrafter"
    bl_parent_id = "PARTCRAFTER_PT_main"


class PARTCRAFTER_PT_server_jobs(_ServerPanel, bpy.types.Panel):
    bl_label = "Unfinished Server Jobs"
    bl_idname = "PARTCRAFTER_PT_server_jobs"

    @classmethod
    def poll(cls, _context: bpy.types.Context) -> bool:
        return bool(PendingJobs(server_dir()).list())

    def draw(self, _context: bpy.types.Context) -> None:
        for job in PendingJobs(server_dir()).list():
            row = self.layout.row(align=True)
            row.label(text=f"{job.image_name} on {job.host} ({job.submitted_at[:16].replace('T', ' ')})", icon="TIME")
            op = row.operator("partcrafter.server_resume", text="", icon="IMPORT")
            op.job_id, op.server = job.job_id, job.server
            op = row.operator("partcrafter.server_cancel_job", text="", icon="X")
            op.job_id, op.server = job.job_id, job.server


class PARTCRAFTER_PT_server_data(_ServerPanel, bpy.types.Panel):
    bl_label = "Your Data on This Server"
    bl_idname = "PARTCRAFTER_PT_server_data"
    bl_options = {"DEFAULT_CLOSED"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return uses_server(context)

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        try:
            endpoint = parse_server_url(server_config(context, with_key=False).url)
        except InvalidServerURL as exc:
            layout.label(text=str(exc), icon="ERROR")
            return
        layout.label(text=endpoint.host, icon="WORLD")
        data = my_data.get(endpoint.base_url)
        col = layout.column(align=True)
        for line in summary(data) if data else ["Press Refresh to ask the server."]:
            col.label(text=line)
        row = layout.row(align=True)
        row.operator("partcrafter.server_my_data", text="Refresh", icon="FILE_REFRESH")
        row.operator("partcrafter.server_export", text="Export…", icon="EXPORT")
        if data:  # the choices below need to know the current state
            layout.operator("partcrafter.server_correct", text="Correct Label and Contact…", icon="GREASEPENCIL")
            restricted, objected = bool(data.get("processing_restricted")), bool(data.get("analytics_objection"))
            on, off = ("Lift the Restriction", "UNLOCKED"), ("Restrict Processing", "LOCKED")
            _toggle(layout, "partcrafter.server_restrict", "restrict", restricted, on, off)
            on, off = ("Withdraw My Objection to Statistics", "HIDE_OFF"), ("Object to Being Counted in Statistics", "HIDE_ON")
            _toggle(layout, "partcrafter.server_object", "objecting", objected, on, off)
        layout.operator("partcrafter.server_delete_all", text="Delete Everything…", icon="TRASH")


def _toggle(
    layout: bpy.types.UILayout, idname: str, prop: str, is_on: bool, when_on: tuple[str, str], when_off: tuple[str, str]
) -> None:
    """One button that switches a choice the server reported: its text says what a click does."""
    text, icon = when_on if is_on else when_off
    setattr(layout.operator(idname, text=text, icon=icon), prop, not is_on)


classes = (PARTCRAFTER_PT_server_jobs, PARTCRAFTER_PT_server_data)
