"""GLB writer/reader: round trip, cross-check with trimesh, and clear errors on damage."""

from __future__ import annotations

import io

import numpy as np
import pytest
import trimesh

from partcrafter_blender.inference import PartMesh
from partcrafter_blender.inference.glb import GLBError, read_glb, read_glb_texture, write_glb


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


def _textured(n: int = 3) -> tuple[list[PartMesh], np.ndarray]:
    rng = np.random.default_rng(1)
    parts = _parts(n)
    for p in parts:
        p.uvs = rng.uniform(0, 1, (len(p.vertices), 2)).astype(np.float32)
    picture = rng.integers(0, 256, (24, 40, 4), dtype=np.uint8)
    return parts, picture


def _json(glb: bytes) -> dict:
    import json
    import struct

    length, _kind = struct.unpack_from("<II", glb, 12)
    return json.loads(glb[20 : 20 + length])


def test_texture_is_embedded_once_and_shared_by_every_part():
    parts, picture = _textured()
    glb = write_glb(parts, texture=picture)
    gltf = _json(glb)
    assert len(gltf["images"]) == 1 and len(gltf["textures"]) == 1
    assert gltf["images"][0]["mimeType"] == "image/png" and "bufferView" in gltf["images"][0]
    for mesh in gltf["meshes"]:
        prim = mesh["primitives"][0]
        assert "TEXCOORD_0" in prim["attributes"]
        pbr = gltf["materials"][prim["material"]]["pbrMetallicRoughness"]
        assert pbr["baseColorTexture"] == {"index": 0, "texCoord": 0}
        assert pbr["baseColorFactor"] == [1.0, 1.0, 1.0, 1.0]  # the picture as it is, not tinted
    back = read_glb(glb)
    for a, b in zip(parts, back):
        np.testing.assert_array_equal(a.uvs, b.uvs)
        np.testing.assert_allclose(a.color, b.color, atol=1e-5)  # the flat colour survives
    np.testing.assert_array_equal(read_glb_texture(glb), picture)


def test_trimesh_reads_the_shared_texture_and_uvs():
    parts, picture = _textured(2)
    scene = trimesh.load(io.BytesIO(write_glb(parts, texture=picture)), file_type="glb")
    for p in parts:
        geom = scene.geometry[scene.graph[p.name][1]]
        np.testing.assert_allclose(geom.visual.uv[:, 0], p.uvs[:, 0], atol=1e-6)
        np.testing.assert_allclose(geom.visual.uv[:, 1], 1.0 - p.uvs[:, 1], atol=1e-6)  # trimesh flips v
        image = np.asarray(geom.visual.material.baseColorTexture.convert("RGBA"))
        np.testing.assert_array_equal(image, picture)


def test_untextured_glb_has_no_image_and_no_uvs():
    glb = write_glb(_parts())
    assert "images" not in _json(glb)
    assert read_glb_texture(glb) is None
    assert all(p.uvs is None for p in read_glb(glb))


def test_a_glb_with_several_textures_keeps_flat_colours():
    """Not our layout (one picture shared by all parts): no texture is applied."""
    from PIL import Image

    scene = trimesh.Scene()
    for k, name in enumerate(("a", "b")):
        box = trimesh.creation.box()
        picture = Image.fromarray(np.full((4, 4, 3), 60 * (k + 1), np.uint8))
        box.visual = trimesh.visual.TextureVisuals(uv=np.zeros((len(box.vertices), 2)), image=picture)
        scene.add_geometry(box, node_name=name)
    glb = scene.export(file_type="glb")
    assert len(_json(glb)["images"]) == 2
    assert read_glb_texture(glb) is None
