"""Raster building blocks in plain numpy (no scipy: this runs inside Blender's Python).

Connected components, an exact Euclidean distance transform and area resampling.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def label_components(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of equal, non-negative values of an int (H, W) array.

    Returns (components, count): components numbered 0..count-1 in raster order of
    their first pixel, -1 where `labels` is negative.
    """
    h, w = labels.shape
    flat = np.ascontiguousarray(labels).ravel()
    n = flat.size
    valid = flat >= 0
    idx = np.arange(n, dtype=np.int64)
    # Collapse horizontal runs first: every pixel points at the start of its run.
    same_left = np.zeros(n, dtype=bool)
    same_left[1:] = flat[1:] == flat[:-1]
    same_left[::w] = False
    same_left &= valid
    parent = np.maximum.accumulate(np.where(same_left, 0, idx))
    # Vertical joins, resolved by min-label hooking of roots plus pointer jumping
    # (Shiloach-Vishkin style: O(log n) rounds of vectorised work).
    a = np.nonzero(valid[:-w] & (flat[:-w] == flat[w:]))[0]
    b = a + w
    while a.size:
        pa, pb = parent[a], parent[b]
        differ = pa != pb
        a, b, pa, pb = a[differ], b[differ], pa[differ], pb[differ]
        if not a.size:
            break
        np.minimum.at(parent, np.maximum(pa, pb), np.minimum(pa, pb))
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    out = np.full(n, -1, dtype=np.int32)
    roots, inverse = np.unique(parent[valid], return_inverse=True)
    out[valid] = inverse.astype(np.int32)
    return out.reshape(h, w), int(roots.size)


def distance_to_background(mask: np.ndarray) -> np.ndarray:
    """Exact Euclidean distance (in pixels) from each True pixel to the nearest False
    pixel or to the outside of the array; 0 on False pixels."""
    h, w = mask.shape
    padded = np.zeros((h + 2, w + 2), dtype=bool)
    padded[1:-1, 1:-1] = mask
    rows = np.arange(h + 2, dtype=np.int64)[:, None]
    big = np.int64(4 * (h + w + 4))
    above = np.maximum.accumulate(np.where(padded, -big, rows), axis=0)
    below = np.minimum.accumulate(np.where(padded, big, rows)[::-1], axis=0)[::-1]
    col = np.minimum(rows - above, below - rows).astype(np.float32)
    g2 = col * col
    d2 = g2.copy()
    # Row pass: d2(y, x) = min_k g2(y, x + k) + k^2, stopping once k^2 exceeds every answer.
    k = 1
    limit = float(d2.max())
    while k * k < limit and k < w + 2:
        kk = np.float32(k * k)
        np.minimum(d2[:, :-k], g2[:, k:] + kk, out=d2[:, :-k])
        np.minimum(d2[:, k:], g2[:, :-k] + kk, out=d2[:, k:])
        k += 1
        if k % 16 == 0:
            limit = float(d2.max())
    return np.sqrt(d2[1:-1, 1:-1])


def area_resample(
    values: np.ndarray,
    size: tuple[int, int],
    box: tuple[float, float, float, float] | None = None,
) -> np.ndarray:
    """Area-average a float (H, W) array (the `box` region of it) to `size` = (width, height)."""
    im = Image.fromarray(np.ascontiguousarray(values, dtype=np.float32), mode="F")
    return np.asarray(im.resize(size, Image.Resampling.BOX, box=box), dtype=np.float32)


def resize_rgba(
    rgba: np.ndarray,
    size: tuple[int, int],
    box: tuple[float, float, float, float] | None = None,
) -> np.ndarray:
    """Area-downscale RGBA uint8 (alpha-aware: Pillow premultiplies RGBA when resampling)."""
    im = Image.fromarray(np.ascontiguousarray(rgba), mode="RGBA")
    if box is None and size == im.size:
        return np.array(rgba, copy=True)
    return np.asarray(im.resize(size, Image.Resampling.BOX, box=box), dtype=np.uint8)


def absorb_regions(regions: np.ndarray, absorb: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Fold each flagged region into the neighbour it shares the longest border with,
    among neighbours of higher rank (so folding never cycles). Chains resolve fully;
    a flagged region without a higher-ranked neighbour stays. Returns the new id map."""
    n = absorb.size
    order = rank.astype(np.float64) * n + np.arange(n)  # strict total order
    sources, targets = [], []
    for a, b in ((regions[:, :-1], regions[:, 1:]), (regions[:-1], regions[1:])):
        sel = (a >= 0) & (b >= 0) & (a != b)
        sources += [a[sel], b[sel]]
        targets += [b[sel], a[sel]]
    src = np.concatenate(sources).astype(np.int64)
    dst = np.concatenate(targets).astype(np.int64)
    keep = absorb[src] & (order[dst] > order[src])
    target = np.arange(n, dtype=np.int64)
    if keep.any():
        keys, counts = np.unique(src[keep] * n + dst[keep], return_counts=True)
        s, d = np.divmod(keys, n)
        pick = np.lexsort((-counts, s))
        s, d = s[pick], d[pick]
        first = np.ones(s.size, dtype=bool)
        first[1:] = s[1:] != s[:-1]
        target[s[first]] = d[first]
        while True:
            jumped = target[target]
            if np.array_equal(jumped, target):
                break
            target = jumped
    return np.where(regions >= 0, target[np.maximum(regions, 0)], -1)
