"""The parts list's row buttons: select, show/hide and isolate one part of a result."""

from __future__ import annotations

import bpy

from ..scene.result import result_parts, result_root


def _named_part(op: bpy.types.Operator) -> bpy.types.Object | None:
    obj = bpy.data.objects.get(op.name)
    if obj is None or result_root(obj) is None:
        op.report({"ERROR"}, f"There is no PartCrafter part named '{op.name}' any more.")
        return None
    return obj


class _PartOperator:
    bl_options = {"REGISTER", "UNDO"}

    name: bpy.props.StringProperty(name="Part", description="Name of the part object", options={"SKIP_SAVE"})


class PARTCRAFTER_OT_part_select(_PartOperator, bpy.types.Operator):
    """Select this part (Shift: add it to the selection) and make it active"""

    bl_idname = "partcrafter.part_select"
    bl_label = "Select Part"

    extend: bpy.props.BoolProperty(name="Extend", description="Add to the selection", options={"SKIP_SAVE"})

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        self.extend = self.extend or event.shift
        return self.execute(context)

    def execute(self, context: bpy.types.Context) -> set[str]:
        obj = _named_part(self)
        if obj is None:
            return {"CANCELLED"}
        if not self.extend:
            for other in context.view_layer.objects.selected:
                other.select_set(False)
        obj.hide_set(False)
        obj.select_set(True)
        context.view_layer.objects.active = obj
        return {"FINISHED"}


class PARTCRAFTER_OT_part_visibility(_PartOperator, bpy.types.Operator):
    """Show or hide this part in the viewport"""

    bl_idname = "partcrafter.part_visibility"
    bl_label = "Show/Hide Part"

    def execute(self, context: bpy.types.Context) -> set[str]:
        obj = _named_part(self)
        if obj is None:
            return {"CANCELLED"}
        obj.hide_set(not obj.hide_get())
        return {"FINISHED"}


class PARTCRAFTER_OT_part_isolate(_PartOperator, bpy.types.Operator):
    """Show only this part of its result; again to show all its parts"""

    bl_idname = "partcrafter.part_isolate"
    bl_label = "Isolate Part"

    def execute(self, context: bpy.types.Context) -> set[str]:
        obj = _named_part(self)
        if obj is None:
            return {"CANCELLED"}
        others = [o for o in result_parts(result_root(obj)) if o != obj]
        isolated = not obj.hide_get() and all(o.hide_get() for o in others)
        obj.hide_set(False)
        for other in others:
            other.hide_set(not isolated)
        return {"FINISHED"}


classes = (PARTCRAFTER_OT_part_select, PARTCRAFTER_OT_part_visibility, PARTCRAFTER_OT_part_isolate)
