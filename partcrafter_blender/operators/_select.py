"""Make a freshly imported result the selection, the way Blender's importers do."""

from __future__ import annotations

import bpy


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
