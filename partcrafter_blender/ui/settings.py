"""What the panel remembers per scene: the reference image and generation settings.

The parameter properties (parts, seed, steps, ...) come from param_props.py; the panel
shows Auto parts as a toggle next to a count, so its count has no 0.
"""

from __future__ import annotations

import bpy

from ..param_props import with_param_properties

# Panel toggles that stand for a parameter's None (its count is kept for when the toggle is off).
AUTO_TOGGLES = {"num_parts": "auto_parts"}


@with_param_properties(num_parts={"default": 4, "min": 1, "description": "Number of parts"})
class PARTCRAFTER_PG_settings(bpy.types.PropertyGroup):
    source: bpy.props.EnumProperty(
        name="Source",
        items=[
            ("FILE", "File", "Read the reference image from a file"),
            ("IMAGE", "Blender Image", "Use an image already loaded in Blender"),
        ],
        default="FILE",
    )
    image_path: bpy.props.StringProperty(name="Image", description="Reference image (PNG, JPEG or WEBP)", subtype="FILE_PATH")
    image: bpy.props.PointerProperty(name="Image", type=bpy.types.Image, description="Reference image loaded in Blender")
    auto_parts: bpy.props.BoolProperty(name="Auto", description="Let the engine decide how many parts", default=False)


classes = (PARTCRAFTER_PG_settings,)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.partcrafter = bpy.props.PointerProperty(type=PARTCRAFTER_PG_settings)


def unregister() -> None:
    del bpy.types.Scene.partcrafter
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
