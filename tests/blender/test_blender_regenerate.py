"""Regenerate Selected Parts in real Blender with the real "partcrafter" engine (in process,
tiny conformance weights, CPU): kept parts bit for bit, the selected ones replaced in place,
one undo step, failures that change nothing, and the sidecar's lifecycle."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from test_blender_generate import generate
from test_blender_local_engine import PIPELINE, ROBOT

pytest.importorskip("torch")

FAST_TEXT = "num_tokens=64, dense_depth=4, hierarchical_depth=5"  # the tiny weights' tokens, a coarse grid
PREF_NAMES = ("backend", "engine", "python_executable", "weights_dir", "device", "engine_extra_options",
              "keep_regeneration_data")


@pytest.fixture
def neural(bpy_addon: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Preferences for the in-process PartCrafter engine on the tiny weights, restored afterwards."""
    # The in-process engine's availability check reads the environment, not the request's options.
    monkeypatch.setenv("PARTCRAFTER_WEIGHTS", str(PIPELINE))
    p = bpy_addon.context.preferences.addons["partcrafter_blender"].preferences
    saved = {name: getattr(p, name) for name in PREF_NAMES}
    p.backend, p.engine, p.python_executable = "LOCAL", "partcrafter", ""
    p.weights_dir, p.device, p.engine_extra_options = str(PIPELINE), "cpu", FAST_TEXT
    p.keep_regeneration_data = True
    yield p
    for name, value in saved.items():
        setattr(p, name, value)


def _coords(obj) -> np.ndarray:
    co = np.empty(3 * len(obj.data.vertices), dtype=np.float32)
    obj.data.vertices.foreach_get("co", co)
    return co


def _snapshot(parts) -> dict[str, tuple]:
    return {o.name: (o.data.name, _coords(o).tobytes(), tuple(o.location), o.data.materials[0].name) for o in parts}


def _select(bpy, objects) -> None:
    for obj in list(bpy.context.view_layer.objects.selected):
        obj.select_set(False)
    for obj in objects:
        obj.select_set(True)
    bpy.context.view_layer.objects.active = objects[0]


def _neural_result(bpy):
    assert generate(bpy, ROBOT, engine="partcrafter", num_parts=3, steps=3, seed=1) == {"FINISHED"}
    root = next(o for o in bpy.data.collections[ROBOT.stem].objects if o.parent is None)
    from partcrafter_blender.scene.result import result_parts

    return root, result_parts(root)


def test_regenerates_only_the_selected_part_in_place_as_one_undo_step(scene, neural):
    import bpy

    from partcrafter_blender.operators.regenerate import STATE_FILE, STATE_SHA256
    from partcrafter_blender.scene.result import result_parts

    root, parts = _neural_result(bpy)
    assert len(parts) == 3 and Path(root[STATE_FILE]).is_file()
    before = _snapshot(parts)
    sidecar = (root[STATE_FILE], root[STATE_SHA256])
    drivers = {o.name: [fc.driver.expression for fc in o.animation_data.drivers] for o in parts}
    target = parts[1].name
    _select(bpy, [parts[1]])
    bpy.ops.ed.undo_push(message="before")  # background mode starts without an undo stack
    assert bpy.ops.partcrafter.regenerate("EXEC_DEFAULT", True, seed=12345) == {"FINISHED"}
    parts = result_parts(root)
    after = _snapshot(parts)
    assert list(after) == list(before)  # same objects, same names, same count
    for name in before:
        if name != target:
            assert after[name] == before[name], f"{name} changed"
    assert after[target][1] != before[target][1], "the selected part was not regenerated"
    assert after[target][0] == before[target][0] and after[target][3] == before[target][3]  # mesh name, material
    regenerated = bpy.data.objects[target]
    assert regenerated.parent == root and regenerated.users_collection[0].name == ROBOT.stem
    assert regenerated["partcrafter_seed"] == 12345
    assert {o.name: [fc.driver.expression for fc in o.animation_data.drivers] for o in parts} == drivers
    assert (root[STATE_FILE], root[STATE_SHA256]) != sidecar and Path(root[STATE_FILE]).is_file()

    bpy.ops.ed.undo()
    root = bpy.data.objects[ROBOT.stem]
    assert _snapshot(result_parts(root)) == before
    assert (root[STATE_FILE], root[STATE_SHA256]) == sidecar


