"""sRGB <-> CIE Lab (D65) in numpy: colour distances that match what people see."""

from __future__ import annotations

import numpy as np

from ..srgb import srgb_to_linear

# sRGB byte -> linear light, as a lookup table (exact and much faster than pow per pixel).
_LINEAR = srgb_to_linear(np.arange(256) / 255.0).astype(np.float32)

# Linear sRGB -> XYZ, each row already divided by the D65 white point.
_RGB_TO_XYZN = (
    np.array(
        [
            [0.4124564, 0.3575761, 0.1804375],
            [0.2126729, 0.7151522, 0.0721750],
            [0.0193339, 0.1191920, 0.9503041],
        ],
        dtype=np.float64,
    )
    / np.array([0.95047, 1.0, 1.08883])[:, None]
).astype(np.float32)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 sRGB -> (..., 3) float32 Lab (L in [0, 100])."""
    lin = _LINEAR[rgb]
    xyz = lin @ _RGB_TO_XYZN.T
    eps = 216.0 / 24389.0
    kappa = 24389.0 / 27.0
    f = np.where(xyz > eps, np.cbrt(np.maximum(xyz, eps)), (kappa * xyz + 16.0) / 116.0).astype(np.float32)
    lab = np.empty_like(f)
    lab[..., 0] = 116.0 * f[..., 1] - 16.0
    lab[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return lab
