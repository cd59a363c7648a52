"""Picture texture or flat colour on a result's materials.

A textured result (the relief preview) shares one packed Blender image; each part gets
a UV map from the engine's UVs and an Image Texture node in its material. Showing the
flat colours only unlinks that node from the Principled BSDF's Base Color, whose own
value is the part's flat colour, so switching back and forth regenerates nothing, keeps
both looks in the .blend, and is one undo step. Main thread only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import bpy
import numpy as np

TEXTURE_NODE = "PartCrafter Picture"  # the Image Texture node's name in every part material
UV_MAP = "UVMap"


def new_texture_image(pixels: np.ndarray, name: str) -> bpy.types.Image:
    """A packed Blender image of RGBA uint8 `pixels` (top row first, sRGB)."""
    h, w = pixels.shape[:2]
    image = bpy.data.images.new(name, width=w, height=h, alpha=True)
    # Blender stores images bottom row first, as floats in the image's (sRGB) colour space.
    flat = np.ascontiguousarray(pixels[::-1], dtype=np.float32).ravel() / np.float32(255.0)
    image.pixels.foreach_set(flat)
    image.pack()  # lives in the .blend: nothing depends on a file on disk
    return image


def build_with_texture(
    pixels: np.ndarray | None,
    name: str,
    textured: bool,
    build: Callable[[bpy.types.Image | None], bpy.types.Collection],
    parts: Callable[[bpy.types.Collection], list[bpy.types.Object]],
) -> bpy.types.Collection:
    """Run `build` with the result's one shared image (None without a texture), showing the
    picture or, when not `textured`, the flat colours. All or nothing: a failed build
    leaves no image behind."""
    image = new_texture_image(pixels, f"{name} picture") if pixels is not None else None
    try:
        collection = build(image)
    except BaseException:
        if image is not None:
            bpy.data.images.remove(image)
        raise
    if not textured:
        for material in textured_materials(parts(collection)):
            set_textured(material, False)
    return collection


def add_uvs(mesh: bpy.types.Mesh, uvs: np.ndarray) -> None:
    """Per-vertex UVs (glTF convention, v down) as the mesh's UV map, read through the
    mesh's own corners so any winding fix made while building it is followed."""
    corner_vert = np.empty(len(mesh.loops), dtype=np.int32)
    mesh.attributes[".corner_vert"].data.foreach_get("value", corner_vert)
    blender_uv = np.column_stack([uvs[:, 0], 1.0 - uvs[:, 1]]).astype(np.float32)  # Blender's v points up
    layer = mesh.uv_layers.new(name=UV_MAP)
    layer.uv.foreach_set("vector", blender_uv[corner_vert].ravel())


def add_texture(material: bpy.types.Material, image: bpy.types.Image) -> None:
    """An Image Texture node showing `image`, linked to the Base Color (see set_textured)."""
    tree = material.node_tree
    node = tree.nodes.new("ShaderNodeTexImage")
    node.name = node.label = TEXTURE_NODE
    node.image = image
    node.extension = "EXTEND"  # the walls reach the crop's edge: never wrap to the other side
    node.location = (-400.0, 300.0)
    tree.nodes.active = node  # what Workbench's Texture colour and texture paint show
    set_textured(material, True)


def _nodes(material: bpy.types.Material) -> tuple[bpy.types.Node | None, bpy.types.Node | None]:
    tree = material.node_tree
    if tree is None:
        return None, None
    bsdf = next((n for n in tree.nodes if n.type == "BSDF_PRINCIPLED"), None)
    return tree.nodes.get(TEXTURE_NODE), bsdf


def has_texture(material: bpy.types.Material | None) -> bool:
    return material is not None and all(n is not None for n in _nodes(material))


def is_textured(material: bpy.types.Material | None) -> bool:
    if not has_texture(material):
        return False
    _node, bsdf = _nodes(material)
    return bsdf.inputs["Base Color"].is_linked


def set_textured(material: bpy.types.Material, textured: bool) -> None:
    """Link the picture into the Base Color, or unlink it to show the flat colour."""
    node, bsdf = _nodes(material)
    if node is None or bsdf is None:
        return
    base = bsdf.inputs["Base Color"]
    for link in list(base.links):
        material.node_tree.links.remove(link)
    if textured:
        material.node_tree.links.new(node.outputs["Color"], base)


def textured_materials(objects: Iterable[bpy.types.Object]) -> list[bpy.types.Material]:
    """The materials of `objects` that carry the picture texture (each once)."""
    found: dict[str, bpy.types.Material] = {}
    for obj in objects:
        for material in getattr(obj.data, "materials", []):
            if has_texture(material):
                found[material.name] = material
    return list(found.values())
