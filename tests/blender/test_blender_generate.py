"""The Generate Parts operator in real Blender, driven through bpy.ops."""

from __future__ import annotations

import hashlib
import re
import threading
from datetime import datetime

import numpy as np
import pytest

import blender_fixture_engines as engines
from blender_fixture_engines import box_part

from partcrafter_blender import job_runner
from partcrafter_blender.generation import RELIEF_LABEL, engine_label

PROVENANCE_KEYS = {
    "engine",
    "engine_version",
    "seed",
    "steps",
    "guidance",
    "requested_parts",
    "produced_parts",
    "image_sha256",
    "job_id",
    "created",
}


def world_vertices(obj) -> np.ndarray:
    co = np.empty(len(obj.data.vertices) * 3, dtype=np.float32)
    obj.data.vertices.foreach_get("co", co)
    m = np.array(obj.matrix_world, dtype=np.float64)
    local = co.reshape(-1, 3).astype(np.float64)
    return local @ m[:3, :3].T + m[:3, 3]


def generate(bpy, image, **kwargs):
    kwargs.setdefault("engine", "fixed")
    return bpy.ops.partcrafter.generate("EXEC_DEFAULT", True, filepath=str(image), **kwargs)


def test_generate_builds_one_collection_of_named_parts(scene, demo_image):
    import bpy

    assert generate(bpy, demo_image, num_parts=4, seed=7, steps=12, guidance=3.5) == {"FINISHED"}
    stem = demo_image.stem
    collection = bpy.data.collections[stem]
    assert collection.name in scene.collection.children
    roots = [o for o in collection.objects if o.parent is None]
    assert [o.type for o in roots] == ["EMPTY"]
    root = roots[0]
    parts = sorted((o for o in collection.objects if o.type == "MESH"), key=lambda o: o.name)
    assert [o.name for o in parts] == [f"{stem}.part_{i:02d}" for i in range(1, 5)]
    assert all(o.parent == root for o in parts)

    materials = [o.data.materials[0] for o in parts]
    assert len({m.name for m in materials}) == 4
    colors = {tuple(round(c, 3) for c in m.diffuse_color) for m in materials}
    assert len(colors) == 4, "every part needs its own colour"

    sha = hashlib.sha256(demo_image.read_bytes()).hexdigest()
    for i, obj in enumerate(parts):
        expected = box_part(i)
        assert len(obj.data.vertices) == len(expected.vertices)
        assert len(obj.data.polygons) == len(expected.faces)
        props = {k.removeprefix("partcrafter_"): obj[k] for k in obj.keys() if k.startswith("partcrafter_")}
        assert PROVENANCE_KEYS <= props.keys()
        assert props["engine"] == "fixed" and props["engine_version"] == "fixed-1.0"
        assert (props["seed"], props["steps"], props["guidance"]) == (7, 12, 3.5)
        assert (props["requested_parts"], props["produced_parts"]) == (4, 4)
        assert props["image_sha256"] == sha
        assert re.fullmatch(r"[0-9a-f]{32}", props["job_id"])
        assert datetime.strptime(props["created"], "%Y-%m-%dT%H:%M:%SZ")
        assert props["part_index"] == i
    assert len({o["partcrafter_job_id"] for o in parts}) == 1


def test_parts_are_z_up_scaled_and_grounded(scene, demo_image):
    import bpy

    size = 3.0
    generate(bpy, demo_image, num_parts=3, size=size)
    parts = sorted((o for o in bpy.data.collections[demo_image.stem].objects if o.type == "MESH"), key=lambda o: o.name)
    engine_verts = [box_part(i).vertices.astype(np.float64) for i in range(3)]
    zup = [np.column_stack((v[:, 0], -v[:, 2], v[:, 1])) for v in engine_verts]
    lo = np.min([z.min(axis=0) for z in zup], axis=0)
    hi = np.max([z.max(axis=0) for z in zup], axis=0)
    scale = size / (hi - lo).max()
    anchor = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    for obj, z in zip(parts, zup, strict=True):
        expected = (z - anchor) * scale
        got = world_vertices(obj)
        np.testing.assert_allclose(np.sort(got, axis=0), np.sort(expected, axis=0), atol=1e-5)
    everything = np.concatenate([world_vertices(o) for o in parts])
    extent = everything.max(axis=0) - everything.min(axis=0)
    # The boxes are tallest along the engines' Y (up): in Blender that is Z.
    assert np.argmax(extent) == 2
    assert extent.max() == pytest.approx(size, abs=1e-5)
    assert everything[:, 2].min() == pytest.approx(0.0, abs=1e-6)


