"""Importing existing multi-part results (multi-mesh GLB, folder of per-part GLBs)."""

from __future__ import annotations

import pytest

from blender_fixture_engines import box_part

from partcrafter_blender.inference.glb import write_glb


def mesh_parts(bpy, collection_name):
    objs = [o for o in bpy.data.collections[collection_name].objects if o.type == "MESH"]
    return sorted(objs, key=lambda o: o["partcrafter_part_index"])


def test_multi_mesh_glb_becomes_one_collection(scene, tmp_path):
    import bpy

    parts = [box_part(i) for i in range(3)]
    parts[1].color = (0.2, 0.4, 0.9, 1.0)
    path = tmp_path / "chair.glb"
    path.write_bytes(write_glb(parts))
    bpy.ops.ed.undo_push(message="before")  # background mode starts without an undo stack
    assert bpy.ops.partcrafter.import_parts("EXEC_DEFAULT", True, filepath=str(path)) == {"FINISHED"}
    objs = mesh_parts(bpy, "chair")
    assert [o.name for o in objs] == ["chair.part_01", "chair.part_02", "chair.part_03"]
    assert [o["partcrafter_part_name"] for o in objs] == ["box_0", "box_1", "box_2"]
    assert [len(o.data.vertices) for o in objs] == [len(p.vertices) for p in parts]
    assert [len(o.data.polygons) for o in objs] == [len(p.faces) for p in parts]
    assert {o["partcrafter_engine"] for o in objs} == {"import"}
    assert len({o.data.materials[0].name for o in objs}) == 3
    bpy.ops.ed.undo()
    assert "chair" not in bpy.data.collections


def test_folder_of_part_files_in_natural_order(scene, tmp_path):
    import bpy

    folder = tmp_path / "robot"
    folder.mkdir()
    for i in (0, 1, 2, 10):
        (folder / f"part_{i:d}.glb").write_bytes(write_glb([box_part(i)]))
    (folder / "notes.txt").write_text("ignored")
    assert bpy.ops.partcrafter.import_parts(filepath=str(folder)) == {"FINISHED"}
    objs = mesh_parts(bpy, "robot")
    assert [o["partcrafter_part_name"] for o in objs] == ["part_0", "part_1", "part_2", "part_10"]
    assert all(o.parent is not None and o.parent.type == "EMPTY" for o in objs)


def test_selected_files_become_the_parts(scene, tmp_path):
    import bpy

    for i in range(3):
        (tmp_path / f"part_{i:02d}.glb").write_bytes(write_glb([box_part(i)]))
    files = [{"name": "part_00.glb"}, {"name": "part_02.glb"}]
    assert bpy.ops.partcrafter.import_parts(directory=str(tmp_path), files=files) == {"FINISHED"}
    objs = mesh_parts(bpy, tmp_path.name)
    assert [o["partcrafter_part_name"] for o in objs] == ["part_00", "part_02"]


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "truncated"), (b"hello, this is not a GLB file", "Not a GLB file"), (None, "Not found")],
)
def test_bad_files_report_and_change_nothing(scene, tmp_path, snapshot, content, message):
    import bpy

    path = tmp_path / "bad.glb"
    if content is not None:
        path.write_bytes(content)
    before = snapshot()
    with pytest.raises(RuntimeError, match=message):
        bpy.ops.partcrafter.import_parts(filepath=str(path))
    assert snapshot() == before


def test_empty_folder_is_reported(scene, tmp_path):
    import bpy

    with pytest.raises(RuntimeError, match="contains no .glb files"):
        bpy.ops.partcrafter.import_parts(filepath=str(tmp_path))