def test_failures_leave_the_scene_unchanged(scene, neural):
    import bpy

    from partcrafter_blender.operators.regenerate import STATE_FILE

    root, parts = _neural_result(bpy)
    before = _snapshot(parts)
    _select(bpy, [parts[0]])
    # The engine fails: the regenerated part's surface needs more refinement points than allowed.
    neural.engine_extra_options = FAST_TEXT + ", max_expanded_coords=1"
    with pytest.raises(RuntimeError, match="produced no part with a surface"):
        bpy.ops.partcrafter.regenerate(seed=5)
    assert _snapshot(parts) == before
    neural.engine_extra_options = FAST_TEXT
    # The sidecar changed, then went missing: said clearly, nothing touched.
    path = Path(root[STATE_FILE])
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(RuntimeError, match="has changed since the result was made"):
        bpy.ops.partcrafter.regenerate(seed=5)
    path.unlink()
    with pytest.raises(RuntimeError, match="is missing"):
        bpy.ops.partcrafter.regenerate(seed=5)
    assert _snapshot(parts) == before


def test_sidecar_survives_save_and_reload_and_erase_is_one_click(scene, neural, tmp_path):
    import bpy

    from partcrafter_blender.operators.regenerate import STATE_FILE, regeneration_dir
    from partcrafter_blender.scene.result import result_parts

    root, parts = _neural_result(bpy)
    kept = _snapshot(parts[1:])
    blend = tmp_path / "robot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), check_existing=False)
    bpy.ops.wm.open_mainfile(filepath=str(blend), load_ui=False)
    root = bpy.data.objects[ROBOT.stem]
    parts = result_parts(root)
    _select(bpy, [parts[0]])
    assert bpy.ops.partcrafter.regenerate(seed=77) == {"FINISHED"}
    assert _snapshot(result_parts(root)[1:]) == kept
    assert Path(root[STATE_FILE]).parent == Path(regeneration_dir())
    assert any(Path(regeneration_dir()).glob("*.npz"))
    assert bpy.ops.partcrafter.erase_regeneration_data() == {"FINISHED"}
    assert not any(Path(regeneration_dir()).glob("*.npz"))
    with pytest.raises(RuntimeError, match="erased in the add-on preferences"):
        bpy.ops.partcrafter.regenerate(seed=78)


def test_unsupported_results_say_why(scene, demo_image, neural):
    import bpy

    assert generate(bpy, demo_image, num_parts=2) == {"FINISHED"}  # the fixture engine keeps no latents
    root = next(o for o in bpy.data.collections[demo_image.stem].objects if o.parent is None)
    part = next(o for o in root.children)
    _select(bpy, [part])
    with pytest.raises(RuntimeError, match="'fixed' engine cannot regenerate single parts"):
        bpy.ops.partcrafter.regenerate()
    neural.backend = "SERVER"
    with pytest.raises(RuntimeError, match="not available with the server backend"):
        bpy.ops.partcrafter.regenerate()
    neural.backend = "LOCAL"
    _select(bpy, [root])
    with pytest.raises(RuntimeError, match="Select one or more parts"):
        bpy.ops.partcrafter.regenerate()


def test_relief_resegments_the_selected_region(scene, demo_image, neural):
    import bpy

    from partcrafter_blender.scene.result import result_parts

    neural.engine, neural.engine_extra_options = "relief", ""  # the neural engine's options are not relief's
    assert generate(bpy, demo_image, engine="relief", num_parts=3) == {"FINISHED"}
    root = bpy.data.objects[demo_image.stem]
    parts = result_parts(root)
    kept = _snapshot(parts[1:])
    _select(bpy, [parts[0]])
    bpy.ops.ed.undo_push(message="before")
    assert bpy.ops.partcrafter.regenerate("EXEC_DEFAULT", True, seed=3, num_parts=2) == {"FINISHED"}
    parts = result_parts(root)
    assert len(parts) == 4 and _snapshot(parts[1:3]) == kept  # the others bit for bit
    split, added = parts[0], parts[3]
    assert added.name == f"{demo_image.stem}.part_04" and added.parent == root and added["partcrafter_part_index"] == 3
    assert len(added.animation_data.drivers) == 3  # explodes like the others
    assert {split.name, added.name} <= {o.name for o in bpy.data.collections[demo_image.stem].objects}
    bpy.ops.ed.undo()
    assert len(result_parts(bpy.data.objects[demo_image.stem])) == 3
