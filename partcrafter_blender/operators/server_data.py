"""Your data on this server: what it holds (/v1/me), export it, delete all of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy

from ..remote.errors import RemoteError
from .server_consent import connect_from_preferences, server_poll_problem

# The last /v1/me answer per server, for the panel (runtime only, never saved).
my_data: dict[str, dict[str, Any]] = {}


def summary(data: dict[str, Any]) -> list[str]:
    jobs = data.get("jobs") or []
    key = data.get("key") or {}
    lines = [
        f"Key {key.get('id_hint', '?')}, created {str(key.get('created_at', '?'))[:10]}",
        f"{len(jobs)} job(s), {int(data.get('stored_bytes') or 0):,} bytes stored",
    ]
    lines += [f"  {j.get('id', '?')[:12]}  {j.get('status', '?')}  {str(j.get('created_at', ''))[:16]}" for j in jobs[:5]]
    if len(jobs) > 5:
        lines.append(f"  … and {len(jobs) - 5} more")
    events = data.get("audit_events") or []
    if events:
        lines.append(f"{len(events)} audit event(s) recorded for this key")
    return lines


class _ServerOperator:
    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        problem = server_poll_problem(context)
        if problem:
            cls.poll_message_set(problem)
            return False
        return True


class PARTCRAFTER_OT_server_my_data(_ServerOperator, bpy.types.Operator):
    """Ask the server what it holds for your API key"""

    bl_idname = "partcrafter.server_my_data"
    bl_label = "Show My Data"
    bl_options = {"INTERNAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            client = connect_from_preferences(context)
            data = client.me()
        except RemoteError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        my_data[client.endpoint.base_url] = data
        for line in summary(data):
            self.report({"INFO"}, line)
        return {"FINISHED"}


class PARTCRAFTER_OT_server_export(_ServerOperator, bpy.types.Operator):
    """Save everything the server holds for your key (metadata and results) as a ZIP archive"""

    bl_idname = "partcrafter.server_export"
    bl_label = "Export My Data"
    bl_options = {"INTERNAL"}

    filepath: bpy.props.StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})
    filter_glob: bpy.props.StringProperty(default="*.zip", options={"HIDDEN", "SKIP_SAVE"})

    def invoke(self, context: bpy.types.Context, _event: bpy.types.Event) -> set[str]:
        if not self.filepath:
            self.filepath = "partcrafter-my-data.zip"
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        if not self.filepath:
            self.report({"ERROR"}, "Choose where to save the export.")
            return {"CANCELLED"}
        dest = Path(bpy.path.abspath(self.filepath))
        if dest.suffix.lower() != ".zip":
            dest = dest.with_name(dest.name + ".zip")
        try:
            size = connect_from_preferences(context).export_me(dest)
        except RemoteError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Saved your data ({size:,} bytes) to {dest}")
        return {"FINISHED"}


class PARTCRAFTER_OT_server_delete_all(_ServerOperator, bpy.types.Operator):
    """Delete every job and result the server holds for your key. This cannot be undone"""

    bl_idname = "partcrafter.server_delete_all"
    bl_label = "Delete All My Data on the Server"
    bl_options = {"INTERNAL"}

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        return context.window_manager.invoke_confirm(
            self,
            event,
            title="Delete all your data on the server?",
            message="Every job and result stored for your API key is erased. This cannot be undone.",
            confirm_text="Delete Everything",
            icon="WARNING",
        )

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            client = connect_from_preferences(context)
            deleted = client.delete_me()
        except RemoteError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        my_data.pop(client.endpoint.base_url, None)
        self.report({"INFO"}, f"Deleted {deleted} job(s) and their results from {client.host}.")
        return {"FINISHED"}


classes = (PARTCRAFTER_OT_server_my_data, PARTCRAFTER_OT_server_export, PARTCRAFTER_OT_server_delete_all)
