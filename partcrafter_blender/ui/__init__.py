"""Panels, menus and the status-bar progress.

`server_panel.py` holds the server backend's sub-panels; `server_preferences.py` its
settings group, which preferences.py registers with the add-on preferences.
"""

from __future__ import annotations

import bpy

_registered: list[type] = []


def register() -> None:
    # Imported here, not at the top: preferences.py imports ui.server_preferences, and
    # these modules import the operators, which import preferences.
    from . import menus, panel, parts_list, server_panel, settings

    settings.register()
    parts_list.register()
    for cls in (*panel.classes, *server_panel.classes, *parts_list.classes):
        bpy.utils.register_class(cls)
        _registered.append(cls)
    menus.register()
    bpy.types.STATUSBAR_HT_header.append(panel.draw_statusbar)


def unregister() -> None:
    from . import menus, panel, parts_list, settings

    bpy.types.STATUSBAR_HT_header.remove(panel.draw_statusbar)
    menus.unregister()
    while _registered:
        bpy.utils.unregister_class(_registered.pop())
    parts_list.unregister()
    settings.unregister()
