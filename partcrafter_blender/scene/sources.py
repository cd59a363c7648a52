"""Inputs taken from outside the engine: a Blender image as a reference image, and
existing multi-part results on disk (one multi-mesh GLB, or a folder of per-part
GLB files such as part_00.glb, part_01.glb written by the research scripts).

No bpy import here: the Blender image is passed in, so this also runs in tests
and from the command line.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..generation import ImageInput
from ..inference import InputImageError, PartMesh
from ..inference.glb import GLBError, read_glb, read_glb_texture
from ..inference.images import read_image_file, sniff_format
from ..inference.srgb import linear_to_srgb


@dataclass
class ImportedResult:
    parts: list[PartMesh]
    name: str  # collection name: the GLB's stem or the folder's name
    sha256: str  # of the GLB bytes; for a folder, of the files' hashes in part order
    source: str
    texture: np.ndarray | None = None  # the picture a single textured GLB embeds


def image_input_from_blender(image: Any) -> ImageInput:
    """A bpy.types.Image as engine input. Prefers the original bytes, packed or on disk
    (so the SHA-256 matches the file), when they are a PNG, JPEG or WEBP; otherwise
    (other formats Blender reads, rendered, generated or painted images) the pixels,
    re-encoded as PNG."""
    name = Path(image.name).stem or "image"
    data = _original_bytes(image)
    if data is not None and sniff_format(data) is not None:
        return ImageInput(name=name, data=data)
    width, height = image.size
    if width == 0 or height == 0:
        raise InputImageError(f"The Blender image '{image.name}' has no pixels (is its file missing?).")
    pixels = np.empty(width * height * 4, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    rgba = pixels.reshape(height, width, 4)[::-1]  # Blender stores the bottom row first
    if image.is_float:
        rgba = rgba.copy()
        rgba[..., :3] = linear_to_srgb(rgba[..., :3])  # float images hold linear values
    return ImageInput(name=name, rgba=np.clip(rgba * 255.0 + 0.5, 0, 255).astype(np.uint8))


def _original_bytes(image: Any) -> bytes | None:
    """The unedited image's packed or file bytes, or None (edited, generated, no file)."""
    if image.is_dirty:
        return None
    if image.packed_file is not None:
        return bytes(image.packed_file.data)
    path = Path(_abspath(image.filepath_raw)) if image.filepath_raw else None
    if path is not None and path.is_file() and image.source == "FILE":
        return read_image_file(path)
    return None


def _abspath(path: str) -> str:
    import bpy  # only reached inside Blender, for '//'-relative paths

    return bpy.path.abspath(path)


def _natural_key(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def read_result_path(path: str | Path) -> ImportedResult:
    """Read a multi-mesh GLB (one part per mesh node) or a folder of GLB files (one part
    per file, in natural order, named after the file)."""
    p = Path(path)
    if not p.exists():
        raise GLBError(f"Not found: {p}")
    if p.is_file():
        data = p.read_bytes()
        parts = read_glb(data, name=p.name)
        return ImportedResult(parts, p.stem, hashlib.sha256(data).hexdigest(), str(p), read_glb_texture(data))
    files = sorted((f for f in p.iterdir() if f.is_file() and f.suffix.lower() == ".glb"), key=_natural_key)
    if not files:
        raise GLBError(f"The folder {p} contains no .glb files.")
    return read_result_files(files, name=p.name)


def read_result_files(files: list[Path], name: str) -> ImportedResult:
    """One part per GLB file; the meshes inside one file are merged into that part."""
    parts: list[PartMesh] = []
    digest = hashlib.sha256()
    for f in sorted(files, key=_natural_key):
        data = f.read_bytes()
        digest.update(hashlib.sha256(data).digest())
        meshes = read_glb(data, name=f.name)
        offsets = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
        parts.append(
            PartMesh(
                name=f.stem,
                vertices=np.concatenate([m.vertices for m in meshes]),
                faces=np.concatenate([m.faces + o for m, o in zip(meshes, offsets, strict=True)]),
                color=meshes[0].color,
            )
        )
    return ImportedResult(parts, name, digest.hexdigest(), str(files[0].parent))
