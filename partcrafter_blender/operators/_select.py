"""Selection helpers: make a freshly imported result the selection, the way Blender's
importers do; the poll of operators that work on the active result."""

from __future__ import annotations

import bpy

from ..scene.result import active_result


def select_result(context: bpy.types.Context, collection: bpy.types.Collection) -> None:
    view_layer = context.view_layer
    if view_layer is None:
        return
    # Objects linked during an operator reach the view layer's bases only when it is next
    # synced; without this the new result was left unselected and without an active object.
    view_layer.update()
    for obj in view_layer.objects.selected:
        obj.select_set(False)
    root = None
    for obj in collection.objects:
        if obj.name in view_layer.objects:
            obj.select_set(True)
            if obj.parent is None:
                root = obj
    if root is not None:
        view_layer.objects.active = root


def poll_active_result(cls: type, context: bpy.types.Context) -> bool:
    """An operator's poll for working on the active result; says what to select otherwise."""
    if active_result(context) is None:
        cls.poll_message_set("Select a PartCrafter result (its parent empty or one of its parts).")
        return False
    return True
