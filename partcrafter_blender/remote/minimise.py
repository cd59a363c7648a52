"""What leaves the machine: the image decoded, oriented, stripped, downscaled, re-encoded.

Decoding to pixels (inference/images.py applies EXIF orientation) and writing a
fresh PNG from the pixel array is what removes metadata: EXIF, GPS, XMP, ICC
profiles and text chunks live in the container, not in the pixels, so none of
them can survive. The long side is capped at 1024 px; the model works at far less.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..inference.images import decode_image, encode_png

MAX_UPLOAD_SIDE = 1024


@dataclass(frozen=True)
class UploadImage:
    png: bytes
    width: int
    height: int
    sha256: str  # of `png`, the exact bytes sent

    @property
    def size(self) -> int:
        return len(self.png)


def minimise_pixels(rgba: np.ndarray, max_side: int = MAX_UPLOAD_SIDE) -> UploadImage:
    """Downscale (long side <= max_side, alpha-correct) and encode a metadata-free PNG."""
    from PIL import Image

    h, w = rgba.shape[:2]
    scale = max_side / max(h, w)
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        # Pillow resizes RGBA premultiplied, so transparent pixels do not bleed colour.
        rgba = np.asarray(Image.fromarray(np.ascontiguousarray(rgba), "RGBA").resize(size, Image.Resampling.LANCZOS))
    png = encode_png(rgba)
    return UploadImage(png=png, width=int(rgba.shape[1]), height=int(rgba.shape[0]), sha256=hashlib.sha256(png).hexdigest())


def minimise_image_bytes(data: bytes, name: str = "image", max_side: int = MAX_UPLOAD_SIDE) -> UploadImage:
    return minimise_pixels(decode_image(data, name=name).rgba, max_side=max_side)
