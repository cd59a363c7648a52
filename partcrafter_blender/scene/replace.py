"""Put regenerated parts into a result in place: the same objects (names, collection,
parent, materials, explode drivers), new mesh data. All or nothing: every new mesh is
built before the first object changes, and a failure removes them again."""

from __future__ import annotations

from collections.abc import Mapping

import bpy

from ..inference import PartMesh
from .build import PROP_PREFIX, SceneBuildError, new_part_mesh, place_part
from .result import VERTEX_COUNT


def replace_parts(root: bpy.types.Object, targets: Mapping[int, bpy.types.Object], parts: Mapping[int, PartMesh],
                  seed: int) -> None:
    """Give each object in `targets` (part index -> object) the mesh of `parts[index]`,
    placed with the result's import scale and anchor; records the seed it was made with."""
    missing = sorted(set(targets) - set(parts))
    if missing:
        raise SceneBuildError(f"The engine returned no mesh for part {', '.join(str(i + 1) for i in missing)}.")
    scale = float(root.get(PROP_PREFIX + "import_scale", 0.0))
    anchor = list(root.get(PROP_PREFIX + "import_anchor", ()))
    if not scale > 0 or len(anchor) != 3:
        raise SceneBuildError(f"'{root.name}' was imported before parts could be regenerated: its import scale is unknown.")
    built: list[tuple[bpy.types.Object, bpy.types.Mesh, tuple[float, float, float]]] = []
    try:
        for index, obj in targets.items():
            verts, faces, centre = place_part(index, parts[index], scale, anchor)
            mesh = new_part_mesh(obj.data.name, verts, faces)
            built.append((obj, mesh, tuple(float(x) for x in centre)))
            for material in obj.data.materials:
                mesh.materials.append(material)
    except BaseException:
        for _obj, mesh, _centre in built:
            bpy.data.meshes.remove(mesh)
        raise
    for obj, mesh, centre in built:
        old = obj.data
        name = old.name
        obj.data = mesh
        obj.location = centre
        obj[VERTEX_COUNT] = len(mesh.vertices)
        obj[PROP_PREFIX + "seed"] = int(seed)
        if old.users == 0:
            bpy.data.meshes.remove(old)
        mesh.name = name
