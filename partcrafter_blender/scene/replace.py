"""Put regenerated parts into a result in place: the same objects (names, collection,
parent, materials, explode drivers), new mesh data; parts beyond the old count (relief
can split a region into more parts) become new objects next to them. All or nothing:
every new mesh is built before the first object changes, and a failure removes them again."""

from __future__ import annotations

from collections.abc import Mapping

import bpy

from ..inference import PartMesh, part_name
from .build import PROP_PREFIX, SceneBuildError, new_part_mesh, part_material, place_part
from .explode import rig_explode
from .result import INDEX, VERTEX_COUNT, result_parts


def replace_parts(root: bpy.types.Object, targets: Mapping[int, bpy.types.Object], parts: Mapping[int, PartMesh],
                  seed: int) -> list[bpy.types.Object]:
    """Give each object in `targets` (part index -> object) the mesh of `parts[index]`,
    placed with the result's import scale and anchor, and records the seed it was made
    with; parts without a target become new part objects. Returns the objects changed or made."""
    missing = sorted(set(targets) - set(parts))
    if missing:
        raise SceneBuildError(f"The engine returned no mesh for part {', '.join(str(i + 1) for i in missing)}.")
    scale = float(root.get(PROP_PREFIX + "import_scale", 0.0))
    anchor = list(root.get(PROP_PREFIX + "import_anchor", ()))
    if not scale > 0 or len(anchor) != 3:
        raise SceneBuildError(f"'{root.name}' was imported before parts could be regenerated: its import scale is unknown.")
    template = next(iter(targets.values()))
    built: list[tuple[bpy.types.Object, bpy.types.Mesh, tuple[float, float, float]]] = []
    added: list[bpy.types.ID] = []
    try:
        for index in sorted(parts):
            obj = targets.get(index) or _new_part_object(root, template, index, parts[index], added)
            verts, faces, centre = place_part(index, parts[index], scale, anchor)
            mesh = new_part_mesh(obj.data.name if index in targets else obj.name, verts, faces)
            built.append((obj, mesh, tuple(float(x) for x in centre)))
            for material in obj.data.materials if index in targets else added[-1:]:
                mesh.materials.append(material)
    except BaseException:
        for _obj, mesh, _centre in built:
            bpy.data.meshes.remove(mesh)
        for idblock in added:
            if isinstance(idblock, bpy.types.Object):
                placeholder = idblock.data
                bpy.data.objects.remove(idblock)
                bpy.data.meshes.remove(placeholder)
            else:
                bpy.data.materials.remove(idblock)
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
    new_objects = [obj for obj, _mesh, _centre in built if obj.name not in {o.name for o in targets.values()}]
    if new_objects:
        for obj in new_objects:
            for collection in template.users_collection:
                collection.objects.link(obj)
        rig_explode(root, result_parts(root), only=new_objects)
    return [obj for obj, _mesh, _centre in built]


def _new_part_object(root: bpy.types.Object, template: bpy.types.Object, index: int, part: PartMesh,
                     added: list[bpy.types.ID]) -> bpy.types.Object:
    """A part object like `template` (its provenance) for a part the result did not have."""
    name = f"{root.name}.{part_name(index)}"
    material = part_material(name, part.color or (0.8, 0.8, 0.8, 1.0))
    obj = bpy.data.objects.new(name, bpy.data.meshes.new(name))
    added += [obj, material]
    obj.data.materials.append(material)
    for key, value in template.items():
        if key.startswith(PROP_PREFIX):
            obj[key] = value
    obj[INDEX] = index
    obj[PROP_PREFIX + "part_name"] = part.name
    obj.color = material.diffuse_color
    obj.parent = root
    return obj
