"""Does the image show an object at all? The one test the engines and the server's intake share.

It is deliberately coarse and cheap (no matting): an image with transparency needs enough
opaque pixels; an opaque image needs more than one plain colour. Engines find the object
their own way afterwards; this only refuses inputs that no engine could turn into parts,
so the server can refuse them at intake instead of storing them and failing the job later.
"""

from __future__ import annotations

import numpy as np

from .errors import InputImageError
from .images import has_meaningful_alpha

ALPHA_THRESHOLD = 127  # alpha above this is object
MIN_OBJECT_PIXELS = 100  # in original pixels: less than a 10 x 10 object is no input
MIN_OBJECT_FRACTION = 1e-4
PLAIN_TOLERANCE = 4  # colour levels per channel: JPEG noise on a plain colour stays within this


def require_foreground(rgba: np.ndarray) -> None:
    """Raise InputImageError when the RGBA uint8 image has no object to convert."""
    if has_meaningful_alpha(rgba):
        count = int(np.count_nonzero(rgba[..., 3] > ALPHA_THRESHOLD))
        if count == 0:
            raise InputImageError("The image is fully transparent: there is no object to convert.")
        check_object_size(count, rgba.shape[0] * rgba.shape[1])
        return
    rgb = rgba[..., :3].reshape(-1, 3)
    if int((rgb.max(axis=0).astype(np.int16) - rgb.min(axis=0)).max()) <= PLAIN_TOLERANCE:
        raise InputImageError("No object found: the image is a single plain colour.")


def check_object_size(object_pixels: int, image_pixels: int) -> None:
    if object_pixels < MIN_OBJECT_PIXELS or object_pixels < MIN_OBJECT_FRACTION * image_pixels:
        raise InputImageError(
            f"The object is too small to convert: only about {object_pixels} pixels stand out from the background. "
            "Crop the image closer to the object or use a larger picture."
        )