def test_normals_are_made_consistent(scene, demo_image):
    import bpy

    generate(bpy, demo_image, num_parts=2)
    for obj in (o for o in bpy.data.collections[demo_image.stem].objects if o.type == "MESH"):
        mesh = obj.data
        center = np.mean([v.co for v in mesh.vertices], axis=0)
        for poly in mesh.polygons:
            outward = np.array(poly.center) - center
            assert np.dot(np.array(poly.normal), outward) > 0, f"{obj.name} face {poly.index} faces inwards"


def test_second_import_of_same_image_gets_its_own_collection(scene, demo_image):
    import bpy

    generate(bpy, demo_image, num_parts=2)
    generate(bpy, demo_image, num_parts=2)
    names = sorted(c.name for c in bpy.data.collections)
    assert names == [demo_image.stem, f"{demo_image.stem}.001"]
    second = bpy.data.collections[f"{demo_image.stem}.001"]
    assert sorted(o.name for o in second.objects if o.type == "MESH") == [
        f"{demo_image.stem}.001.part_01",
        f"{demo_image.stem}.001.part_02",
    ]


def test_auto_parts_is_recorded_as_zero_requested(scene, demo_image):
    import bpy

    generate(bpy, demo_image, num_parts=0)
    parts = [o for o in bpy.data.collections[demo_image.stem].objects if o.type == "MESH"]
    assert len(parts) == 3
    assert {(o["partcrafter_requested_parts"], o["partcrafter_produced_parts"]) for o in parts} == {(0, 3)}


def test_every_generation_parameter_reaches_the_provenance(scene, demo_image):
    import bpy

    from partcrafter_blender.inference.params import param_specs

    generate(bpy, demo_image, num_parts=2, quality="draft", max_triangles=5000)
    obj = next(o for o in bpy.data.collections[demo_image.stem].objects if o.type == "MESH")
    names = {spec.provenance or name for name, spec in param_specs().items()}
    assert names <= {k.removeprefix("partcrafter_") for k in obj.keys()}
    assert (obj["partcrafter_quality"], obj["partcrafter_max_triangles"]) == ("draft", 5000)


def test_import_is_one_undo_step(scene, demo_image):
    import bpy

    bpy.ops.ed.undo_push(message="before")  # background mode starts without an undo stack
    before = len(bpy.data.objects)
    generate(bpy, demo_image, num_parts=3)
    assert len(bpy.data.objects) == before + 4
    bpy.ops.ed.undo()
    assert len(bpy.data.objects) == before
    assert demo_image.stem not in bpy.data.collections
    bpy.ops.ed.redo()
    assert len(bpy.data.collections[demo_image.stem].objects) == 4


@pytest.mark.parametrize(
    ("engine", "message"),
    [
        ("failing", "The test engine failed on purpose."),
        ("unavailable", "needs hardware this machine does not have"),
        ("broken_mesh", "Part 3 ('box_2') has triangles that point at vertices it does not have"),
        ("crashing", "Unexpected error (ZeroDivisionError"),
        ("no_such_engine", "Unknown engine 'no_such_engine'"),
    ],
)
def test_a_failure_leaves_the_scene_as_it_was(scene, demo_image, snapshot, engine, message):
    import bpy

    generate(bpy, demo_image, num_parts=2, engine="fixed")  # something already in the scene
    before = snapshot()
    with pytest.raises(RuntimeError, match=re.escape(message)):
        generate(bpy, demo_image, engine=engine)
    assert snapshot() == before
    assert not bpy.context.window_manager.partcrafter_job.running
    assert job_runner.active() is None


