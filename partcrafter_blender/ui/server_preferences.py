"""Server backend settings, shown in the add-on preferences when Backend is Server.

The API key field is backed by get/set functions that keep the key in a 0600 file
in the extension's user folder: Blender stores nothing for such a property, so the
key never lands in userpref.blend or any other .blend file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy

from ..remote.endpoint import API_KEY_ENV, parse_server_url
from ..remote.errors import InvalidServerURL
from ..remote.gate import RESULT_RETENTION_ITEMS
from ..remote.keystore import load_key, store_key


def _key_dir() -> Path:
    # Imported here: preferences.py imports this module, and server_backend imports preferences.
    from ..server_backend import server_dir

    return server_dir()


def _get_key(_self: Any) -> str:
    return load_key(_key_dir())


def _set_key(_self: Any, value: str) -> None:
    store_key(_key_dir(), value)


class ServerSettings(bpy.types.PropertyGroup):
    url: bpy.props.StringProperty(
        name="Server URL",
        description="Address of the PartCrafter server, e.g. https://gpu.example.com (http:// only for this computer)",
        default="",
    )
    api_key: bpy.props.StringProperty(
        name="API Key",
        description=f"Key the server operator gave you. Stored outside any .blend file; empty uses ${API_KEY_ENV}",
        subtype="PASSWORD",
        get=_get_key,
        set=_set_key,
        options={"SKIP_SAVE"},
    )
    ca_bundle: bpy.props.StringProperty(
        name="CA Bundle",
        description="PEM file of certificate authorities to trust for this server (empty: the standard store)",
        subtype="FILE_PATH",
    )
    engine: bpy.props.StringProperty(
        name="Server Engine", description="Engine the server should run (empty: the server's default)", default=""
    )
    ask_every_time: bpy.props.BoolProperty(
        name="Ask Before Every Upload",
        description="Show the consent dialog before each upload, not only once per server and policy version",
        default=False,
    )
    keep_on_server: bpy.props.BoolProperty(
        name="Keep Results on Server",
        description="Do not delete the server's copy after a successful import (it is still erased by the server's retention policy)",
        default=False,
    )
    result_retention: bpy.props.EnumProperty(
        name="Server Keeps Results",
        description="Ask the server to erase each result sooner than its own retention (never later); "
        "also shown in the consent dialog",
        items=RESULT_RETENTION_ITEMS,
        default="SERVER",
    )


def draw_server_preferences(layout: bpy.types.UILayout, settings: ServerSettings, _context: bpy.types.Context) -> None:
    layout.prop(settings, "url")
    try:
        endpoint = parse_server_url(settings.url)
    except InvalidServerURL as exc:
        if settings.url:
            layout.label(text=str(exc), icon="ERROR")
        endpoint = None
    if endpoint is not None and not endpoint.is_loopback and not bpy.app.online_access:
        layout.label(text="Online access is off: enable it under System > Network to use this server.", icon="ERROR")
    layout.prop(settings, "api_key")
    if not settings.api_key:
        layout.label(text=f"No key stored; ${API_KEY_ENV} is used when set.", icon="INFO")
    layout.prop(settings, "ca_bundle")
    layout.prop(settings, "engine")
    layout.prop(settings, "ask_every_time")
    layout.prop(settings, "keep_on_server")
    layout.prop(settings, "result_retention")
