"""The server backend's Blender glue: preferences -> ServerConfig, the online-access
poll, which engine a generation uses, and deleting the server copy after an import.

Operators and panels go through here; everything below it (remote/) imports no
Blender module. The one entry for a generation is `engine_for(op, context, ...)`,
which returns the engine factory and what to do after the import:

- Backend Local: the local engine (in process, or in the Engine Python's worker).
- Backend Server: a RemoteEngine when consent is given (the operator's `consent_upload`
  for headless runs, or the policy version a consent dialog agreed to). Otherwise, with
  the interface, it starts the consent check (operators/server_consent.py) with the
  operator's own arguments and raises `ConsentPending`; without the interface it
  refuses and sends nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import bpy

from .generation import EngineFactory, engine_factory
from .inference import Cancelled, GenerationResult, PartCrafterError
from .preferences import get_preferences, user_directory
from .remote.client import ServerClient
from .remote.endpoint import online_access_problem, parse_server_url, resolve_api_key
from .remote.engine import RemoteEngine
from .remote.errors import InvalidServerURL
from .remote.gate import RESULT_RETENTION_CHOICES, ServerConfig, connect, headless_refusal, remote_engine
from .remote.keystore import load_key
from .remote.pending import PendingJob
from .remote.userdir import server_user_dir

HEADLESS_FLAG = "consent_upload=True (operator) or --consent-upload (command line)"

# After a successful import, on the main thread: returns a warning to show, or "".
AfterImport = Callable[[bpy.types.Context, GenerationResult], str]


class ConsentPending(Cancelled):
    """Generation handed over to the consent check (and maybe the dialog); nothing has been sent."""


def server_dir() -> Path:
    """The server backend's files (consent ledger, pending jobs, API key) in Blender."""
    return server_user_dir(in_blender=lambda: user_directory("server"))


def uses_server(context: bpy.types.Context | None = None) -> bool:
    return get_preferences(context).backend == "SERVER"


def server_config(context: bpy.types.Context | None = None, with_key: bool = True) -> ServerConfig:
    prefs = get_preferences(context)
    server = getattr(prefs, "server", None) or SimpleNamespace(
        url="", ca_bundle="", engine="", ask_every_time=False, keep_on_server=False, result_retention="SERVER"
    )
    return ServerConfig(
        url=server.url,
        api_key=load_key(server_dir()) if with_key else "",
        ca_bundle=bpy.path.abspath(server.ca_bundle) if server.ca_bundle else "",
        engine=server.engine,
        ask_every_time=server.ask_every_time,
        keep_on_server=server.keep_on_server,
        result_retention_minutes=RESULT_RETENTION_CHOICES[server.result_retention][1],
    )


def server_poll_problem(context: bpy.types.Context) -> str | None:
    """Why a job that talks to the server cannot start now (for operators' poll)."""
    try:
        endpoint = parse_server_url(server_config(context, with_key=False).url)
    except InvalidServerURL as exc:
        return str(exc)
    return online_access_problem(endpoint, bool(bpy.app.online_access))


def connect_from_preferences(context: bpy.types.Context | None = None, url: str = "") -> ServerClient:
    """A client for the preferences' server (or `url`, e.g. a pending job's server), same key and rules."""
    config = server_config(context)
    if url:
        config = ServerConfig(**{**config.__dict__, "url": url})
    return connect(config, bool(bpy.app.online_access))


def pending_job_engine(context: bpy.types.Context, pending: PendingJob) -> RemoteEngine:
    """An engine for a job submitted earlier, on the server it went to."""
    client = connect_from_preferences(context, url=pending.server)
    return remote_engine(client, server_config(context), server_dir(), policy_version=pending.policy_version)


def interactive(context: bpy.types.Context) -> bool:
    """A person is there to answer a dialog (not --background, not a window-less call)."""
    return not bpy.app.background and context.window is not None


def ops_error_text(exc: RuntimeError) -> str:
    """The report text inside the RuntimeError that bpy.ops raises for an error report."""
    return str(exc).strip().removeprefix("Error:").strip()


def engine_for(
    op: bpy.types.Operator, context: bpy.types.Context, engine_name: str, options: dict[str, Any]
) -> tuple[EngineFactory, AfterImport]:
    """Main thread, from the generate operator's job_prepare. See the module docstring."""
    if not uses_server(context):
        prefs = get_preferences(context)
        return engine_factory(engine_name, bpy.path.abspath(prefs.python_executable), options), _nothing_after
    engine = _server_engine(op, context)
    return (lambda: engine), finish_remote_import


def _nothing_after(_context: bpy.types.Context, _result: GenerationResult) -> str:
    return ""


def _server_engine(op: Any, context: bpy.types.Context) -> RemoteEngine:
    config = server_config(context)
    directory = server_dir()
    client = connect(config, bool(bpy.app.online_access))
    if op.consent_upload:
        return remote_engine(client, config, directory, consent_via="operator property consent_upload")
    if op.consent_policy_version:
        return remote_engine(
            client,
            config,
            directory,
            policy_version=op.consent_policy_version,
            consented_sha256=op.consent_sha256 or None,
        )
    if not interactive(context):
        raise headless_refusal(client.host, HEADLESS_FLAG)
    args = {name: getattr(op, name) for name in replayable_properties(op.properties.bl_rna)}
    try:
        bpy.ops.partcrafter.server_consent_check("INVOKE_DEFAULT", generate_args=json.dumps(args))
    except RuntimeError as exc:  # it could not start (e.g. the image is missing); it said why
        raise PartCrafterError(ops_error_text(exc)) from None
    raise ConsentPending(f"Checking your consent for {client.host} first; nothing has been sent yet.")


def replayable_properties(rna: Any) -> list[str]:
    """The generate operator's arguments the consent round trip hands back to it: every
    property a caller can set, except the consent ones the round trip itself decides."""
    return [
        p.identifier
        for p in rna.properties
        if p.identifier != "rna_type" and not p.is_hidden and not p.identifier.startswith("consent_")
    ]


def finish_remote_import(context: bpy.types.Context, result: GenerationResult) -> str:
    """After the import of a server result: delete the server copy unless kept, forget the pending job."""
    config = server_config(context)
    try:
        client = ServerClient(str(result.metadata["server"]), resolve_api_key(config.api_key), ca_bundle=config.ca_bundle)
    except InvalidServerURL as exc:
        return str(exc)
    with remote_engine(client, config, server_dir()) as engine:
        return engine.finish(result)
