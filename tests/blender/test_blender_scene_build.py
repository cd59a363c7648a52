"""scene.build_parts on its own, in real Blender: winding kept or fixed, bad numbers
refused, far-off parts placed precisely."""

from __future__ import annotations

import numpy as np
import pytest

from partcrafter_blender.inference import PartMesh


def uv_sphere(segments: int = 12, rings: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Closed unit sphere around the origin (Y-up), outward winding."""
    theta = np.linspace(0.0, np.pi, rings + 1)[1:-1]
    phi = np.linspace(0.0, 2.0 * np.pi, segments, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    ring = np.stack((np.sin(t) * np.cos(p), np.cos(t), np.sin(t) * np.sin(p)), axis=-1).reshape(-1, 3)
    verts = np.vstack(([0.0, 1.0, 0.0], ring, [0.0, -1.0, 0.0]))
    cur, nxt = np.arange(segments), (np.arange(segments) + 1) % segments
    faces = [np.column_stack((np.zeros(segments, int), 1 + nxt, 1 + cur))]
    for k in range(rings - 2):
        a, b, c, d = 1 + k * segments + cur, 1 + k * segments + nxt, 1 + (k + 1) * segments + cur, 1 + (k + 1) * segments + nxt
        faces += [np.column_stack((a, b, d)), np.column_stack((a, d, c))]
    last = 1 + (rings - 2) * segments
    faces.append(np.column_stack((np.full(segments, len(verts) - 1), last + cur, last + nxt)))
    return verts, np.vstack(faces)


def build_one(part: PartMesh, size: float = 2.0):
    from partcrafter_blender.scene.build import build_parts, part_objects

    (obj,) = part_objects(build_parts([part], collection_name="t", size=size))
    return obj


def corners(obj) -> np.ndarray:
    out = np.empty(len(obj.data.loops), dtype=np.int32)
    obj.data.loops.foreach_get("vertex_index", out)
    return out.reshape(-1, 3)


def outward(obj) -> np.ndarray:
    """Per face: does its normal point away from the mesh's own centre (the sphere's)?"""
    mesh = obj.data
    normals = np.empty(len(mesh.polygons) * 3, dtype=np.float32)
    centers = np.empty(len(mesh.polygons) * 3, dtype=np.float32)
    mesh.polygons.foreach_get("normal", normals)
    mesh.polygons.foreach_get("center", centers)
    co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", co)
    middle = co.reshape(-1, 3).mean(axis=0)
    return np.einsum("ij,ij->i", normals.reshape(-1, 3), centers.reshape(-1, 3) - middle) > 0


@pytest.mark.parametrize("reverse", [False, True])
def test_consistent_winding_is_kept_as_given_or_flipped_whole(scene, reverse):
    verts, faces = uv_sphere()
    faces = faces[:, ::-1] if reverse else faces
    obj = build_one(PartMesh("ball", verts, faces))
    expected = faces[:, ::-1] if reverse else faces
    np.testing.assert_array_equal(corners(obj), expected)  # no re-ordering by bmesh
    assert outward(obj).all()
    assert len(obj.data.edges) == len(faces) * 3 // 2


def test_mixed_winding_is_made_outward(scene):
    verts, faces = uv_sphere()
    faces = faces.copy()
    faces[::3] = faces[::3, ::-1]
    obj = build_one(PartMesh("ball", verts, faces))
    assert outward(obj).all()
    assert (len(obj.data.vertices), len(obj.data.polygons)) == (len(verts), len(faces))


def test_an_open_consistent_surface_keeps_one_winding(scene):
    verts, faces = uv_sphere()
    dome = faces[: len(faces) // 2]  # the upper half: a bowl with a rim
    got = corners(build_one(PartMesh("dome", verts, dome)))
    assert np.array_equal(got, dome) or np.array_equal(got, dome[:, ::-1])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_vertices_are_refused_and_nothing_is_made(scene, snapshot, bad):
    from partcrafter_blender.scene.build import SceneBuildError, build_parts

    verts, faces = uv_sphere()
    verts = verts.copy()
    verts[5, 1] = bad
    before = snapshot()
    with pytest.raises(SceneBuildError, match=r"Part 2 \('broken'\) has vertices that are not finite"):
        build_parts([PartMesh("fine", *uv_sphere()), PartMesh("broken", verts, faces)], collection_name="t")
    assert snapshot() == before


def test_a_part_far_from_the_origin_keeps_its_precision(scene):
    verts, faces = uv_sphere()
    far = (verts * 0.1 + [12345.678, -9876.5, 4321.0]).astype(np.float32)
    obj = build_one(PartMesh("far", far, faces))
    zup = far.astype(np.float64)[:, [0, 2, 1]] * [1.0, -1.0, 1.0]
    lo, hi = zup.min(axis=0), zup.max(axis=0)
    expected = (zup - [(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]]) * (2.0 / (hi - lo).max())
    co = np.empty(len(far) * 3, dtype=np.float32)
    obj.data.vertices.foreach_get("co", co)
    got = co.reshape(-1, 3) + np.array(obj.location)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_import_uses_no_api_that_blender_deprecates(bpy_addon, scene):
    """Blender 5.0+ deprecates Material.use_nodes (removed in 6.0) with a DeprecationWarning; the
    importer's materials still get a Principled BSDF with the part's colour on every version."""
    import warnings

    verts, faces = uv_sphere()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        obj = build_one(PartMesh(name="p", vertices=verts, faces=faces, color=(1.0, 0.0, 0.0, 1.0)))
    deprecated = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert deprecated == []
    (material,) = obj.data.materials
    bsdf = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    assert tuple(bsdf.inputs["Base Color"].default_value) == pytest.approx((1.0, 0.0, 0.0, 1.0))
    assert material.node_tree.nodes["Material Output"].inputs["Surface"].is_linked
