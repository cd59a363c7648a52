"""Explode Parts: set the active result's Explode factor (F3, or the panel's slider)."""

from __future__ import annotations

import bpy

from ..scene.explode import EXPLODE_PROP, rig_explode, set_explode
from ..scene.result import active_result, result_parts
from ._select import poll_active_result


class PARTCRAFTER_OT_explode(bpy.types.Operator):
    """Move the parts of the active PartCrafter result apart (0: as generated)"""

    bl_idname = "partcrafter.explode"
    bl_label = "Explode PartCrafter Parts"
    bl_options = {"REGISTER", "UNDO"}

    factor: bpy.props.FloatProperty(
        name="Explode", description="0: as generated; 1: moved by half the model's size", default=1.0, min=0.0,
        soft_max=2.0, subtype="FACTOR",
    )
    recompute: bpy.props.BoolProperty(
        name="Recompute Directions",
        description="Work the directions out again from the parts as they are now (after joining, separating or moving parts)",
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return poll_active_result(cls, context)

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        root = active_result(context)
        if root is not None and not self.properties.is_property_set("factor"):
            self.factor = 1.0 if float(root.get(EXPLODE_PROP, 0.0)) == 0.0 else 0.0  # toggles from F3
        return self.execute(context)

    def execute(self, context: bpy.types.Context) -> set[str]:
        root = active_result(context)
        assert root is not None
        parts = result_parts(root)
        if not parts:
            self.report({"ERROR"}, f"'{root.name}' has no parts left to explode.")
            return {"CANCELLED"}
        if self.recompute or EXPLODE_PROP not in root:
            rig_explode(root, parts)
        set_explode(root, self.factor)
        return {"FINISHED"}


classes = (PARTCRAFTER_OT_explode,)


def menu_items(layout: bpy.types.UILayout) -> None:
    layout.operator(PARTCRAFTER_OT_explode.bl_idname, text="Explode PartCrafter Parts", icon="MOD_EXPLODE")
