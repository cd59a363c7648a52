"""Keep This Variant: of a seed-variants result, keep the active object's variant and
remove the others (objects, meshes, materials), in one undo step."""

from __future__ import annotations

import bpy

from ..scene.variants import keep_variant, variant_of


class PARTCRAFTER_OT_keep_variant(bpy.types.Operator):
    """Keep the seed variant of the active object and remove the other variants of its result"""

    bl_idname = "partcrafter.keep_variant"
    bl_label = "Keep This Variant"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        found = variant_of(context.active_object)
        return found is not None and len(found[0].children) > 1

    def execute(self, context: bpy.types.Context) -> set[str]:
        found = variant_of(context.active_object)
        if found is None:
            self.report({"ERROR"}, "The active object is not part of a seed-variants result.")
            return {"CANCELLED"}
        parent, kept = found
        removed = keep_variant(parent, kept)
        self.report({"INFO"}, f"Kept '{kept.name}'; removed {removed} other variant{'s' if removed != 1 else ''}")
        return {"FINISHED"}


classes = (PARTCRAFTER_OT_keep_variant,)