def test_a_failure_halfway_through_building_removes_what_was_built(scene, demo_image, snapshot, monkeypatch):
    import bpy

    from partcrafter_blender.scene import build

    real_material = build.part_material
    calls = []

    def fail_on_third_part(name, color):
        calls.append(name)
        if len(calls) == 3:
            raise build.SceneBuildError("injected failure on the third part")
        return real_material(name, color)

    monkeypatch.setattr(build, "part_material", fail_on_third_part)
    before = snapshot()
    with pytest.raises(RuntimeError, match="injected failure on the third part"):
        generate(bpy, demo_image, num_parts=4)
    assert len(calls) == 3, "two parts were built before the failure"
    assert snapshot() == before


def test_bad_inputs_are_reported(scene, tmp_path, snapshot):
    import bpy

    before = snapshot()
    with pytest.raises(RuntimeError, match="Image file not found"):
        generate(bpy, tmp_path / "missing.png")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(RuntimeError, match="is not a PNG, JPEG or WEBP image"):
        generate(bpy, text)
    with pytest.raises(RuntimeError, match="no image named 'Nope'"):
        bpy.ops.partcrafter.generate(image_name="Nope", engine="fixed")
    with pytest.raises(RuntimeError, match="Choose a reference image first"):
        bpy.ops.partcrafter.generate(engine="fixed")
    assert snapshot() == before


def test_cancel_stops_the_job_and_adds_nothing(scene, demo_image, snapshot):
    import bpy

    before = snapshot()
    engines.slow_started.clear()
    bpy.context.window_manager.partcrafter_job.last_result = "what the previous job did"
    seen_while_running: list[str] = []

    def cancel_when_running() -> None:
        assert engines.slow_started.wait(30)
        # The main thread waits inside the engine: the panel must not show the old result.
        seen_while_running.append(bpy.context.window_manager.partcrafter_job.last_result)
        assert job_runner.cancel_active()

    helper = threading.Thread(target=cancel_when_running)
    helper.start()
    result = generate(bpy, demo_image, engine="slow")
    helper.join(30)
    assert result == {"CANCELLED"}
    assert snapshot() == before
    state = bpy.context.window_manager.partcrafter_job
    assert seen_while_running == [""]
    assert not state.running and state.last_result == "Cancelled by the user."
    assert job_runner.active() is None


def test_generate_is_disabled_while_a_job_runs(scene, demo_image):
    import bpy

    from partcrafter_blender.job_runner import JobRunner

    runner = JobRunner(lambda progress, cancel: None)
    assert job_runner.claim(runner)
    try:
        assert not bpy.ops.partcrafter.generate.poll()
        with pytest.raises(RuntimeError, match="already running"):
            generate(bpy, demo_image)
        assert bpy.ops.partcrafter.cancel.poll()
    finally:
        job_runner.release(runner)
    assert bpy.ops.partcrafter.generate.poll()
    assert not bpy.ops.partcrafter.cancel.poll()


def test_generate_waits_for_an_aborted_job_to_stop(scene, demo_image):
    import bpy

    from partcrafter_blender.job_runner import JobRunner

    finish = threading.Event()
    runner = JobRunner(lambda progress, cancel: finish.wait(10))
    assert job_runner.claim(runner)
    runner.start()
    try:
        job_runner.abandon(runner)  # what the operator's cancel() does when Blender aborts it
        assert not bpy.ops.partcrafter.generate.poll()
        with pytest.raises(RuntimeError, match="still stopping"):
            generate(bpy, demo_image)
    finally:
        finish.set()
    assert runner.wait(10)
    assert generate(bpy, demo_image) == {"FINISHED"}


def test_blender_image_as_input(scene, demo_image):
    import bpy

    loaded = bpy.data.images.load(str(demo_image))
    assert bpy.ops.partcrafter.generate(image_name=loaded.name, engine="fixed", num_parts=2) == {"FINISHED"}
    part = bpy.data.objects[f"{demo_image.stem}.part_01"]
    assert part["partcrafter_image_sha256"] == hashlib.sha256(demo_image.read_bytes()).hexdigest()

    painted = bpy.data.images.new("Painted", 32, 16, alpha=True)
    pixels = np.ones((16, 32, 4), dtype=np.float32)
    pixels[4:12, 8:24, :3] = (0.8, 0.1, 0.1)
    painted.pixels.foreach_set(pixels.ravel())
    assert bpy.ops.partcrafter.generate(image_name="Painted", engine="fixed", num_parts=1) == {"FINISHED"}
    assert "Painted" in bpy.data.collections


