"""The textured relief preview in Blender: one shared packed image, UV maps from the
engine's front projection, and the shading toggle between picture and flat colours."""

from __future__ import annotations

import numpy as np
import pytest

from partcrafter_blender.inference import GenerationRequest
from partcrafter_blender.inference.glb import write_glb
from partcrafter_blender.inference.images import decode_image, read_image_file
from partcrafter_blender.inference.relief.engine import ReliefEngine
from partcrafter_blender.scene.shading import TEXTURE_NODE

ARGS = {"engine": "relief", "num_parts": 3, "quality": "draft", "seed": 4}


def generate(bpy, image, **kwargs):
    return bpy.ops.partcrafter.generate("EXEC_DEFAULT", True, filepath=str(image), **{**ARGS, **kwargs})


def parts_of(bpy, name):
    objs = [o for o in bpy.data.collections[name].objects if o.type == "MESH"]
    return sorted(objs, key=lambda o: o["partcrafter_part_index"])


def engine_result(image):
    rgba = decode_image(read_image_file(str(image))).rgba
    args = {k: v for k, v in ARGS.items() if k != "engine"}
    return ReliefEngine().generate(GenerationRequest(image=rgba, **args))


def base_color_linked(obj) -> bool:
    bsdf = next(n for n in obj.data.materials[0].node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    return bsdf.inputs["Base Color"].is_linked


def check_textured(bpy, objs, result) -> None:
    """Every part's material shows the one image, holding the engine's picture, through
    UVs equal to the engine's (v turned up, as Blender counts it)."""
    images = {o.data.materials[0].node_tree.nodes[TEXTURE_NODE].image for o in objs}
    assert len(images) == 1
    image = images.pop()
    assert image.packed_file is not None
    h, w = result.texture.shape[:2]
    assert tuple(image.size) == (w, h)
    pixels = np.empty(w * h * 4, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    stored = np.round(pixels.reshape(h, w, 4)[::-1] * 255).astype(np.uint8)
    np.testing.assert_array_equal(stored, result.texture)
    for obj, part in zip(objs, result.parts, strict=True):
        mesh = obj.data
        corner_vert = np.empty(len(mesh.loops), dtype=np.int32)
        mesh.attributes[".corner_vert"].data.foreach_get("value", corner_vert)
        uv = np.empty(2 * len(mesh.loops), dtype=np.float32)
        mesh.uv_layers.active.uv.foreach_get("vector", uv)
        uv = uv.reshape(-1, 2)
        expected = part.uvs[corner_vert]
        np.testing.assert_allclose(uv[:, 0], expected[:, 0], atol=1e-6)
        np.testing.assert_allclose(uv[:, 1], 1.0 - expected[:, 1], atol=1e-6)
        assert base_color_linked(obj)


def test_relief_parts_show_the_picture_through_one_shared_image(scene, demo_image):
    import bpy

    images_before = len(bpy.data.images)
    assert generate(bpy, demo_image) == {"FINISHED"}
    assert len(bpy.data.images) == images_before + 1
    check_textured(bpy, parts_of(bpy, demo_image.stem), engine_result(demo_image))


def test_shading_toggle_switches_to_flat_colours_and_back_with_undo(scene, demo_image):
    import bpy

    assert generate(bpy, demo_image) == {"FINISHED"}
    objs = parts_of(bpy, demo_image.stem)
    bpy.context.view_layer.objects.active = objs[1]
    bpy.ops.ed.undo_push(message="before")  # background mode starts without an undo stack
    assert bpy.ops.partcrafter.toggle_texture("EXEC_DEFAULT", True) == {"FINISHED"}
    objs = parts_of(bpy, demo_image.stem)
    assert not any(base_color_linked(o) for o in objs)
    for obj in objs:  # the flat colour is what shows now
        material = obj.data.materials[0]
        bsdf = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
        assert tuple(bsdf.inputs["Base Color"].default_value) == pytest.approx(tuple(material.diffuse_color))
    bpy.ops.ed.undo()
    assert all(base_color_linked(o) for o in parts_of(bpy, demo_image.stem))
    assert bpy.ops.partcrafter.toggle_texture("EXEC_DEFAULT", True) == {"FINISHED"}
    assert bpy.ops.partcrafter.toggle_texture("EXEC_DEFAULT", True) == {"FINISHED"}
    assert all(base_color_linked(o) for o in parts_of(bpy, demo_image.stem))


def test_preference_imports_flat_colours_and_the_toggle_brings_the_picture(scene, demo_image):
    import bpy

    prefs = bpy.context.preferences.addons["partcrafter_blender"].preferences
    assert prefs.textured_preview is True  # the default
    prefs.textured_preview = False
    try:
        assert generate(bpy, demo_image) == {"FINISHED"}
    finally:
        prefs.textured_preview = True
    objs = parts_of(bpy, demo_image.stem)
    assert not any(base_color_linked(o) for o in objs)
    bpy.context.view_layer.objects.active = objs[0]
    assert bpy.ops.partcrafter.toggle_texture("EXEC_DEFAULT", True) == {"FINISHED"}
    check_textured(bpy, parts_of(bpy, demo_image.stem), engine_result(demo_image))


def test_toggle_is_off_for_untextured_results(scene, demo_image):
    import bpy

    assert generate(bpy, demo_image, engine="fixed") == {"FINISHED"}
    bpy.context.view_layer.objects.active = parts_of(bpy, demo_image.stem)[0]
    assert not bpy.ops.partcrafter.toggle_texture.poll()


def test_textured_glb_imports_with_its_picture(scene, demo_image, tmp_path):
    import bpy

    result = engine_result(demo_image)
    path = tmp_path / "textured.glb"
    path.write_bytes(write_glb(result.parts, texture=result.texture))
    assert bpy.ops.partcrafter.import_parts("EXEC_DEFAULT", True, filepath=str(path)) == {"FINISHED"}
    check_textured(bpy, parts_of(bpy, "textured"), result)


def test_a_failed_textured_import_leaves_no_image(scene, demo_image, snapshot, monkeypatch):
    import bpy

    from partcrafter_blender.scene import build

    real_material = build.part_material
    calls = []

    def fail_on_second_part(name, color):
        calls.append(name)
        if len(calls) == 2:
            raise build.SceneBuildError("injected failure on the second part")
        return real_material(name, color)

    monkeypatch.setattr(build, "part_material", fail_on_second_part)
    before = snapshot()
    with pytest.raises(RuntimeError, match="injected failure"):
        generate(bpy, demo_image)
    assert snapshot() == before


def test_seed_variants_share_the_image_and_toggle_together(scene, demo_image):
    import bpy

    from partcrafter_blender.scene.variants import collection_parts as result_parts

    images_before = len(bpy.data.images)
    assert generate(bpy, demo_image, variants=2) == {"FINISHED"}
    assert len(bpy.data.images) == images_before + 1
    objs = result_parts(bpy.data.collections[f"{demo_image.stem} variants"])
    assert len(objs) == 6 and all(base_color_linked(o) for o in objs)
    bpy.context.view_layer.objects.active = objs[0]
    assert bpy.ops.partcrafter.toggle_texture("EXEC_DEFAULT", True) == {"FINISHED"}
    assert not any(base_color_linked(o) for o in objs)
