"""The parts list in real Blender: what it lists, renaming, the row buttons, failed parts,
and a result after Ctrl+J (join) and Separate."""

from __future__ import annotations

import pytest

from test_blender_generate import generate


def _result(bpy, image, engine="fixed", parts=3):
    assert generate(bpy, image, num_parts=parts, engine=engine) == {"FINISHED"}
    root = next(o for o in bpy.data.collections[image.stem].objects if o.parent is None)
    from partcrafter_blender.scene.result import result_parts

    return root, result_parts(root)


def _listed(bpy, root) -> list[str]:
    """What the panel's list shows: its own filter over the result collection's objects."""
    from partcrafter_blender.ui.parts_list import list_filter

    collection = root.users_collection[0]
    flags, order = list_filter(root, collection.objects, 1)
    shown = [(order[i], o.name) for i, o in enumerate(collection.objects) if flags[i]]
    return [name for _, name in sorted(shown)]


def test_lists_parts_with_triangles_and_renames_object_and_mesh(scene, demo_image):
    import bpy

    from partcrafter_blender.scene.result import triangle_count

    root, parts = _result(bpy, demo_image)
    # The new result is the selection with its parent empty active, so the Parts panel shows it at once.
    assert bpy.context.view_layer.objects.active == root
    assert set(bpy.context.selected_objects) == {root, *parts}
    assert _listed(bpy, root) == [o.name for o in parts]
    assert [triangle_count(o.data) for o in parts] == [12, 12, 12]
    parts[1].partcrafter_part_label = "Backrest"
    assert parts[1].name == "Backrest" and parts[1].data.name == "Backrest"
    assert _listed(bpy, root)[1] == "Backrest"  # still in part order


def test_row_buttons_select_hide_and_isolate(scene, demo_image):
    import bpy

    root, parts = _result(bpy, demo_image)
    assert bpy.ops.partcrafter.part_select(name=parts[2].name) == {"FINISHED"}
    assert list(bpy.context.selected_objects) == [parts[2]] and bpy.context.view_layer.objects.active == parts[2]
    assert bpy.ops.partcrafter.part_select(name=parts[0].name, extend=True) == {"FINISHED"}
    assert set(bpy.context.selected_objects) == {parts[0], parts[2]}
    bpy.ops.partcrafter.part_visibility(name=parts[1].name)
    assert parts[1].hide_get()
    bpy.ops.partcrafter.part_visibility(name=parts[1].name)
    assert not parts[1].hide_get()
    bpy.ops.partcrafter.part_isolate(name=parts[0].name)
    assert [o.hide_get() for o in parts] == [False, True, True]
    bpy.ops.partcrafter.part_isolate(name=parts[0].name)  # again: everything back
    assert [o.hide_get() for o in parts] == [False, False, False]
    with pytest.raises(RuntimeError, match="no PartCrafter part named 'nothing'"):
        bpy.ops.partcrafter.part_select(name="nothing")


def test_failed_parts_are_listed_with_their_reason(scene, demo_image):
    import bpy

    from partcrafter_blender.ui.parts_list import failed_parts

    root, parts = _result(bpy, demo_image, engine="partly_failing", parts=4)
    assert len(parts) == 3
    assert failed_parts(root) == [(4, "no surface found at this resolution")]


def _join(bpy, keep, other) -> None:
    for obj in bpy.context.view_layer.objects.selected:
        obj.select_set(False)
    keep.select_set(True)
    other.select_set(True)
    bpy.context.view_layer.objects.active = keep
    with bpy.context.temp_override(active_object=keep, selected_editable_objects=[keep, other]):
        assert bpy.ops.object.join() == {"FINISHED"}


def test_join_and_separate_leave_a_usable_result(scene, demo_image):
    import bpy

    from partcrafter_blender.scene.result import part_problem, result_parts

    root, parts = _result(bpy, demo_image, parts=4)
    names = [o.name for o in parts]
    _join(bpy, parts[0], parts[1])  # Ctrl+J: the active part absorbs the other
    parts = result_parts(root)
    assert [o.name for o in parts] == [names[0], names[2], names[3]]
    assert _listed(bpy, root) == [names[0], names[2], names[3]]
    joined = bpy.data.objects[names[0]]
    assert "joined" in part_problem(joined) and part_problem(parts[1]) == ""
    # Separate (by loose parts) copies the object with its part number and drivers.
    for obj in list(bpy.context.view_layer.objects.selected):
        obj.select_set(False)
    joined.select_set(True)
    bpy.context.view_layer.objects.active = joined
    bpy.ops.object.mode_set(mode="EDIT")
    bpy.ops.mesh.select_all(action="SELECT")
    assert bpy.ops.mesh.separate(type="LOOSE") == {"FINISHED"}
    bpy.ops.object.mode_set(mode="OBJECT")
    parts = result_parts(root)
    assert len(parts) == 4 and len(_listed(bpy, root)) == 4
    pieces = [o for o in parts if o.name not in names[2:]]
    assert len(pieces) == 2 and all("separated" in part_problem(o) for o in pieces)
    # Regenerate says why these cannot be regenerated; exploding still works on everything listed.
    for obj in list(bpy.context.view_layer.objects.selected):
        obj.select_set(False)
    pieces[0].select_set(True)
    bpy.context.view_layer.objects.active = pieces[0]
    with pytest.raises(RuntimeError, match="separated from a generated part"):
        bpy.ops.partcrafter.regenerate()
    assert bpy.ops.partcrafter.explode(factor=1.0, recompute=True) == {"FINISHED"}
    bpy.context.view_layer.update()
    centres = [tuple(round(x, 4) for x in o.matrix_world.translation) for o in parts]
    assert len(set(centres)) == len(parts)
