"""The relief preview's texture: the input image cropped to the working area, and each
part's UVs from the front projection that built it.

Every relief vertex sits straight in front of (or behind) the image pixel it came from,
so projecting it back along Z gives its place in the picture: the front looks like the
picture, the back mirrors it, the walls stretch the outline's colours. The outline sits on
the object's edge, where texture filtering would mix in the background, so the object's
colours are bled outwards over the background first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .matting import Matte
from .raster import resize_rgba

MAX_TEXTURE_SIDE = 2048  # long side of the embedded image: enough for a preview, a few MB at most
BLEED_LEVELS = 7  # halvings of the colour bleed: it reaches about 2^7 texels past the object


@dataclass(frozen=True)
class Texture:
    """`pixels` (RGBA uint8, top row first) shows original pixels [x0, x0 + width) x [y0, y0 + height)."""

    pixels: np.ndarray
    x0: int
    y0: int
    width: int
    height: int


def crop_texture(rgba: np.ndarray, matte: Matte) -> Texture:
    """The original image under the working grid (the matte's crop), at most MAX_TEXTURE_SIDE across.
    It does not depend on the seed, so every variant of a run shares it."""
    h, w = rgba.shape[:2]
    rows, cols = matte.mask.shape
    inside = _eroded(matte.mask)
    x0, y0 = max(0, math.floor(matte.x0)), max(0, math.floor(matte.y0))
    x1 = min(w, math.ceil(matte.x0 + cols * matte.px))
    y1 = min(h, math.ceil(matte.y0 + rows * matte.py))
    crop = rgba[y0:y1, x0:x1]
    scale = min(1.0, MAX_TEXTURE_SIDE / max(crop.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = resize_rgba(crop, size)
    # The object's mask over the crop: working pixel (i, j) covers x0 + j*px ... (see Matte).
    th, tw = crop.shape[:2]
    col = ((x0 + (np.arange(tw) + 0.5) * (x1 - x0) / tw - matte.x0) / matte.px).astype(np.int64)
    row = ((y0 + (np.arange(th) + 0.5) * (y1 - y0) / th - matte.y0) / matte.py).astype(np.int64)
    known = inside[np.clip(row, 0, rows - 1)[:, None], np.clip(col, 0, cols - 1)[None, :]]
    pixels = _bleed(crop, known)
    return Texture(pixels=pixels, x0=x0, y0=y0, width=x1 - x0, height=y1 - y0)


def _eroded(mask: np.ndarray) -> np.ndarray:
    """The mask less its one-pixel rim: rim pixels mix object and background."""
    padded = np.pad(mask, 1)
    return mask & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]


def _bleed(rgba: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Opaque RGB: the image where `known`, elsewhere the colour of the nearby known pixels.
    Pull-push: Pillow's alpha-weighted halvings pull the known colours into ever coarser
    levels; from the coarsest level down, each level keeps what it knows well and takes the
    rest from the level below it, upscaled. Costs about one full-size pass."""
    base = np.array(rgba, copy=True)
    base[..., 3] = np.where(known, 255, 0)
    pyramid = [Image.fromarray(base, mode="RGBA")]
    for _ in range(BLEED_LEVELS):
        w, h = pyramid[-1].size
        if w == 1 and h == 1:
            break
        pyramid.append(pyramid[-1].resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.BOX))
    filled = pyramid[-1]
    for level in reversed(pyramid[:-1]):
        cur = np.array(level, dtype=np.uint8)
        up = np.asarray(filled.resize(level.size, Image.Resampling.BILINEAR), dtype=np.uint8)
        # A few percent of alpha un-premultiplies to noise: keep only well-known pixels.
        np.copyto(cur, up, where=(cur[..., 3] < 96)[..., None])  # copyto: boolean indexing is several times slower
        filled = Image.fromarray(cur, mode="RGBA")
    out = np.array(filled, dtype=np.uint8)
    np.copyto(out, rgba, where=known[..., None])  # the object itself, exactly as in the picture
    out[..., 3] = 255  # colour only: the texture's alpha is not used
    return out


def front_uvs(vertices: np.ndarray, image_to_frame: dict[str, float], texture: Texture) -> np.ndarray:
    """UVs (glTF convention, v down) of frame-space vertices: the inverse of the engine's
    image_to_frame mapping (X = (x - cx) * scale, Y = (cy - y) * scale), over the crop."""
    scale = image_to_frame["scale"]
    x = image_to_frame["cx"] + vertices[:, 0].astype(np.float64) / scale
    y = image_to_frame["cy"] - vertices[:, 1].astype(np.float64) / scale
    u = (x - texture.x0) / texture.width
    v = (y - texture.y0) / texture.height
    return np.clip(np.stack([u, v], axis=1), 0.0, 1.0).astype(np.float32)
