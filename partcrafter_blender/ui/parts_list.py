"""Sidebar > PartCrafter > Parts: the active result's parts, its Explode slider and
Regenerate Selected Parts.

The list shows the result collection's own `objects`, filtered to the parts of the
active result (so joined, separated or deleted parts simply change what is listed),
with the parts the engine could not produce listed underneath with the reason.
"""

from __future__ import annotations

import json
from typing import Any

import bpy

from ..scene.explode import EXPLODE_PATH, EXPLODE_PROP
from ..scene.result import INDEX, active_result, part_problem, result_root, triangle_count

FAILED_REASONS = "partcrafter_failed_part_reasons"  # JSON {part number: reason}, see generation.provenance


def _get_label(obj: bpy.types.Object) -> str:
    return obj.name


def _set_label(obj: bpy.types.Object, value: str) -> None:
    """Renaming a part in the list renames its object and its mesh."""
    obj.name = value
    if obj.data is not None and obj.data.users == 1:
        obj.data.name = obj.name  # the name Blender settled on (made unique)


def failed_parts(root: bpy.types.Object) -> list[tuple[int, str]]:
    """(part number, reason) for every part the engine could not produce."""
    try:
        reasons = json.loads(str(root.get(FAILED_REASONS, "") or "{}"))
    except ValueError:
        return []
    return sorted((int(k), str(v)) for k, v in reasons.items())


def list_filter(root: bpy.types.Object | None, objects: Any, flag: int) -> tuple[list[int], list[int]]:
    """The UIList's filter: `flag` for the parts of `root` among `objects`, and their order (by part number)."""
    flags = [flag if (o.type == "MESH" and INDEX in o and result_root(o) == root) else 0 for o in objects]
    order = sorted(range(len(objects)), key=lambda i: (int(objects[i].get(INDEX, 1 << 30)), objects[i].name))
    positions = [0] * len(objects)
    for position, i in enumerate(order):
        positions[i] = position
    return flags, positions


class PARTCRAFTER_UL_parts(bpy.types.UIList):
    def draw_item(self, context: bpy.types.Context, layout: bpy.types.UILayout, data: Any, item: Any,
                  icon: int, active_data: Any, active_propname: str, index: int = 0, flt_flag: int = 0) -> None:
        obj = item
        row = layout.row(align=True)
        problem = part_problem(obj)
        row.prop(obj, "partcrafter_part_label", text="", emboss=False, icon="ERROR" if problem else "MESH_DATA")
        row.label(text=f"{triangle_count(obj.data):,} tris")
        hidden = obj.hide_get()
        row.operator("partcrafter.part_visibility", text="", icon="HIDE_ON" if hidden else "HIDE_OFF", emboss=False).name = obj.name
        row.operator("partcrafter.part_select", text="", icon="RESTRICT_SELECT_OFF", emboss=False).name = obj.name
        row.operator("partcrafter.part_isolate", text="", icon="VIEWZOOM", emboss=False).name = obj.name

    def filter_items(self, context: bpy.types.Context, data: Any, propname: str) -> tuple[list[int], list[int]]:
        return list_filter(active_result(context), getattr(data, propname), self.bitflag_filter_item)


class PARTCRAFTER_PT_parts(bpy.types.Panel):
    bl_label = "Parts"
    bl_idname = "PARTCRAFTER_PT_parts"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "PartCrafter"
    bl_parent_id = "PARTCRAFTER_PT_main"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return active_result(context) is not None

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        root = active_result(context)
        assert root is not None
        layout.label(text=root.name, icon="OUTLINER_OB_EMPTY")
        if EXPLODE_PROP in root:
            layout.prop(root, EXPLODE_PATH, text="Explode", slider=True)
        collection = root.users_collection[0] if root.users_collection else None
        if collection is not None:
            layout.template_list("PARTCRAFTER_UL_parts", "", collection, "objects", context.scene,
                                 "partcrafter_part_index", rows=4)
        for number, reason in failed_parts(root):
            layout.label(text=f"Part {number} not produced: {reason}", icon="ERROR")
        layout.operator("partcrafter.regenerate", icon="FILE_REFRESH")


classes = (PARTCRAFTER_UL_parts, PARTCRAFTER_PT_parts)


def register() -> None:
    bpy.types.Object.partcrafter_part_label = bpy.props.StringProperty(
        name="Part Name", description="Name of the part's object and mesh", get=_get_label, set=_set_label
    )
    bpy.types.Scene.partcrafter_part_index = bpy.props.IntProperty(options={"HIDDEN", "SKIP_SAVE"})


def unregister() -> None:
    del bpy.types.Scene.partcrafter_part_index
    del bpy.types.Object.partcrafter_part_label
