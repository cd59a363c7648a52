"""Export PartCrafter Result (.glb): the active result as the user sees it, one named node per part."""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy_extras.io_utils import ExportHelper

from ..inference import PartCrafterError
from ..inference.glb import write_glb
from ..scene.build import PROP_PREFIX
from ..scene.export import visible_parts
from ..scene.result import active_result
from ._select import poll_active_result


class PARTCRAFTER_OT_export_glb(bpy.types.Operator, ExportHelper):
    """Write the active PartCrafter result to one GLB as shown (exploded view and edits included), with its provenance"""

    bl_idname = "partcrafter.export_glb"
    bl_label = "Export PartCrafter Result"

    filename_ext = ".glb"
    filter_glob: bpy.props.StringProperty(default="*.glb", options={"HIDDEN"})

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return poll_active_result(cls, context)

    def execute(self, context: bpy.types.Context) -> set[str]:
        root = active_result(context)
        assert root is not None
        extras = {k.removeprefix(PROP_PREFIX): v for k, v in root.items() if k.startswith(PROP_PREFIX)
                  and isinstance(v, (str, int, float))}
        path = Path(bpy.path.abspath(self.filepath))
        try:
            data = write_glb(visible_parts(root), extras=extras)
            path.write_bytes(data)
        except PartCrafterError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        except OSError as exc:
            self.report({"ERROR"}, f"Cannot write {path}: {exc.strerror or exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Wrote {path.name}")
        return {"FINISHED"}


classes = (PARTCRAFTER_OT_export_glb,)


def menu_items(layout: bpy.types.UILayout) -> None:
    layout.operator(PARTCRAFTER_OT_export_glb.bl_idname, text="PartCrafter Result (.glb)")
