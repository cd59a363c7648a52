"""A result as the user sees it, back in the engines' frame, for GLB export.

Each part is taken from the evaluated scene (explode offsets, modifiers, the artist's
edits and moves included) relative to the result's parent empty, then mapped back
through the import's own scale and anchor and turned Y-up again. So an unchanged
result at Explode 0 exports the engine's vertices, and an exploded one exports what
the viewport shows.
"""

from __future__ import annotations

import bpy
import numpy as np

from ..inference import PartMesh
from ..inference.srgb import linear_to_srgb
from .build import PROP_PREFIX, SceneBuildError
from .result import result_parts


def visible_parts(root: bpy.types.Object) -> list[PartMesh]:
    """One PartMesh per part object of `root` (named after the object), in part order."""
    scale = float(root.get(PROP_PREFIX + "import_scale", 0.0))
    anchor = np.array(list(root.get(PROP_PREFIX + "import_anchor", ())), dtype=np.float64)
    if not scale > 0 or anchor.shape != (3,):
        raise SceneBuildError(f"'{root.name}' has no import scale recorded, so it cannot be exported in its frame.")
    depsgraph = bpy.context.evaluated_depsgraph_get()
    to_root = np.array(root.evaluated_get(depsgraph).matrix_world.inverted(), dtype=np.float64)
    parts = []
    for obj in result_parts(root):
        evaluated = obj.evaluated_get(depsgraph)
        mesh = evaluated.to_mesh()
        try:
            mesh.calc_loop_triangles()
            co = np.empty(3 * len(mesh.vertices), dtype=np.float32)
            mesh.vertices.foreach_get("co", co)
            tris = np.empty(3 * len(mesh.loop_triangles), dtype=np.int32)
            mesh.loop_triangles.foreach_get("vertices", tris)
        finally:
            evaluated.to_mesh_clear()
        matrix = to_root @ np.array(evaluated.matrix_world, dtype=np.float64)
        local = co.reshape(-1, 3).astype(np.float64) @ matrix[:3, :3].T + matrix[:3, 3]
        z_up = local / scale + anchor
        engine = np.stack((z_up[:, 0], z_up[:, 2], -z_up[:, 1]), axis=1)  # Z-up back to Y-up
        colour = (*(float(c) for c in linear_to_srgb(list(obj.color[:3]))), float(obj.color[3]))
        parts.append(PartMesh(obj.name, engine, tris.reshape(-1, 3), colour))
    if not parts:
        raise SceneBuildError(f"'{root.name}' has no parts left to export.")
    return parts
