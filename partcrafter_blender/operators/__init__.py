"""Operators: one module per operator, each exporting a `classes` tuple.

The server backend's operators live in `server_*.py` modules next to these (owned by
the server backend); every such module found here is registered after ours, so adding
one needs no change to this file.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import bpy

from . import _job_mixin, cancel, check_local_engine, generate, import_parts

_OWN_MODULES: tuple[ModuleType, ...] = (generate, import_parts, cancel, check_local_engine)


def _server_modules() -> list[ModuleType]:
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("server_"))
    return [importlib.import_module(f"{__name__}.{name}") for name in names]


def _classes() -> list[type]:
    return [cls for module in (*_OWN_MODULES, *_server_modules()) for cls in module.classes]


_registered: list[type] = []


def register() -> None:
    _job_mixin.register()
    check_local_engine.register()
    for cls in _classes():
        bpy.utils.register_class(cls)
        _registered.append(cls)


def unregister() -> None:
    while _registered:
        bpy.utils.unregister_class(_registered.pop())
    check_local_engine.unregister()
    _job_mixin.unregister()
