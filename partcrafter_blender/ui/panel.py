"""View3D > Sidebar > PartCrafter: image, settings, Generate, progress and Cancel."""

from __future__ import annotations

import bpy

from ..generation import engine_label
from ..inference.params import param_specs
from ..operators._job_mixin import job_state
from ..operators.generate import PARTCRAFTER_OT_generate
from ..operators.shading import draw_shading_toggle
from ..operators.variants import PARTCRAFTER_OT_keep_variant
from ..preferences import get_preferences
from ..remote.endpoint import destination_label

# Parameters on the main panel; every other generation parameter is under Advanced.
MAIN_PARAMS = ("num_parts", "seed", "quality", "variants", "max_triangles")


def draw_progress(layout: bpy.types.UILayout, context: bpy.types.Context) -> bool:
    """Progress bar and Cancel button while a job runs; True when one was drawn."""
    state = job_state(context)
    if not state.running:
        return False
    row = layout.row(align=True)
    text = f"{state.message or state.stage} ({state.fraction * 100:.0f}%)"
    row.progress(factor=state.fraction, type="BAR", text=text)
    row.operator("partcrafter.cancel", text="", icon="CANCEL")
    return True


class PARTCRAFTER_PT_main(bpy.types.Panel):
    bl_label = "PartCrafter"
    bl_idname = "PARTCRAFTER_PT_main"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "PartCrafter"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.partcrafter
        prefs = get_preferences(context)

        box = layout.box()
        if prefs.backend == "SERVER":
            box.label(text="Backend: PartCrafter server", icon="WORLD")
        else:
            box.label(text=engine_label(prefs.engine), icon="INFO" if prefs.engine == "relief" else "SHADERFX")
        server_url = getattr(getattr(prefs, "server", None), "url", "")
        box.label(text=f"Image goes to: {destination_label(prefs.backend, server_url)}", icon="LOCKED" if prefs.backend != "SERVER" else "URL")

        layout.prop(settings, "source", expand=True)
        if settings.source == "FILE":
            layout.prop(settings, "image_path", text="")
        else:
            layout.template_ID(settings, "image", open="image.open")

        col = layout.column(align=True)
        row = col.row(align=True)
        row.prop(settings, "auto_parts", toggle=True)
        sub = row.row(align=True)
        sub.active = not settings.auto_parts
        sub.prop(settings, "num_parts")
        col.prop(settings, "seed")
        col.prop(settings, "variants")
        layout.prop(settings, "quality")
        layout.prop(settings, "max_triangles")

        if not draw_progress(layout, context):
            row = layout.row()
            row.scale_y = 1.5
            row.operator(PARTCRAFTER_OT_generate.bl_idname, icon="MOD_EXPLODE")
        last = job_state(context).last_result
        if last:
            layout.label(text=last)
        if PARTCRAFTER_OT_keep_variant.poll(context):
            layout.operator(PARTCRAFTER_OT_keep_variant.bl_idname, icon="CHECKMARK")
        draw_shading_toggle(layout, context)


class PARTCRAFTER_PT_advanced(bpy.types.Panel):
    bl_label = "Advanced"
    bl_idname = "PARTCRAFTER_PT_advanced"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "PartCrafter"
    bl_parent_id = "PARTCRAFTER_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        settings = context.scene.partcrafter
        for name in param_specs():
            if name not in MAIN_PARAMS:
                layout.prop(settings, name)
        layout.operator("partcrafter.import_parts", icon="IMPORT")
        if get_preferences(context).backend == "LOCAL":
            layout.operator("partcrafter.check_local_engine", icon="CHECKMARK")


def draw_statusbar(self: bpy.types.Header, context: bpy.types.Context) -> None:
    state = job_state(context)
    if state.running:
        row = self.layout.row(align=True)
        row.progress(factor=state.fraction, type="BAR", text=f"{state.title}: {state.message} ({state.fraction * 100:.0f}%)")
        row.operator("partcrafter.cancel", text="", icon="CANCEL")


classes = (PARTCRAFTER_PT_main, PARTCRAFTER_PT_advanced)
