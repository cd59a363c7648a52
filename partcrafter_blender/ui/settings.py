"""What the panel remembers per scene: the reference image and generation settings."""

from __future__ import annotations

import bpy

from ..inference import MAX_PARTS

QUALITY_ITEMS = [
    ("draft", "Draft", "Fastest, coarse meshes"),
    ("standard", "Standard", "Balanced speed and detail"),
    ("high", "High", "Finest meshes, slowest"),
]


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
    num_parts: bpy.props.IntProperty(name="Parts", description="Number of parts", default=4, min=1, max=MAX_PARTS)
    seed: bpy.props.IntProperty(name="Seed", description="Same seed, same result", default=0, min=0)
    quality: bpy.props.EnumProperty(name="Quality", items=QUALITY_ITEMS, default="standard")
    steps: bpy.props.IntProperty(name="Steps", description="Denoising steps (neural engine)", default=50, min=1, max=200)
    guidance: bpy.props.FloatProperty(
        name="Guidance", description="How closely to follow the image (neural engine)", default=7.0, min=0.0, max=20.0
    )


classes = (PARTCRAFTER_PG_settings,)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.partcrafter = bpy.props.PointerProperty(type=PARTCRAFTER_PG_settings)


def unregister() -> None:
    del bpy.types.Scene.partcrafter
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
