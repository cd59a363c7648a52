"""What a result is in the scene, after the artist has worked on it: the parent empty
(the result's root) and the mesh objects under it that still carry a part index.

Blender's own tools change that set: Ctrl+J keeps the active object (and its part
index) and deletes the others; Separate copies the object, its properties and drivers.
A part object is *intact* when it is the only one claiming its index and its mesh
still has the vertex count it was imported with.
"""

from __future__ import annotations

from collections import Counter

import bpy

from .build import PROP_PREFIX

INDEX = PROP_PREFIX + "part_index"
VERTEX_COUNT = PROP_PREFIX + "vertex_count"
JOB_ID = PROP_PREFIX + "job_id"


def result_root(obj: bpy.types.Object | None) -> bpy.types.Object | None:
    """The parent empty of the result `obj` belongs to (or is), else None."""
    while obj is not None:
        if obj.type == "EMPTY" and obj.parent is None and JOB_ID in obj:
            return obj
        obj = obj.parent
    return None


def active_result(context: bpy.types.Context) -> bpy.types.Object | None:
    return result_root(getattr(context, "active_object", None))


def result_parts(root: bpy.types.Object) -> list[bpy.types.Object]:
    """The mesh objects under `root` that carry a part index, by index then name."""
    parts = [o for o in root.children_recursive if o.type == "MESH" and INDEX in o]
    return sorted(parts, key=lambda o: (int(o[INDEX]), o.name))


def part_problem(obj: bpy.types.Object, parts: list[bpy.types.Object] | None = None) -> str:
    """Why `obj` no longer stands for one generated part, or "" when it does."""
    if obj.type != "MESH" or INDEX not in obj:
        return f"'{obj.name}' is not a PartCrafter part."
    root = result_root(obj)
    if root is None:
        return f"'{obj.name}' is no longer under its result's parent empty."
    claims = Counter(int(o[INDEX]) for o in (parts if parts is not None else result_parts(root)))
    if claims[int(obj[INDEX])] > 1:
        return f"'{obj.name}' was separated from a generated part (several objects share its part number)."
    expected = obj.get(VERTEX_COUNT)
    if expected is not None and len(obj.data.vertices) != int(expected):
        return f"'{obj.name}' has been joined with other parts or edited, so it no longer matches a generated part."
    return ""


def triangle_count(mesh: bpy.types.Mesh) -> int:
    """Triangles the mesh draws (an n-gon counts n - 2)."""
    return sum(p.loop_total - 2 for p in mesh.polygons)
