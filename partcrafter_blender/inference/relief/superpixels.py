"""SLIC-style superpixels restricted to the object, vectorised over pixels.

Each pixel only compares itself with the centres seeded in its own and the eight
neighbouring grid cells, so one iteration is a handful of (9, n) array operations.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

_OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def slic(
    lab: np.ndarray,
    mask: np.ndarray,
    count: int,
    compactness: float = 10.0,
    iterations: int = 5,
    check: Callable[[], None] | None = None,
) -> tuple[np.ndarray, float]:
    """Label object pixels with ~`count` compact, colour-coherent superpixels.

    Returns (labels (h, w) int32 with -1 off the object, grid step in pixels).
    Labels are seed-cell ids (sparse); connectivity is not enforced here.
    """
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    n = ys.size
    step = max(2.0, float(np.sqrt(n / max(count, 1))))
    gh, gw = int(np.ceil(h / step)), int(np.ceil(w / step))
    cy = np.minimum((ys / step).astype(np.int64), gh - 1)
    cx = np.minimum((xs / step).astype(np.int64), gw - 1)
    # One contiguous 1-D array per feature: per-channel arithmetic beats (n, k) reductions.
    feats = [np.ascontiguousarray(lab[ys, xs, k]) for k in range(3)]
    feats += [xs.astype(np.float32), ys.astype(np.float32)]
    spatial = np.float32((compactness / step) ** 2)

    # Seed every grid cell that holds a fair share of object pixels at its pixels' mean.
    cells = gh * gw
    own = cy * gw + cx
    sizes = np.bincount(own, minlength=cells)
    alive = sizes >= max(1.0, 0.1 * step * step)
    if not alive.any():
        alive = sizes > 0
    centres = _means(feats, own, cells)

    # Candidate centres per pixel do not change between iterations: precompute them.
    candidates = []
    for dy, dx in _OFFSETS:
        ny, nx = cy + dy, cx + dx
        inside = (ny >= 0) & (ny < gh) & (nx >= 0) & (nx < gw)
        candidates.append((np.where(inside, ny * gw + nx, 0), inside))

    labels = own
    for _ in range(iterations):
        if check is not None:
            check()
        best = np.full(n, np.inf, dtype=np.float32)
        labels = own.copy()
        for cand, inside in candidates:
            colour = np.zeros(n, dtype=np.float32)
            for k in range(3):
                diff = feats[k] - centres[k][cand]
                colour += diff * diff
            space = np.zeros(n, dtype=np.float32)
            for k in (3, 4):
                diff = feats[k] - centres[k][cand]
                space += diff * diff
            dist = colour + spatial * space
            dist[~(inside & alive[cand])] = np.inf
            better = dist < best
            best[better] = dist[better]
            labels[better] = cand[better]
        alive = np.bincount(labels, minlength=cells) > 0
        centres = _means(feats, labels, cells)

    out = np.full((h, w), -1, dtype=np.int32)
    out[ys, xs] = labels.astype(np.int32)
    return out, step


def _means(feats: list[np.ndarray], labels: np.ndarray, cells: int) -> list[np.ndarray]:
    counts = np.maximum(np.bincount(labels, minlength=cells), 1)
    return [(np.bincount(labels, f, minlength=cells) / counts).astype(np.float32) for f in feats]
