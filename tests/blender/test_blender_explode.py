"""Exploded view in real Blender: driven offsets, keyframes, save/reload without Python
auto-execution, and directions that never make two parts coincide."""

from __future__ import annotations

import numpy as np
import pytest

from test_blender_generate import generate


def _result(bpy, image, parts=4):
    assert generate(bpy, image, num_parts=parts) == {"FINISHED"}
    collection = bpy.data.collections[image.stem]
    root = next(o for o in collection.objects if o.parent is None)
    from partcrafter_blender.scene.result import result_parts

    return root, result_parts(root)


def _explode(bpy, root, factor: float) -> None:
    from partcrafter_blender.scene.explode import set_explode

    set_explode(root, factor)  # a property set from Python is evaluated once its owner is tagged, as the UI does


def _positions(bpy, parts) -> np.ndarray:
    bpy.context.view_layer.update()
    return np.array([tuple(o.matrix_world.translation) for o in parts])


def _mesh_coords(obj) -> np.ndarray:
    co = np.empty(3 * len(obj.data.vertices), dtype=np.float32)
    obj.data.vertices.foreach_get("co", co)
    return co


def test_factor_moves_parts_outwards_proportionally(scene, demo_image):
    import bpy

    from partcrafter_blender.scene.explode import EXPLODE_DISTANCE, EXPLODE_PROP

    root, parts = _result(bpy, demo_image)
    meshes = [_mesh_coords(o) for o in parts]
    assert root[EXPLODE_PROP] == 0.0
    rest = _positions(bpy, parts)
    _explode(bpy, root, 1.0)
    full = _positions(bpy, parts)
    _explode(bpy, root, 0.5)
    half = _positions(bpy, parts)
    moved = full - rest
    size = 2.0  # the import size: the model's largest dimension
    np.testing.assert_allclose(np.linalg.norm(moved, axis=1), EXPLODE_DISTANCE * size, rtol=1e-4)
    np.testing.assert_allclose(half - rest, moved / 2, atol=1e-5)
    # Outwards: from the assembly's centre through the part's own centre (boxes side by side along X).
    centre = rest.mean(axis=0)
    assert all(np.dot(m, r - centre) > 0 for m, r in zip(moved, rest))
    _explode(bpy, root, 2.5)  # beyond 1 goes further
    np.testing.assert_allclose(_positions(bpy, parts) - rest, 2.5 * moved, atol=1e-5)
    assert all(np.array_equal(m, _mesh_coords(o)) for m, o in zip(meshes, parts)), "mesh data changed"


def test_factor_can_be_keyframed(scene, demo_image):
    import bpy

    from partcrafter_blender.scene.explode import EXPLODE_PATH, EXPLODE_PROP

    root, parts = _result(bpy, demo_image, parts=3)
    rest = _positions(bpy, parts)
    _explode(bpy, root, 0.0)
    assert root.keyframe_insert(EXPLODE_PATH, frame=1)
    _explode(bpy, root, 1.0)
    assert root.keyframe_insert(EXPLODE_PATH, frame=21)
    bpy.context.scene.frame_set(1)
    np.testing.assert_allclose(_positions(bpy, parts), rest, atol=1e-6)
    bpy.context.scene.frame_set(21)
    assert root[EXPLODE_PROP] == pytest.approx(1.0)
    assert np.linalg.norm(_positions(bpy, parts) - rest, axis=1).min() > 0.5


