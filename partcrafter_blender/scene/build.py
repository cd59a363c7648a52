"""Turn engine parts into Blender objects: one collection, one parent empty, one
mesh object per part, each with its own material and its provenance.

Meshes are filled straight from numpy arrays with `foreach_set` on the mesh
attributes (no from_pydata, no importer operator per part); the winding is checked on
the edges Blender builds anyway, and only mixed windings go through bmesh.
All-or-nothing: either the whole collection is linked into the scene, or every
datablock created so far is removed again. Main thread only.
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import bmesh
import bpy
import numpy as np

from ..inference import PartCrafterError, PartMesh, part_name
from ..inference.srgb import srgb_to_linear
from .explode import rig_explode
from .shading import add_texture, add_uvs

PROP_PREFIX = "partcrafter_"


class SceneBuildError(PartCrafterError):
    """The parts cannot be turned into Blender meshes (empty or malformed arrays)."""


def build_parts(
    parts: Sequence[PartMesh],
    *,
    collection_name: str,
    size: float = 2.0,
    provenance: Mapping[str, Any] | None = None,
    location: Sequence[float] = (0.0, 0.0, 0.0),
    parent_collection: bpy.types.Collection | None = None,
    name_by_part: bool = False,
    texture: bpy.types.Image | None = None,
) -> bpy.types.Collection:
    """Create a new collection (named `collection_name`, made unique by Blender) linked
    under `parent_collection` (default: the scene's master collection) holding one
    parent empty at `location` and one mesh object per part.

    Vertices are taken in the engines' Y-up frame, turned Z-up ((x, y, z) -> (x, -z, y)),
    scaled uniformly so the largest dimension of the whole result is `size` metres,
    centred on the empty in X/Y and standing on its Z.

    Objects are `<collection>.part_01`, `.part_02`, ... in order, or, with `name_by_part`
    (an engine's result), `<collection>.<part name>` so that a failed part's gap shows and
    objects, their `partcrafter_part_name` and the GLB nodes agree. Parts with UVs get
    them as a UV map and, given `texture`, a material showing it (scene/shading.py).
    """
    if not parts:
        raise SceneBuildError("There are no parts to import.")
    if not size > 0:
        raise SceneBuildError(f"The import size must be positive (got {size}).")
    cleaned = [_checked_part(i, p) for i, p in enumerate(parts)]
    placed, scale, anchor = _place(cleaned, size)
    colors = _part_colors(parts)
    target = parent_collection if parent_collection is not None else bpy.context.scene.collection

    created: list[bpy.types.ID] = []
    try:
        collection = bpy.data.collections.new(collection_name)
        created.append(collection)
        base = collection.name
        root = bpy.data.objects.new(base, None)
        created.append(root)
        root.empty_display_type = "PLAIN_AXES"
        root.empty_display_size = 0.25 * size
        root.location = tuple(location)
        _set_props(root, provenance)
        # How engine-frame vertices map here, so regenerated parts land where their originals were.
        root[PROP_PREFIX + "import_scale"] = scale
        root[PROP_PREFIX + "import_anchor"] = [float(x) for x in anchor]
        collection.objects.link(root)
        objects = []
        for i, (part, checked, (verts, center)) in enumerate(zip(parts, cleaned, placed, strict=True)):
            name = f"{base}.{part.name if name_by_part else part_name(i)}"
            mesh = new_part_mesh(name, verts, checked.faces)
            created.append(mesh)
            material = part_material(name, colors[i])
            created.append(material)
            if texture is not None and part.uvs is not None:
                add_uvs(mesh, part.uvs)
                add_texture(material, texture)
            mesh.materials.append(material)
            obj = bpy.data.objects.new(name, mesh)
            created.append(obj)
            obj.color = material.diffuse_color
            obj.parent = root
            obj.location = tuple(center)
            _set_props(obj, provenance)
            obj[PROP_PREFIX + "part_index"] = i
            obj[PROP_PREFIX + "part_name"] = part.name
            obj[PROP_PREFIX + "vertex_count"] = len(mesh.vertices)
            collection.objects.link(obj)
            objects.append(obj)
        rig_explode(root, objects)
        target.children.link(collection)
    except BaseException:
        _remove(created)
        raise
    return collection


def new_part_mesh(name: str, verts: np.ndarray, faces: np.ndarray) -> bpy.types.Mesh:
    """A mesh datablock holding one placed part (vertices from `place_part`)."""
    mesh = bpy.data.meshes.new(name)
    try:
        _fill_mesh(mesh, verts, faces)
    except BaseException:
        bpy.data.meshes.remove(mesh)
        raise
    return mesh


def place_part(index: int, part: PartMesh, scale: float, anchor: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One engine part checked and placed with a result's own scale and anchor (see
    `_place`): (vertices relative to its centre, faces, centre relative to the empty)."""
    checked = _checked_part(index, part)
    verts, centre = _placed(checked, scale, np.asarray(anchor, dtype=np.float64))
    return verts, checked.faces, centre


def part_objects(collection: bpy.types.Collection) -> list[bpy.types.Object]:
    """The part objects of an imported collection, in part order."""
    parts = [o for o in collection.objects if o.type == "MESH" and PROP_PREFIX + "part_index" in o]
    return sorted(parts, key=lambda o: o[PROP_PREFIX + "part_index"])


def gltf_part(
    obj: bpy.types.Object,
    color: tuple[float, float, float, float] | None = None,
    variant: int = 0,
    uvs: np.ndarray | None = None,
) -> PartMesh:
    """A part object as glTF holds it: the object's own triangles, in world space, in metres,
    Y-up (Blender's (x, y, z) is glTF's (x, z, -y)), so a GLB matches the scene it came from.
    Call after `view_layer.update()` so that `matrix_world` includes the parent empty.
    `uvs` are the part's own (build_parts keeps its vertex order)."""
    mesh = obj.data
    co = np.empty(3 * len(mesh.vertices), dtype=np.float32)
    mesh.vertices.foreach_get("co", co)
    world = np.asarray(obj.matrix_world, dtype=np.float64)
    points = co.reshape(-1, 3).astype(np.float64) @ world[:3, :3].T + world[:3, 3]
    mesh.calc_loop_triangles()
    triangles = np.empty(3 * len(mesh.loop_triangles), dtype=np.int32)
    mesh.loop_triangles.foreach_get("vertices", triangles)
    vertices = np.stack([points[:, 0], points[:, 2], -points[:, 1]], axis=1)
    return PartMesh(obj.name, vertices, triangles.reshape(-1, 3), color, variant, uvs)


@dataclass(frozen=True)
class _CheckedPart:
    vertices: np.ndarray  # float32 (n, 3), engine frame (Y-up)
    faces: np.ndarray  # int32 (m, 3), no degenerate triangles
    lo: np.ndarray  # bounding box in the engine frame, float64
    hi: np.ndarray


def _checked_part(index: int, part: PartMesh) -> _CheckedPart:
    v, f = part.vertices, part.faces  # float32 (n, 3) and int32 (m, 3), as PartMesh makes them
    label = f"Part {index + 1} ('{part.name}')"
    if len(v) == 0 or len(f) == 0:
        raise SceneBuildError(f"{label} is empty (no vertices or no triangles).")
    # min/max propagate NaN and keep infinities, so the bounds double as the finiteness
    # check. Reduced along contiguous rows: numpy is ~20x slower along axis 0 of (n, 3).
    columns = np.ascontiguousarray(v.T)
    lo, hi = columns.min(axis=1).astype(np.float64), columns.max(axis=1).astype(np.float64)
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise SceneBuildError(f"{label} has vertices that are not finite numbers.")
    if f.min() < 0 or f.max() >= len(v):
        raise SceneBuildError(f"{label} has triangles that point at vertices it does not have.")
    # A triangle that repeats a vertex has no area and would make Blender's mesh invalid.
    ok = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    if not ok.all():
        f = f[ok]
        if len(f) == 0:
            raise SceneBuildError(f"{label} has only degenerate triangles.")
    return _CheckedPart(v, f, lo, hi)


def _place(parts: list[_CheckedPart], size: float) -> tuple[list[tuple[np.ndarray, np.ndarray]], float, np.ndarray]:
    """Per part: Z-up, scaled float32 vertices relative to the part's own bounding-box
    centre, and that centre (the object location relative to the parent empty); then the
    scale and the anchor used. The whole result is `size` across its largest dimension,
    centred in X/Y and standing on Z = 0. Worked out on the bounding boxes."""
    lo_z = np.array([_z_up_bounds(p)[0] for p in parts])
    hi_z = np.array([_z_up_bounds(p)[1] for p in parts])
    lo, hi = lo_z.min(axis=0), hi_z.max(axis=0)
    extent = float((hi - lo).max())
    scale = size / extent if extent > 0 else 1.0
    anchor = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    return [_placed(part, scale, anchor) for part in parts], scale, anchor


def _z_up_bounds(part: _CheckedPart) -> tuple[np.ndarray, np.ndarray]:
    # (x, y, z) -> (x, -z, y) makes the minimum (x_lo, -z_hi, y_lo) and the maximum (x_hi, -z_lo, y_hi).
    return (np.array((part.lo[0], -part.hi[2], part.lo[1])), np.array((part.hi[0], -part.lo[2], part.hi[1])))


def _placed(part: _CheckedPart, scale: float, anchor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    part_lo, part_hi = _z_up_bounds(part)
    middle = (part.lo + part.hi) / 2  # engine frame
    v = part.vertices
    local = np.empty(v.shape, dtype=np.float32)
    # Column by column (a strided copy each, no (n, 3) temporaries); the differences in
    # float64 so that parts far from the origin keep their precision.
    for dst, src, sign in ((0, 0, 1.0), (1, 2, -1.0), (2, 1, 1.0)):
        local[:, dst] = np.subtract(v[:, src], middle[src], dtype=np.float64) * (sign * scale)
    return local, ((part_lo + part_hi) / 2 - anchor) * scale


def _fill_mesh(mesh: bpy.types.Mesh, verts: np.ndarray, faces: np.ndarray) -> None:
    """Fill an empty mesh with triangles whose normals point consistently outwards."""
    # Outwards = positive signed volume. Decided before Blender sees the triangles, so
    # the common case (consistent winding, maybe all reversed) needs no second pass.
    corners = faces if _signed_volume(verts, faces) >= 0 else np.ascontiguousarray(faces[:, ::-1])
    nf = len(faces)
    mesh.vertices.add(len(verts))
    mesh.loops.add(3 * nf)
    mesh.polygons.add(nf)
    # Blender 4.x keeps positions and corner vertices as plain attributes: one memcpy each.
    mesh.attributes["position"].data.foreach_set("vector", verts.ravel())
    mesh.attributes[".corner_vert"].data.foreach_set("value", corners.ravel())
    # unsigned int is loop_start's own RNA type: anything else takes a per-face slow path.
    mesh.polygons.foreach_set("loop_start", np.arange(0, 3 * nf, 3, dtype=np.uint32))
    mesh.update(calc_edges=True)
    if not _winding_consistent(mesh, corners):
        # Mixed winding: let Blender make each connected piece face outwards.
        bm = bmesh.new()
        try:
            bm.from_mesh(mesh)
            bmesh.ops.recalc_face_normals(bm, faces=bm.faces[:])
            bm.to_mesh(mesh)
        finally:
            bm.free()
        mesh.update()


def _signed_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    """Six times the signed volume enclosed by the triangles (divergence theorem along
    Z: projected area times mean height, summed); only its sign is used."""
    # One coordinate at a time from contiguous float64 rows, with the indices converted to
    # intp once: several times faster than gathering (n, 3) rows.
    corners = faces.T.astype(np.intp)
    x, y, z = (row[corners] for row in verts.T.astype(np.float64))  # each (3, m)
    area_z = (x[1] - x[0]) * (y[2] - y[0]) - (x[2] - x[0]) * (y[1] - y[0])
    return float(area_z @ (z[0] + z[1] + z[2]))


def _winding_consistent(mesh: bpy.types.Mesh, corners: np.ndarray) -> bool:
    """True when no directed edge occurs twice, i.e. every edge is walked at most once in
    each direction. Uses the edges Blender has just built (corner c's edge joins it to the
    next corner of its triangle) instead of sorting edge keys in numpy."""
    corner_edge = np.empty(corners.size, dtype=np.int32)
    mesh.attributes[".corner_edge"].data.foreach_get("value", corner_edge)
    walk = corner_edge.astype(np.intp) * 2  # two slots per edge: lower->higher vertex and back
    walk += (corners < corners[:, [1, 2, 0]]).ravel()
    return bool(np.bincount(walk, minlength=2 * len(mesh.edges)).max() <= 1)


def _part_colors(parts: Sequence[PartMesh]) -> list[tuple[float, float, float, float]]:
    """sRGB colours: the engine's when it gave every part a distinct one, else a palette
    of well separated hues (golden-ratio steps)."""
    given = [p.color for p in parts]
    if all(c is not None for c in given) and len({tuple(round(x, 3) for x in c[:3]) for c in given}) == len(given):
        return [tuple(float(x) for x in c) for c in given]  # type: ignore[misc]
    out = []
    for i in range(len(parts)):
        r, g, b = colorsys.hsv_to_rgb((0.07 + i * 0.618034) % 1.0, 0.55, 0.9)
        out.append((r, g, b, 1.0))
    return out


def part_material(name: str, srgb: tuple[float, float, float, float]) -> bpy.types.Material:
    linear = (*(float(x) for x in srgb_to_linear(srgb[:3])), srgb[3] if len(srgb) > 3 else 1.0)
    material = bpy.data.materials.new(name)
    material.diffuse_color = linear
    if bpy.app.version < (5, 0, 0):
        # Blender 5.0 deprecates the switch (removed in 6.0): its materials always use nodes.
        material.use_nodes = True
    bsdf = next((n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED"), None)
    if bsdf is not None:
        bsdf.inputs["Base Color"].default_value = linear
        bsdf.inputs["Roughness"].default_value = 0.6
    return material


def _set_props(idblock: bpy.types.ID, provenance: Mapping[str, Any] | None) -> None:
    for key, value in (provenance or {}).items():
        idblock[PROP_PREFIX + key] = value


def _remove(created: list[bpy.types.ID]) -> None:
    """Undo a half-built import: objects first, then what they used."""
    order = {bpy.types.Object: 0, bpy.types.Collection: 1, bpy.types.Mesh: 2, bpy.types.Material: 3}
    for idblock in sorted(created, key=lambda b: order.get(type(b), 9)):
        try:
            if isinstance(idblock, bpy.types.Object):
                bpy.data.objects.remove(idblock, do_unlink=True)
            elif isinstance(idblock, bpy.types.Collection):
                bpy.data.collections.remove(idblock)
            elif isinstance(idblock, bpy.types.Mesh):
                bpy.data.meshes.remove(idblock)
            elif isinstance(idblock, bpy.types.Material):
                bpy.data.materials.remove(idblock)
        except ReferenceError:
            pass  # already freed together with its owner