def test_blender_image_in_a_format_engines_do_not_read_uses_its_pixels(scene, demo_image, tmp_path):
    """Blender reads BMP, TIFF, EXR...; such an image goes to the engine as its pixels."""
    import bpy
    from PIL import Image

    bmp = tmp_path / "reference.bmp"
    Image.open(demo_image).convert("RGB").resize((96, 96)).save(bmp)
    loaded = bpy.data.images.load(str(bmp))
    assert bpy.ops.partcrafter.generate(image_name=loaded.name, engine="fixed", num_parts=2) == {"FINISHED"}
    part = bpy.data.objects["reference.part_01"]
    # The hash is of the re-encoded pixels, not of the BMP file.
    assert part["partcrafter_image_sha256"] != hashlib.sha256(bmp.read_bytes()).hexdigest()


def test_preferences_choose_engine_and_size(scene, demo_image):
    import bpy

    prefs = bpy.context.preferences.addons["partcrafter_blender"].preferences
    assert prefs.engine == "relief" and prefs.import_size == pytest.approx(2.0) and prefs.backend == "LOCAL"
    prefs.engine = "fixed"
    prefs.import_size = 5.0
    try:
        assert bpy.ops.partcrafter.generate(filepath=str(demo_image), num_parts=2) == {"FINISHED"}
    finally:
        prefs.engine = "relief"
        prefs.import_size = 2.0
    parts = [o for o in bpy.data.collections[demo_image.stem].objects if o.type == "MESH"]
    assert {o["partcrafter_engine"] for o in parts} == {"fixed"}
    everything = np.concatenate([world_vertices(o) for o in parts])
    assert (everything.max(axis=0) - everything.min(axis=0)).max() == pytest.approx(5.0, abs=1e-5)


def test_operators_sit_in_menus_and_label_is_honest(bpy_addon):
    bpy = bpy_addon
    add_menu = [f.__name__ for f in bpy.types.VIEW3D_MT_add._dyn_ui_initialize()]
    import_menu = [f.__name__ for f in bpy.types.TOPBAR_MT_file_import._dyn_ui_initialize()]
    assert "_add_menu" in add_menu and "_import_menu" in import_menu
    assert hasattr(bpy.types, "PARTCRAFTER_PT_main")
    assert engine_label("relief") == RELIEF_LABEL == "Relief (fast classical preview, not PartCrafter)"


def test_build_parts_flips_a_consistently_inward_mesh(scene):
    """The fast path (no bmesh): one winding throughout, but facing inwards."""
    from partcrafter_blender.inference import PartMesh
    from partcrafter_blender.scene.build import build_parts, part_objects

    from blender_fixture_engines import _OUTWARD, box_part

    box = box_part(0)
    inward = PartMesh("inward", box.vertices, _OUTWARD[:, ::-1].copy())
    degenerate = PartMesh("with_sliver", box.vertices, np.vstack([_OUTWARD, [[0, 0, 1]]]))
    collection = build_parts([inward, degenerate], collection_name="direct", size=1.0)
    first, second = part_objects(collection)
    for obj in (first, second):
        mesh = obj.data
        center = np.mean([v.co for v in mesh.vertices], axis=0)
        assert all(np.dot(np.array(p.normal), np.array(p.center) - center) > 0 for p in mesh.polygons)
    assert len(second.data.polygons) == 12, "the zero-area triangle is dropped"


def test_user_directory_and_engine_options(bpy_addon):
    bpy = bpy_addon
    from partcrafter_blender.preferences import engine_options, get_preferences, user_directory

    folder = user_directory("test-area")
    assert folder.is_dir() and folder.name == "test-area"
    prefs = get_preferences()
    assert engine_options(prefs) == {}  # defaults are the engine's own; nothing unread is passed along
    prefs.weights_dir = str(folder)
    try:
        assert engine_options(prefs)["weights_path"] == str(folder)
    finally:
        prefs.weights_dir = ""
        folder.rmdir()
