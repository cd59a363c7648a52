"""Exploded view: one Explode factor on a result's parent empty moves every part
outwards, through drivers, so nothing runs Python and no mesh changes.

Each part's `delta_location` is driven by the simple expression `explode * k` (one
constant per axis). Blender evaluates simple expressions natively, so the view works
with Python auto-execution disabled, keyframes like any property, is saved in the
.blend, and every evaluated transform (viewport, render, exporters) includes it.
At factor 1 a part has moved by EXPLODE_DISTANCE times the assembly's size along the
direction from the assembly's centre to the part's own centre.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import bpy
import numpy as np
from mathutils import Vector

EXPLODE_PROP = "partcrafter_explode"
EXPLODE_PATH = f'["{EXPLODE_PROP}"]'
EXPLODE_DISTANCE = 0.5  # of the assembly's largest dimension, at factor 1
VARIABLE = "explode"
# Blender Z-up: the image plane is X/Z and the viewer looks along +Y (the engines' +Z faces -Y).
_VIEW_AXIS = Vector((0.0, 1.0, 0.0))
_GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))


def rig_explode(
    root: bpy.types.Object, parts: Sequence[bpy.types.Object], only: Sequence[bpy.types.Object] | None = None
) -> None:
    """Give `root` its Explode factor (kept if it has one) and drive every part in `parts`
    (or in `only`, a subset) from it, with directions worked out from where all `parts`
    are now at factor 0."""
    if EXPLODE_PROP not in root:
        root[EXPLODE_PROP] = 0.0
        root.id_properties_ui(EXPLODE_PROP).update(
            min=0.0, soft_max=2.0, default=0.0, subtype="FACTOR",
            description="Move the parts apart: 0 as generated, 1 by half the model's size",
        )
    offsets = explode_offsets([_rest_bounds(obj) for obj in parts])
    for obj, offset in zip(parts, offsets, strict=True):
        if only is None or obj in only:
            _drive(obj, root, offset)


def explode_offsets(bounds: Sequence[tuple[Vector, Vector]]) -> list[Vector]:
    """Per part (its bounding box (lo, hi) in the parent's space), where it moves at factor 1.

    Parts whose centre is (nearly) the assembly's, or whose direction runs along the line
    of sight, get a direction in the image plane; parts that would still coincide with an
    earlier one are spread on a golden-angle spiral, so no two end up in the same place."""
    if not bounds:
        return []
    lo = Vector([min(b[0][k] for b in bounds) for k in range(3)])
    hi = Vector([max(b[1][k] for b in bounds) for k in range(3)])
    size = max(hi - lo) or 1.0
    centre = (lo + hi) / 2
    reach = EXPLODE_DISTANCE * size
    tolerance = 1e-3 * size
    offsets: list[Vector] = []
    ends: list[Vector] = []
    for i, (part_lo, part_hi) in enumerate(bounds):
        middle = (part_lo + part_hi) / 2
        direction = middle - centre
        if direction.length < tolerance:
            direction = _spiral(i)
        else:
            direction.normalize()
            if abs(direction.dot(_VIEW_AXIS)) > 0.9:  # would only move towards or away from the viewer
                direction = (direction + _spiral(i)).normalized()
        end = middle + direction * reach
        turn = 0
        while any((end - other).length < tolerance for other in ends):
            turn += 1
            direction = _spiral(i + turn * len(bounds))
            end = middle + direction * reach
        offsets.append(direction * reach)
        ends.append(end)
    return offsets


def set_explode(root: bpy.types.Object, factor: float) -> None:
    root[EXPLODE_PROP] = float(factor)
    root.update_tag()


def _spiral(i: int) -> Vector:
    angle = i * _GOLDEN_ANGLE
    return Vector((math.cos(angle), 0.0, math.sin(angle)))


def _rest_bounds(obj: bpy.types.Object) -> tuple[Vector, Vector]:
    """The object's bounding box in its parent's space, without its explode offset."""
    basis = obj.matrix_basis.copy()
    basis.translation -= Vector(obj.delta_location)
    # From the mesh itself: a new object's bound_box is only filled once it is evaluated.
    positions = np.empty(3 * len(obj.data.vertices), dtype=np.float32)
    obj.data.vertices.foreach_get("co", positions)
    positions = positions.reshape(-1, 3)
    box = (positions.min(axis=0), positions.max(axis=0)) if len(positions) else (np.zeros(3), np.zeros(3))
    corners = [basis @ Vector((x, y, z)) for x in (box[0][0], box[1][0]) for y in (box[0][1], box[1][1])
               for z in (box[0][2], box[1][2])]
    return (Vector([min(c[k] for c in corners) for k in range(3)]),
            Vector([max(c[k] for c in corners) for k in range(3)]))


def _drive(obj: bpy.types.Object, root: bpy.types.Object, offset: Vector) -> None:
    for axis in range(3):
        obj.driver_remove("delta_location", axis)
        driver = obj.driver_add("delta_location", axis).driver
        driver.type = "SCRIPTED"
        variable = driver.variables.new()
        variable.name = VARIABLE
        variable.type = "SINGLE_PROP"
        target = variable.targets[0]
        target.id_type = "OBJECT"
        target.id = root
        target.data_path = EXPLODE_PATH
        driver.expression = f"{VARIABLE} * ({offset[axis]:.6f})"
