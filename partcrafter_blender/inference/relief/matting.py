"""Foreground: which pixels belong to the object.

Alpha is used when it masks something. Otherwise the background is modelled from the
image border as a smooth (bilinear) colour field in Lab, so plain renders on white and
photos on evenly lit walls with a gentle gradient both work; pixels are foreground when
they differ from that field, with hysteresis (weak differences count only when joined to
strong ones) so JPEG noise, faint soft shadows and anti-aliased fringes do not become
specks. A border that is not plain at all (a full scene) makes the whole frame the object.

Work happens on a crop around the object, resampled to a working resolution, so small
objects in large images keep their detail and big images stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputImageError
from ..foreground import ALPHA_THRESHOLD, check_object_size, require_foreground
from .colour import srgb_to_lab
from .raster import label_components, resize_rgba

COARSE_SIDE = 192  # long side of the pass that finds the object's bounding box


@dataclass(frozen=True)
class Matte:
    """The object at working resolution: colours, Lab, mask, and where the grid sits.

    Working pixel (i, j) covers original pixels x in [x0 + j*px, x0 + (j+1)*px),
    y in [y0 + i*py, y0 + (i+1)*py).
    """

    rgb: np.ndarray  # (h, w, 3) uint8
    lab: np.ndarray  # (h, w, 3) float32
    mask: np.ndarray  # (h, w) bool
    x0: float
    y0: float
    px: float
    py: float
    method: str  # "alpha" | "background" | "whole image"


@dataclass(frozen=True)
class _Background:
    coef: np.ndarray  # (4, 3): Lab = [1, u, v, u*v] @ coef, u, v in [0, 1] over the image
    t_low: float
    t_high: float


def extract_foreground(rgba: np.ndarray, working_side: int) -> Matte:
    h, w = rgba.shape[:2]
    if h * w < 16 or min(h, w) < 4:
        raise InputImageError(f"The image is only {w}x{h} pixels; it needs to show an object, at least 4x4 pixels.")
    require_foreground(rgba)  # fully transparent, too little alpha, one plain colour
    alpha = rgba[..., 3]
    if int(alpha.min()) < 250:
        return _from_alpha(rgba, working_side)
    coarse, sx, sy = _coarse(rgba)
    lab = srgb_to_lab(coarse[..., :3])
    background = _fit_background(lab)
    if background is None:
        return _crop(rgba, (0, 0, w, h), working_side, None, "whole image")
    u, v = _pixel_uv(coarse.shape[0], coarse.shape[1], 0.0, 0.0, sx, sy, h, w)
    mask = _threshold(lab, background, u, v)
    if not mask.any():
        raise InputImageError(
            "No object found: nothing stands out from the plain background. "
            "Use a picture where the object contrasts with its background, or one with transparency."
        )
    box = _bounding_box(mask, sx, sy, w, h)
    return _crop(rgba, box, working_side, background, "background")


def _from_alpha(rgba: np.ndarray, working_side: int) -> Matte:
    h, w = rgba.shape[:2]
    fg = rgba[..., 3] > ALPHA_THRESHOLD  # enough of it: require_foreground checked
    rows = np.nonzero(fg.any(axis=1))[0]
    cols = np.nonzero(fg.any(axis=0))[0]
    box = _pad_box(cols[0], rows[0], cols[-1] + 1, rows[-1] + 1, 2, w, h)
    return _crop(rgba, box, working_side, None, "alpha")


def _coarse(rgba: np.ndarray) -> tuple[np.ndarray, float, float]:
    h, w = rgba.shape[:2]
    scale = min(1.0, COARSE_SIDE / max(h, w))
    cw, ch = max(1, round(w * scale)), max(1, round(h * scale))
    return resize_rgba(rgba, (cw, ch)), w / cw, h / ch


def _pixel_uv(rows: int, cols: int, x0: float, y0: float, px: float, py: float, h: int, w: int):
    """Normalised image coordinates of working pixel centres (broadcastable)."""
    u = (x0 + (np.arange(cols, dtype=np.float32) + 0.5) * px) / w
    v = (y0 + (np.arange(rows, dtype=np.float32) + 0.5) * py) / h
    return u[None, :], v[:, None]


def _basis(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    u, v = np.broadcast_arrays(u, v)
    return np.stack([np.ones_like(u), u, v, u * v], axis=-1)


def _fit_background(lab: np.ndarray) -> _Background | None:
    """Robust bilinear Lab model of a 2-pixel border ring; None when the border is not plain."""
    h, w = lab.shape[:2]
    ring = np.zeros((h, w), dtype=bool)
    ring[:2], ring[-2:], ring[:, :2], ring[:, -2:] = True, True, True, True
    u, v = _pixel_uv(h, w, 0.0, 0.0, 1.0, 1.0, h, w)
    basis = _basis(u, v)[ring].astype(np.float64)
    samples = lab[ring].astype(np.float64)
    inliers = np.ones(len(samples), dtype=bool)
    for _ in range(3):
        coef = np.linalg.lstsq(basis[inliers], samples[inliers], rcond=None)[0]
        residual = np.linalg.norm(samples - basis @ coef, axis=1)
        cutoff = max(4.0, 3.0 * float(np.median(residual[inliers])))
        inliers = residual <= cutoff
        if inliers.sum() < 8:
            return None
    # Plain means most of the border follows the model closely.
    if inliers.mean() < 0.6 or float(np.median(residual)) > 6.0:
        return None
    noise = 1.4826 * float(np.median(residual[inliers]))
    return _Background(coef=coef.astype(np.float32), t_low=max(7.0, 3.5 * noise), t_high=max(18.0, 7.0 * noise))


def _threshold(lab: np.ndarray, bg: _Background, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    model = _basis(u.astype(np.float32), v.astype(np.float32)) @ bg.coef
    diff = np.linalg.norm(lab - model, axis=-1)
    weak = diff > bg.t_low
    comps, count = label_components(np.where(weak, 0, -1))
    if count == 0:
        return weak
    strong = np.bincount(comps[diff > bg.t_high], minlength=count) > 0
    mask = np.where(comps >= 0, strong[np.maximum(comps, 0)], False)
    # Anti-aliased rim: a pixel next to background belongs to the object only if it is
    # at least half as different as the most different pixel around it (half covered).
    p = np.pad(diff, 1, mode="edge")
    h, w = diff.shape
    shifted = [p[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)]
    near_background = np.minimum.reduce(shifted) <= bg.t_low
    return mask & ~(near_background & (diff < 0.5 * np.maximum.reduce(shifted)))


def _bounding_box(mask: np.ndarray, sx: float, sy: float, w: int, h: int) -> tuple[int, int, int, int]:
    rows = np.nonzero(mask.any(axis=1))[0]
    cols = np.nonzero(mask.any(axis=0))[0]
    return _pad_box(
        int(np.floor(cols[0] * sx)),
        int(np.floor(rows[0] * sy)),
        int(np.ceil((cols[-1] + 1) * sx)),
        int(np.ceil((rows[-1] + 1) * sy)),
        int(np.ceil(2 * max(sx, sy))),
        w,
        h,
    )


def _pad_box(x0: int, y0: int, x1: int, y1: int, pad: int, w: int, h: int) -> tuple[int, int, int, int]:
    return max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad)


def _crop(
    rgba: np.ndarray,
    box: tuple[int, int, int, int],
    working_side: int,
    background: _Background | None,
    method: str,
) -> Matte:
    h, w = rgba.shape[:2]
    x0, y0, x1, y1 = box
    cw, ch = x1 - x0, y1 - y0
    scale = min(1.0, working_side / max(cw, ch))
    ww, wh = max(1, round(cw * scale)), max(1, round(ch * scale))
    small = resize_rgba(rgba, (ww, wh), box=(x0, y0, x1, y1))
    px, py = cw / ww, ch / wh
    lab = srgb_to_lab(small[..., :3])
    if method == "alpha":
        mask = small[..., 3] > ALPHA_THRESHOLD
    elif method == "background":
        assert background is not None
        u, v = _pixel_uv(wh, ww, x0, y0, px, py, h, w)
        mask = _threshold(lab, background, u, v)
    else:
        mask = np.ones((wh, ww), dtype=bool)
    mask = _clean(mask)
    check_object_size(int(np.count_nonzero(mask) * px * py), h * w)
    return Matte(rgb=small[..., :3].copy(), lab=lab, mask=mask, x0=x0, y0=y0, px=px, py=py, method=method)


def _clean(mask: np.ndarray) -> np.ndarray:
    """Drop specks far smaller than the object and fill pinholes (JPEG noise inside it)."""
    comps, count = label_components(np.where(mask, 0, -1))
    if count > 1:
        sizes = np.bincount(comps[comps >= 0], minlength=count)
        keep = sizes >= max(4, 0.002 * sizes.max())
        mask = np.where(comps >= 0, keep[np.maximum(comps, 0)], False)
    holes, count = label_components(np.where(mask, -1, 0))
    if count:
        sizes = np.bincount(holes[holes >= 0], minlength=count)
        edge = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
        fill = sizes <= max(2, 0.0005 * np.count_nonzero(mask))
        fill[edge[edge >= 0]] = False
        mask = mask | np.where(holes >= 0, fill[np.maximum(holes, 0)], False)
    return mask

