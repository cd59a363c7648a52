"""Panels, menus and the status-bar progress.

The server backend's UI lives in `server_*.py` modules next to these (each with a
`classes` tuple, e.g. a sub-panel with bl_parent_id = "PARTCRAFTER_PT_main"); every
such module found here is registered after ours. `server_preferences.py` is the
exception: preferences.py registers its settings group.
"""

from __future__ import annotations

import importlib
import pkgutil

import bpy

_registered: list[type] = []


def _server_classes() -> list[type]:
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("server_"))
    return [cls for name in names for cls in getattr(importlib.import_module(f"{__name__}.{name}"), "classes", ())]


def register() -> None:
    # Imported here, not at the top: preferences.py imports ui.server_preferences, and
    # these modules import the operators, which import preferences.
    from . import menus, panel, settings

    settings.register()
    for cls in (*panel.classes, *_server_classes()):
        bpy.utils.register_class(cls)
        _registered.append(cls)
    menus.register()
    bpy.types.STATUSBAR_HT_header.append(panel.draw_statusbar)


def unregister() -> None:
    from . import menus, panel, settings

    bpy.types.STATUSBAR_HT_header.remove(panel.draw_statusbar)
    menus.unregister()
    while _registered:
        bpy.utils.unregister_class(_registered.pop())
    settings.unregister()