def test_survives_save_and_reload_without_python_auto_execution(scene, demo_image, tmp_path):
    import bpy

    from partcrafter_blender.scene.explode import EXPLODE_PROP
    from partcrafter_blender.scene.result import result_parts

    root, parts = _result(bpy, demo_image, parts=3)
    _explode(bpy, root, 1.0)
    expected = _positions(bpy, parts)
    _explode(bpy, root, 0.0)
    rest = _positions(bpy, parts)
    path = tmp_path / "exploded.blend"
    name = root.name
    bpy.ops.wm.save_as_mainfile(filepath=str(path), check_existing=False)
    prefs = bpy.context.preferences.filepaths
    before = prefs.use_scripts_auto_execute
    prefs.use_scripts_auto_execute = False
    try:
        bpy.ops.wm.open_mainfile(filepath=str(path), load_ui=False, use_scripts=False)
        root = bpy.data.objects[name]
        parts = result_parts(root)
        drivers = [fc.driver for o in parts for fc in o.animation_data.drivers]
        assert len(drivers) == 9 and all(d.is_simple_expression and d.is_valid for d in drivers)
        np.testing.assert_allclose(_positions(bpy, parts), rest, atol=1e-6)
        _explode(bpy, root, 1.0)
        np.testing.assert_allclose(_positions(bpy, parts), expected, atol=1e-6)
    finally:
        prefs.use_scripts_auto_execute = before


def test_operator_sets_the_active_results_factor(scene, demo_image):
    import bpy

    from partcrafter_blender.scene.explode import EXPLODE_PROP

    root, parts = _result(bpy, demo_image, parts=2)
    bpy.context.view_layer.objects.active = parts[1]  # a part stands for its result
    assert bpy.ops.partcrafter.explode(factor=0.75) == {"FINISHED"}
    assert root[EXPLODE_PROP] == pytest.approx(0.75)
    bpy.context.view_layer.objects.active = None
    assert not bpy.ops.partcrafter.explode.poll()


def test_no_two_parts_coincide(bpy_addon):
    from mathutils import Vector

    from partcrafter_blender.scene.explode import explode_offsets

    same = (Vector((-0.1, -0.1, -0.1)), Vector((0.1, 0.1, 0.1)))  # three parts at the centre, one box
    behind = (Vector((-0.1, 0.5, -0.1)), Vector((0.1, 0.9, 0.1)))  # straight behind, along the line of sight
    front = (Vector((-0.1, -0.9, -0.1)), Vector((0.1, -0.5, 0.1)))
    bounds = [same, same, same, behind, front]
    offsets = explode_offsets(bounds)
    ends = [(lo + hi) / 2 + o for (lo, hi), o in zip(bounds, offsets)]
    assert all(o.length > 0 for o in offsets)
    assert min((a - b).length for i, a in enumerate(ends) for b in ends[i + 1 :]) > 0.1
    # Parts in front of or behind the centre also move sideways, so the view from the front changes.
    assert all(abs(o.x) + abs(o.z) > 0.1 for o in offsets[3:])


def test_glb_export_holds_what_the_user_sees(scene, demo_image, tmp_path):
    import bpy

    from partcrafter_blender.inference.glb import read_glb_file

    import blender_fixture_engines as engines

    root, parts = _result(bpy, demo_image, parts=3)
    path = tmp_path / "as_generated.glb"
    assert bpy.ops.partcrafter.export_glb(filepath=str(path)) == {"FINISHED"}
    exported = read_glb_file(path)
    assert [p.name for p in exported] == [o.name for o in parts]
    for i, part in enumerate(exported):  # at factor 0, unchanged: the engine's own vertices
        np.testing.assert_allclose(part.vertices, engines.box_part(i).vertices, atol=1e-5)
    _explode(bpy, root, 1.0)
    bpy.context.view_layer.update()
    moved = tmp_path / "exploded.glb"
    assert bpy.ops.partcrafter.export_glb(filepath=str(moved)) == {"FINISHED"}
    scale = float(root["partcrafter_import_scale"])
    for obj, before, after in zip(parts, exported, read_glb_file(moved)):
        shift = after.vertices - before.vertices  # one rigid move per part: its explode offset, Y-up
        offset = np.array(obj.delta_location) / scale
        np.testing.assert_allclose(shift, np.broadcast_to([offset[0], offset[2], -offset[1]], shift.shape), atol=1e-5)
        assert np.linalg.norm(offset) > 0.1
