"""Your data on this server: what it holds (/v1/me), correct it, restrict its processing,
object to being counted, export it, delete all of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import bpy

from ..inference import PartCrafterError, ProgressEvent
from ..remote.client import ServerClient
from ..remote.endpoint import parse_server_url
from ._job_mixin import JobOperatorMixin, job_state
from ..server_backend import connect_from_preferences, interactive, server_config, server_poll_problem

# The last /v1/me answer per server, for the panel (runtime only, never saved).
my_data: dict[str, dict[str, Any]] = {}


def summary(data: dict[str, Any]) -> list[str]:
    jobs = data.get("jobs") or []
    key = data.get("key") or {}
    lines = [
        f"Key {key.get('id_hint', '?')}, created {str(key.get('created_at', '?'))[:10]}",
        f"{len(jobs)} job(s), {int(data.get('stored_bytes') or 0):,} bytes stored",
        f"Label: {key.get('label') or '(none)'}   Contact: {key.get('contact') or '(none)'}",
    ]
    if data.get("processing_restricted"):
        lines.append("Processing restricted: no new job is accepted or started")
    if data.get("analytics_objection"):
        lines.append("Objected: your requests are left out of the server's statistics")
    lines += [f"  {j.get('id', '?')[:12]}  {j.get('status', '?')}  {str(j.get('created_at', ''))[:16]}" for j in jobs[:5]]
    if len(jobs) > 5:
        lines.append(f"  … and {len(jobs) - 5} more")
    events = data.get("audit_events") or []
    if events:
        lines.append(f"{len(events)} audit event(s) recorded for this key")
    return lines


class _ServerDataJob(JobOperatorMixin):
    """Each request runs as a job on the worker thread when a person clicked (the
    interface stays responsive, progress and Cancel show in the panel), blocking in
    background runs and scripts."""

    _server: str = ""
    _host: str = ""

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not cls.job_poll(context):
            return False
        problem = server_poll_problem(context)
        if problem:
            cls.poll_message_set(problem)
            return False
        return True

    def _connect(self, context: bpy.types.Context) -> ServerClient:
        client = connect_from_preferences(context)
        self._server, self._host = client.endpoint.base_url, client.host
        return client

    def _conclude_with(self, context: bpy.types.Context, message: str) -> None:
        job_state(context).last_result = message
        self.report({"INFO"}, message)


class PARTCRAFTER_OT_server_my_data(_ServerDataJob, bpy.types.Operator):
    """Ask the server what it holds for your API key"""

    bl_idname = "partcrafter.server_my_data"
    bl_label = "Show My Data"
    bl_options = {"INTERNAL"}

    job_title = "Asking the server what it holds"

    def job_prepare(self, context: bpy.types.Context) -> Callable[..., dict[str, Any]]:
        client = self._connect(context)

        def work(progress: Any, _cancel: Any) -> dict[str, Any]:
            with client:
                progress(ProgressEvent("request", 0.1, f"Asking {client.host} what it holds for your key"))
                return client.me()

        return work

    def job_finish(self, context: bpy.types.Context, data: dict[str, Any]) -> None:
        my_data[self._server] = data
        lines = summary(data)
        for line in (lines[0], *lines[2:]):
            self.report({"INFO"}, line)
        self._conclude_with(context, f"{self._host} holds: {lines[1]}")


class PARTCRAFTER_OT_server_export(_ServerDataJob, bpy.types.Operator):
    """Save everything the server holds for your key (metadata and results) as a ZIP archive"""

    bl_idname = "partcrafter.server_export"
    bl_label = "Export My Data"
    bl_options = {"INTERNAL"}

    job_title = "Exporting your data from the server"

    filepath: bpy.props.StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})
    filter_glob: bpy.props.StringProperty(default="*.zip", options={"HIDDEN", "SKIP_SAVE"})
    # The file browser shows an existing file's name in red before the person confirms (like ExportHelper).
    check_existing: bpy.props.BoolProperty(
        name="Check Existing", description="Warn before overwriting an existing file", default=True, options={"HIDDEN", "SKIP_SAVE"}
    )
    overwrite: bpy.props.BoolProperty(
        name="Overwrite",
        description="Replace an existing file (without the file browser, an existing file is otherwise refused)",
        default=False,
        options={"SKIP_SAVE"},
    )

    _dest: Path | None = None

    def invoke(self, context: bpy.types.Context, _event: bpy.types.Event) -> set[str]:
        if not self.filepath:
            self.filepath = "partcrafter-my-data.zip"
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def job_prepare(self, context: bpy.types.Context) -> Callable[..., int]:
        if not self.filepath:
            raise PartCrafterError("Choose where to save the export.")
        dest = Path(bpy.path.abspath(self.filepath))
        if dest.suffix.lower() != ".zip":
            dest = dest.with_name(dest.name + ".zip")
        # Chosen in the file browser, the person saw the warning (check_existing) and confirmed;
        # a script or a background run must say it means to replace the file.
        chosen_in_browser = self.options.is_invoke and interactive(context)
        if dest.is_file() and not (self.overwrite or chosen_in_browser):
            raise PartCrafterError(
                f"{dest} already exists; nothing was downloaded. Choose another file name, "
                "or set overwrite=True to replace it."
            )
        client = self._connect(context)
        self._dest = dest

        def work(progress: Any, cancel: Any) -> int:
            with client:
                progress(ProgressEvent("download", 0.1, f"Downloading your data from {client.host}"))
                return client.export_me(dest, cancel)

        return work

    def job_finish(self, context: bpy.types.Context, size: int) -> None:
        self._conclude_with(context, f"Saved your data from {self._host} ({size:,} bytes) to {self._dest}")


class PARTCRAFTER_OT_server_delete_all(_ServerDataJob, bpy.types.Operator):
    """Delete every job and result the server holds for your key. This cannot be undone"""

    bl_idname = "partcrafter.server_delete_all"
    bl_label = "Delete All My Data on the Server"
    bl_options = {"INTERNAL"}

    job_title = "Deleting your data on the server"

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        return context.window_manager.invoke_confirm(
            self,
            event,
            title="Delete all your data on the server?",
            message="Every job and result stored for your API key is erased. This cannot be undone.",
            confirm_text="Delete Everything",
            icon="WARNING",
        )

    def job_prepare(self, context: bpy.types.Context) -> Callable[..., int]:
        client = self._connect(context)

        def work(progress: Any, cancel: Any) -> int:
            with client:
                progress(ProgressEvent("request", 0.1, f"Deleting your data on {client.host}"))
                cancel.raise_if_cancelled()  # the last moment a cancel can keep the data
                return client.delete_me()

        return work

    def job_finish(self, context: bpy.types.Context, deleted: int) -> None:
        my_data.pop(self._server, None)
        self._conclude_with(context, f"Deleted {deleted} job(s) and their results from {self._host}.")


class _ServerDataUpdate(_ServerDataJob):
    """A PATCH /v1/me; the answer refreshes the panel."""

    def changes(self) -> dict[str, Any]:
        raise NotImplementedError

    def done_message(self, data: dict[str, Any]) -> str:
        raise NotImplementedError

    def job_prepare(self, context: bpy.types.Context) -> Callable[..., dict[str, Any]]:
        client = self._connect(context)
        changes = self.changes()

        def work(progress: Any, _cancel: Any) -> dict[str, Any]:
            with client:
                progress(ProgressEvent("request", 0.1, f"Updating what {client.host} holds for your key"))
                return client.update_me(**changes)

        return work

    def job_finish(self, context: bpy.types.Context, data: dict[str, Any]) -> None:
        my_data[self._server] = data
        self._conclude_with(context, self.done_message(data))


class PARTCRAFTER_OT_server_correct(_ServerDataUpdate, bpy.types.Operator):
    """Correct the label and contact the server holds for your key"""

    bl_idname = "partcrafter.server_correct"
    bl_label = "Correct My Details"
    bl_options = {"INTERNAL"}

    job_title = "Correcting your details on the server"

    label: bpy.props.StringProperty(name="Label", description="What the key is called (empty: none)", maxlen=100)
    contact: bpy.props.StringProperty(
        name="Contact", description="How the server's operator reaches you (empty: none)", maxlen=200
    )

    def invoke(self, context: bpy.types.Context, _event: bpy.types.Event) -> set[str]:
        server = parse_server_url(server_config(context, with_key=False).url).base_url  # valid: poll checked it
        key = (my_data.get(server) or {}).get("key") or {}
        self.label, self.contact = key.get("label") or "", key.get("contact") or ""
        return context.window_manager.invoke_props_dialog(self, title="Correct what the server holds", confirm_text="Save")

    def changes(self) -> dict[str, Any]:
        return {"label": self.label.strip() or None, "contact": self.contact.strip() or None}

    def done_message(self, data: dict[str, Any]) -> str:
        key = data.get("key") or {}
        return f"{self._host} now holds label '{key.get('label') or ''}' and contact '{key.get('contact') or ''}'."


class PARTCRAFTER_OT_server_restrict(_ServerDataUpdate, bpy.types.Operator):
    """Restrict processing: the server accepts and starts no job for your key, and keeps what it holds until you delete it or its retention ends. Lift it the same way"""

    bl_idname = "partcrafter.server_restrict"
    bl_label = "Restrict Processing"
    bl_options = {"INTERNAL"}

    job_title = "Setting your restriction on the server"

    restrict: bpy.props.BoolProperty(name="Restrict", description="Restrict (on) or lift the restriction (off)", default=True)

    def changes(self) -> dict[str, Any]:
        return {"processing_restricted": self.restrict}

    def done_message(self, data: dict[str, Any]) -> str:
        if data.get("processing_restricted"):
            return f"{self._host} now accepts and starts no job for your key; it keeps what it holds."
        return f"Restriction lifted: {self._host} processes your jobs again."


class PARTCRAFTER_OT_server_object(_ServerDataUpdate, bpy.types.Operator):
    """Object to being counted in the server's anonymous statistics (its /metrics counters), or withdraw the objection"""

    bl_idname = "partcrafter.server_object"
    bl_label = "Object to Statistics"
    bl_options = {"INTERNAL"}

    job_title = "Setting your objection on the server"

    objecting: bpy.props.BoolProperty(name="Object", description="Object (on) or withdraw the objection (off)", default=True)

    def changes(self) -> dict[str, Any]:
        return {"analytics_objection": self.objecting}

    def done_message(self, data: dict[str, Any]) -> str:
        if data.get("analytics_objection"):
            return f"{self._host} leaves your requests out of its statistics."
        return f"Objection withdrawn: {self._host} counts your requests in its statistics again."


classes = (
    PARTCRAFTER_OT_server_my_data,
    PARTCRAFTER_OT_server_export,
    PARTCRAFTER_OT_server_delete_all,
    PARTCRAFTER_OT_server_correct,
    PARTCRAFTER_OT_server_restrict,
    PARTCRAFTER_OT_server_object,
)
