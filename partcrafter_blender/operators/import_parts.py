"""Import an existing multi-part result: one multi-mesh GLB, or a folder (or a
selection) of per-part GLB files such as part_00.glb, part_01.glb."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import bpy
from bpy_extras.io_utils import ImportHelper

from ..inference import PartCrafterError
from ..preferences import get_preferences
from ..scene.build import build_parts, part_objects
from ..scene.shading import build_with_texture
from ..scene.sources import ImportedResult, read_result_files, read_result_path
from ._select import select_result


class PARTCRAFTER_OT_import_parts(bpy.types.Operator, ImportHelper):
    """Import a multi-part result (a multi-mesh GLB or a folder of per-part GLB files) as one collection of parts"""

    bl_idname = "partcrafter.import_parts"
    bl_label = "Import PartCrafter Parts"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".glb"
    filter_glob: bpy.props.StringProperty(default="*.glb", options={"HIDDEN"})
    files: bpy.props.CollectionProperty(type=bpy.types.OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"})
    directory: bpy.props.StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})
    size: bpy.props.FloatProperty(
        name="Size", description="Largest dimension; 0 for the Preferences' import size", default=0.0, min=0.0, unit="LENGTH"
    )

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            imported = self._read()
            prefs = get_preferences(context)
            collection = build_with_texture(
                imported.texture,
                imported.name,
                prefs.textured_preview,
                lambda texture: build_parts(
                    imported.parts,
                    collection_name=imported.name,
                    size=self.size or prefs.import_size,
                    provenance=_provenance(imported),
                    location=tuple(context.scene.cursor.location),
                    parent_collection=context.scene.collection,
                    texture=texture,
                ),
                part_objects,
            )
        except PartCrafterError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        except OSError as exc:
            self.report({"ERROR"}, f"Cannot read {exc.filename or 'the file'}: {exc.strerror or exc}")
            return {"CANCELLED"}
        select_result(context, collection)
        self.report({"INFO"}, f"Imported {len(part_objects(collection))} parts into '{collection.name}'")
        return {"FINISHED"}

    def _read(self) -> ImportedResult:
        chosen = [f.name for f in self.files if f.name]
        if len(chosen) > 1:
            folder = Path(bpy.path.abspath(self.directory))
            return read_result_files([folder / name for name in chosen], name=folder.name)
        # A folder chosen in the file browser arrives as `directory` with no file name.
        return read_result_path(Path(bpy.path.abspath(self.filepath or self.directory)))


def _provenance(imported: ImportedResult) -> dict[str, Any]:
    return {
        "engine": "import",
        "engine_version": "",
        "source": imported.source,
        "source_sha256": imported.sha256,
        "produced_parts": len(imported.parts),
        "job_id": uuid.uuid4().hex,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


classes = (PARTCRAFTER_OT_import_parts,)


def menu_items(layout: Any) -> None:
    layout.operator(PARTCRAFTER_OT_import_parts.bl_idname, text="PartCrafter Parts (.glb, folder)")
