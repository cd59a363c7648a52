"""The sRGB transfer function, both ways (IEC 61966-2-1), for scalars and numpy arrays.

Part colours are sRGB everywhere in the contract; glTF material factors and Blender's
material and float-image values are linear.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def srgb_to_linear(srgb: ArrayLike) -> np.ndarray:
    c = np.asarray(srgb)
    return np.where(c <= 0.04045, c / 12.92, ((np.maximum(c, 0.04045) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(linear: ArrayLike) -> np.ndarray:
    c = np.asarray(linear)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(np.maximum(c, 0.0031308), 1 / 2.4) - 0.055)
