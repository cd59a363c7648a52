"""Seed variants in the scene: one parent collection, one child collection per seed, side
by side along X, each named and labelled with its seed; and keeping one of them.

Main thread only. A single result goes straight to build_parts, as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import bpy

from ..inference import PartMesh
from .build import PROP_PREFIX, build_parts, part_objects

VARIANTS_PROP = PROP_PREFIX + "variants"  # on the parent collection: how many variants it holds
SPACING = 1.25  # variant centres this many import sizes apart: a quarter of a size between them


def build_result(
    variants: Sequence[tuple[int, Sequence[PartMesh]]],
    *,
    collection_name: str,
    size: float,
    provenance: Mapping[str, Any],
    location: Sequence[float],
    parent_collection: bpy.types.Collection,
    name_by_part: bool = False,
    texture: bpy.types.Image | None = None,
) -> bpy.types.Collection:
    """Build the (seed, parts) variants; returns the collection holding the result (the
    parent collection when there are several), every variant showing the one `texture`.
    All or nothing, like build_parts, which `name_by_part` is passed to."""
    built = [(seed, parts) for seed, parts in variants if parts]  # a variant with no part is reported, not built
    if len(variants) == 1:
        return build_parts(variants[0][1], collection_name=collection_name, size=size, provenance=provenance,
                           location=location, parent_collection=parent_collection, name_by_part=name_by_part,
                           texture=texture)
    parent = bpy.data.collections.new(f"{collection_name} variants")
    parent[VARIANTS_PROP] = len(built)
    try:
        for k, (seed, parts) in enumerate(built):
            x, y, z = location
            child = build_parts(
                parts,
                collection_name=f"{collection_name} seed {seed}",
                size=size,
                provenance={**provenance, "seed": seed, "variant": k},
                location=(x + k * SPACING * size, y, z),
                parent_collection=parent,
                name_by_part=name_by_part,
                texture=texture,
            )
            root = next(o for o in child.objects if o.parent is None)
            root.show_name = True  # the seed, readable in the viewport
        parent_collection.children.link(parent)
    except BaseException:
        remove_collection(parent)
        raise
    return parent


def collection_parts(collection: bpy.types.Collection) -> list[bpy.types.Object]:
    """The part objects of a result: its own, or each variant's in turn."""
    return part_objects(collection) + [o for child in collection.children for o in collection_parts(child)]


def variant_of(obj: bpy.types.Object | None) -> tuple[bpy.types.Collection, bpy.types.Collection] | None:
    """(parent collection, variant collection) of an object in a variants result, or None."""
    if obj is None:
        return None
    for parent in bpy.data.collections:
        if VARIANTS_PROP in parent:
            for child in parent.children:
                if obj.name in child.objects:
                    return parent, child
    return None


def keep_variant(parent: bpy.types.Collection, kept: bpy.types.Collection) -> int:
    """Remove every variant of `parent` but `kept`, with their meshes and materials; returns
    how many went."""
    others = [child for child in parent.children if child != kept]
    for child in others:
        remove_collection(child)
    parent[VARIANTS_PROP] = 1
    return len(others)


def remove_collection(collection: bpy.types.Collection) -> None:
    """A collection, its child collections and their objects, with the data only they used."""
    for child in list(collection.children):
        remove_collection(child)
    for obj in list(collection.objects):
        mesh = obj.data if obj.type == "MESH" else None
        materials = [m for m in mesh.materials if m is not None] if mesh is not None else []
        bpy.data.objects.remove(obj, do_unlink=True)
        if mesh is not None and mesh.users == 0:
            bpy.data.meshes.remove(mesh)
        for material in materials:
            if material.users == 0:
                bpy.data.materials.remove(material)
    bpy.data.collections.remove(collection)
