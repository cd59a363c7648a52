"""GLB writer/reader: round trip, cross-check with trimesh, and clear errors on damage."""

from __future__ import annotations

import io

import numpy as np
import pytest
import trimesh

from partcrafter_blender.inference import PartMesh
from partcrafter_blender.inference.glb import GLBError, read_glb, write_glb


def _parts(n: int = 3) -> list[PartMesh]:
    rng = np.random.default_rng(0)
    parts = []
    for i in range(n):
        box = trimesh.creation.box(extents=rng.uniform(0.1, 0.5, 3))
        box.apply_translation(rng.uniform(-0.5, 0.5, 3))
        parts.append(PartMesh(f"part_{i + 1:02d}", box.vertices, box.faces, (0.2 * i, 0.5, 0.9, 1.0)))
    return parts


def test_round_trip_keeps_names_arrays_and_colours():
    parts = _parts()
    back = read_glb(write_glb(parts))
    assert [p.name for p in back] == [p.name for p in parts]
    for a, b in zip(parts, back):
        np.testing.assert_array_equal(a.vertices, b.vertices)
        np.testing.assert_array_equal(a.faces, b.faces)
        np.testing.assert_allclose(a.color, b.color, atol=1e-5)


def test_trimesh_reads_one_named_node_per_part():
    parts = _parts(4)
    scene = trimesh.load(io.BytesIO(write_glb(parts)), file_type="glb")
    assert sorted(scene.graph.nodes_geometry) == sorted(p.name for p in parts)
    for p in parts:
        geom = scene.geometry[scene.graph[p.name][1]]
        assert len(geom.faces) == len(p.faces)
        assert geom.is_watertight


def test_reads_glb_written_by_trimesh_with_transforms():
    scene = trimesh.Scene()
    a = trimesh.creation.icosphere(subdivisions=1)
    scene.add_geometry(a, node_name="seat", transform=trimesh.transformations.translation_matrix([1, 2, 3]))
    scene.add_geometry(trimesh.creation.box(), node_name="leg")
    parts = read_glb(scene.export(file_type="glb"))
    by_name = {p.name: p for p in parts}
    assert set(by_name) == {"seat", "leg"}
    np.testing.assert_allclose(by_name["seat"].vertices.mean(axis=0), [1, 2, 3], atol=1e-5)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[:10], "truncated"),
        (lambda b: b"XXXX" + b[4:], "bad magic"),
        (lambda b: b[: len(b) // 2], "truncated"),
    ],
)
def test_damaged_glb_gives_clear_error(damage, message):
    with pytest.raises(GLBError, match=message):
        read_glb(damage(write_glb(_parts())))


def test_variants_travel_as_one_root_node_per_seed():
    import dataclasses

    from partcrafter_blender.inference.glb import read_glb_extras

    parts = [dataclasses.replace(p, variant=k) for k, p in enumerate(_parts(2))] + [
        dataclasses.replace(_parts(1)[0], name="part_01b", variant=1)
    ]
    data = write_glb(parts, extras={"engine": "relief"}, variant_seeds=[4, 9])
    back = read_glb(data)
    assert [(p.name, p.variant) for p in back] == [("part_01", 0), ("part_02", 1), ("part_01b", 1)]
    assert read_glb_extras(data) == {"engine": "relief", "variant_seeds": [4, 9]}
    scene = trimesh.load(io.BytesIO(data), file_type="glb")
    assert {"seed_4", "seed_9"} <= set(scene.graph.nodes)
    assert all(p.variant == 0 for p in read_glb(write_glb(parts)))  # no seeds given: one variant
