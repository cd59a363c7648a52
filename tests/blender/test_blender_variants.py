"""Seed variants in real Blender: K results of one image side by side in one parent
collection, labelled with their seeds, and Keep This Variant in one undo step."""

from __future__ import annotations

import numpy as np

from test_blender_generate import generate


def _variants(bpy, demo_image, count: int, seed: int = 5):
    assert generate(bpy, demo_image, engine="relief", num_parts=3, seed=seed, quality="draft",
                    variants=count) == {"FINISHED"}
    return bpy.data.collections[f"{demo_image.stem} variants"]


def test_variants_are_laid_out_side_by_side_and_labelled_with_their_seeds(scene, demo_image):
    import bpy

    from partcrafter_blender.scene.variants import collection_parts

    parent = _variants(bpy, demo_image, 3)
    assert parent.name in scene.collection.children
    children = list(parent.children)
    assert [c.name for c in children] == [f"{demo_image.stem} seed {s}" for s in (5, 6, 7)]
    roots = [next(o for o in c.objects if o.parent is None) for c in children]
    assert [r["partcrafter_seed"] for r in roots] == [5, 6, 7] and all(r.show_name for r in roots)
    xs = [r.location.x for r in roots]
    assert xs == sorted(xs) and np.diff(xs).min() > 2.0  # one import size (2 m) and a gap apart
    for child in children:  # each variant's parts stay within its own slot along X
        parts = [o for o in child.objects if o.type == "MESH"]
        assert len(parts) == 3 and all(o["partcrafter_seed"] == child.objects[0]["partcrafter_seed"] for o in parts)
    splits = {tuple(len(o.data.polygons) for o in c.objects if o.type == "MESH") for c in children}
    assert len(splits) == 3  # three seeds, three different splits
    assert len(collection_parts(parent)) == 9
    assert bpy.context.view_layer.objects.active.name in children[0].objects


def test_keep_this_variant_removes_the_others_in_one_undo_step(scene, demo_image):
    import bpy

    bpy.ops.ed.undo_push(message="before")  # background mode starts without an undo stack
    parent = _variants(bpy, demo_image, 3)
    kept = parent.children[1]
    bpy.context.view_layer.objects.active = next(o for o in kept.objects if o.type == "MESH")
    meshes_before = len(bpy.data.meshes)
    assert bpy.ops.partcrafter.keep_variant("EXEC_DEFAULT", True) == {"FINISHED"}
    parent = bpy.data.collections[f"{demo_image.stem} variants"]
    assert [c.name for c in parent.children] == [f"{demo_image.stem} seed 6"]
    assert len(bpy.data.meshes) == meshes_before - 6  # the others' meshes went with them
    assert not bpy.ops.partcrafter.keep_variant.poll()  # nothing left to choose from
    bpy.ops.ed.undo()  # one step brings all three back
    assert len(bpy.data.collections[f"{demo_image.stem} variants"].children) == 3
    assert len(bpy.data.meshes) == meshes_before


def test_one_variant_is_one_collection_as_before(scene, demo_image):
    import bpy

    assert generate(bpy, demo_image, engine="relief", num_parts=2, quality="draft", variants=1) == {"FINISHED"}
    assert demo_image.stem in bpy.data.collections
    assert f"{demo_image.stem} variants" not in bpy.data.collections


def test_each_variant_has_its_explode_rig_and_regenerate_refuses_variants(scene, demo_image):
    import bpy
    import pytest

    from partcrafter_blender.scene.explode import set_explode

    parent = _variants(bpy, demo_image, 2)
    for child in parent.children:
        root = next(o for o in child.objects if o.parent is None)
        parts = [o for o in child.objects if o.type == "MESH"]
        assert "partcrafter_explode" in root and all(o.animation_data and o.animation_data.drivers for o in parts)
        rest = [o.matrix_world.translation.copy() for o in parts]
        set_explode(root, 1.0)  # tagged, as the UI does
        bpy.context.view_layer.update()
        assert all((o.matrix_world.translation - r).length > 0.01 for o, r in zip(parts, rest))  # drivers follow
        assert "partcrafter_state_file" not in root  # a variant keeps no regeneration data
    part = next(o for o in parent.children[1].objects if o.type == "MESH")
    bpy.ops.object.select_all(action="DESELECT")
    part.select_set(True)
    bpy.context.view_layer.objects.active = part
    with pytest.raises(RuntimeError, match="is a seed variant; regenerating parts needs a single result.*seed 6"):
        bpy.ops.partcrafter.regenerate()
