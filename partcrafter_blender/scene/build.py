"""Turn engine parts into Blender objects: one collection, one parent empty, one
mesh object per part, each with its own material and its provenance.

Meshes are filled straight from numpy arrays with `foreach_set` on the mesh
attributes (no from_pydata, no importer operator per part). All-or-nothing: either the whole collection is
linked into the scene, or every datablock created so far is removed again.
Main thread only.
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from typing import Any

import bmesh
import bpy
import numpy as np

from ..inference import PartCrafterError, PartMesh

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
) -> bpy.types.Collection:
    """Create a new collection (named `collection_name`, made unique by Blender) linked
    under `parent_collection` (default: the scene's master collection) holding one
    parent empty at `location` and one mesh object per part.

    Vertices are taken in the engines' Y-up frame, turned Z-up ((x, y, z) -> (x, -z, y)),
    scaled uniformly so the largest dimension of the whole result is `size` metres,
    centred on the empty in X/Y and standing on its Z.
    """
    if not parts:
        raise SceneBuildError("There are no parts to import.")
    if not size > 0:
        raise SceneBuildError(f"The import size must be positive (got {size}).")
    cleaned = [_checked_arrays(i, p) for i, p in enumerate(parts)]
    local_verts, centers = _place(cleaned, size)
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
        collection.objects.link(root)
        for i, (part, (_, faces), verts, center) in enumerate(zip(parts, cleaned, local_verts, centers, strict=True)):
            name = f"{base}.part_{i + 1:02d}"
            mesh = bpy.data.meshes.new(name)
            created.append(mesh)
            _fill_mesh(mesh, verts, faces)
            material = _material(name, colors[i])
            created.append(material)
            mesh.materials.append(material)
            obj = bpy.data.objects.new(name, mesh)
            created.append(obj)
            obj.color = material.diffuse_color
            obj.parent = root
            obj.location = tuple(center)
            _set_props(obj, provenance)
            obj[PROP_PREFIX + "part_index"] = i
            obj[PROP_PREFIX + "part_name"] = part.name
            collection.objects.link(obj)
        target.children.link(collection)
    except BaseException:
        _remove(created)
        raise
    return collection


def part_objects(collection: bpy.types.Collection) -> list[bpy.types.Object]:
    """The part objects of an imported collection, in part order."""
    parts = [o for o in collection.objects if o.type == "MESH" and PROP_PREFIX + "part_index" in o]
    return sorted(parts, key=lambda o: o[PROP_PREFIX + "part_index"])


def _checked_arrays(index: int, part: PartMesh) -> tuple[np.ndarray, np.ndarray]:
    v, f = part.vertices, part.faces
    label = f"Part {index + 1} ('{part.name}')"
    if len(v) == 0 or len(f) == 0:
        raise SceneBuildError(f"{label} is empty (no vertices or no triangles).")
    if not np.isfinite(v).all():
        raise SceneBuildError(f"{label} has vertices that are not finite numbers.")
    if f.min() < 0 or f.max() >= len(v):
        raise SceneBuildError(f"{label} has triangles that point at vertices it does not have.")
    # A triangle that repeats a vertex has no area and would make Blender's mesh invalid.
    ok = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    if not ok.all():
        f = f[ok]
        if len(f) == 0:
            raise SceneBuildError(f"{label} has only degenerate triangles.")
    return v, f


def _place(arrays: list[tuple[np.ndarray, np.ndarray]], size: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Z-up, scaled and grounded vertices per part, each relative to its own centre,
    and the centres (object locations relative to the parent empty)."""
    zup = [np.column_stack((v[:, 0], -v[:, 2], v[:, 1])).astype(np.float64) for v, _ in arrays]
    lo = np.min([z.min(axis=0) for z in zup], axis=0)
    hi = np.max([z.max(axis=0) for z in zup], axis=0)
    extent = float((hi - lo).max())
    scale = size / extent if extent > 0 else 1.0
    anchor = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    local, centers = [], []
    for z in zup:
        world = (z - anchor) * scale
        center = (world.min(axis=0) + world.max(axis=0)) / 2
        local.append((world - center).astype(np.float32))
        centers.append(center)
    return local, centers


def _fill_mesh(mesh: bpy.types.Mesh, verts: np.ndarray, faces: np.ndarray) -> None:
    oriented = _consistent_faces(verts, faces)
    nv, nf = len(verts), len(faces)
    mesh.vertices.add(nv)
    mesh.loops.add(3 * nf)
    mesh.polygons.add(nf)
    co = np.ascontiguousarray(verts, dtype=np.float32).ravel()
    corners = np.ascontiguousarray(oriented if oriented is not None else faces, dtype=np.int32).ravel()
    position, corner_vert = mesh.attributes.get("position"), mesh.attributes.get(".corner_vert")
    if position is not None and corner_vert is not None:
        # Blender 4.x stores these as plain attributes: one memcpy each, far faster than
        # going through MeshVertex.co / MeshLoop.vertex_index.
        position.data.foreach_set("vector", co)
        corner_vert.data.foreach_set("value", corners)
    else:
        mesh.vertices.foreach_set("co", co)
        mesh.loops.foreach_set("vertex_index", corners)
    mesh.polygons.foreach_set("loop_start", np.arange(0, 3 * nf, 3, dtype=np.int32))
    mesh.update(calc_edges=True)
    if oriented is None:
        # Mixed winding: let Blender make each connected piece face outwards.
        bm = bmesh.new()
        try:
            bm.from_mesh(mesh)
            bmesh.ops.recalc_face_normals(bm, faces=bm.faces[:])
            bm.to_mesh(mesh)
        finally:
            bm.free()
        mesh.update()


def _consistent_faces(verts: np.ndarray, faces: np.ndarray) -> np.ndarray | None:
    """The common case, cheaply: when no directed edge occurs twice the winding is
    already consistent, and only the overall direction may need flipping (outwards =
    positive signed volume). None when the winding is mixed (bmesh must sort it out)."""
    f = faces.astype(np.int64)
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    keys = directed[:, 0] * len(verts) + directed[:, 1]
    if len(np.unique(keys)) != len(keys):
        return None
    v = verts.astype(np.float64)
    volume = np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum()
    out = faces if volume >= 0 else faces[:, ::-1]
    return np.ascontiguousarray(out, dtype=np.int32)


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


def _srgb_to_linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _material(name: str, srgb: tuple[float, float, float, float]) -> bpy.types.Material:
    linear = (*(_srgb_to_linear(x) for x in srgb[:3]), srgb[3] if len(srgb) > 3 else 1.0)
    material = bpy.data.materials.new(name)
    material.diffuse_color = linear
    if not material.use_nodes:
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
