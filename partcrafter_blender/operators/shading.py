"""Shading toggle: show the active result's picture texture or its flat part colours.
Switches the existing materials (scene/shading.py), one undo step, no regeneration."""

from __future__ import annotations

import bpy

from ..scene.build import part_objects
from ..scene.shading import is_textured, set_textured, textured_materials
from ..scene.variants import collection_parts, variant_of


def active_result_materials(context: bpy.types.Context) -> list[bpy.types.Material]:
    """The textured materials of the result the active object belongs to (all its variants)."""
    obj = context.active_object
    if obj is None:
        return []
    found = variant_of(obj)
    if found is not None:
        return textured_materials(collection_parts(found[0]))
    for collection in obj.users_collection:
        parts = part_objects(collection)
        if obj in parts:
            return textured_materials(parts)
    return []


class PARTCRAFTER_OT_toggle_texture(bpy.types.Operator):
    """Switch the active result between the reference picture and flat colours per part"""

    bl_idname = "partcrafter.toggle_texture"
    bl_label = "Toggle Picture Texture"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return bool(active_result_materials(context))

    def execute(self, context: bpy.types.Context) -> set[str]:
        materials = active_result_materials(context)
        if not materials:
            self.report({"ERROR"}, "The active object is not part of a textured result.")
            return {"CANCELLED"}
        textured = not any(is_textured(m) for m in materials)
        for material in materials:
            set_textured(material, textured)
        self.report({"INFO"}, "Showing the picture texture" if textured else "Showing flat part colours")
        return {"FINISHED"}


def draw_shading_toggle(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    """The toggle for the active result, labelled with what it switches to; nothing without a texture."""
    materials = active_result_materials(context)
    if materials:
        showing = any(is_textured(m) for m in materials)
        text = "Show Flat Colours" if showing else "Show Picture Texture"
        layout.operator(PARTCRAFTER_OT_toggle_texture.bl_idname, text=text, icon="SHADING_TEXTURE")


classes = (PARTCRAFTER_OT_toggle_texture,)
