"""Operators: one module per operator (or a few that belong together), each exporting a
`classes` tuple, registered in the order of MODULES (Node Wrangler's explicit style)."""

from __future__ import annotations

import bpy

from . import (
    _job_mixin,
    cancel,
    check_local_engine,
    explode,
    export_glb,
    generate,
    import_parts,
    parts,
    regenerate,
    server_consent,
    server_data,
    server_jobs,
    shading,
    variants,
)

MODULES = (generate, import_parts, cancel, check_local_engine, server_consent, server_data, server_jobs, variants,
           explode, parts, regenerate, export_glb, shading)

_registered: list[type] = []


def register() -> None:
    _job_mixin.register()
    check_local_engine.register()
    for cls in (cls for module in MODULES for cls in module.classes):
        bpy.utils.register_class(cls)
        _registered.append(cls)


def unregister() -> None:
    while _registered:
        bpy.utils.unregister_class(_registered.pop())
    check_local_engine.unregister()
    _job_mixin.unregister()
