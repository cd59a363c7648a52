"""Object pixels -> N parts.

Superpixels are merged greedily on their region-adjacency graph. The merge cost adds
up evidence that two regions are different parts: a colour step (Lab, lightness
down-weighted, and counted only as far as an edge along the shared boundary backs it,
so shading and texture do not split a part), edge strength, a change of thickness (a
handle against a body, a slat against a seat), a short neck, and pieces meeting at an
angle (a rung on a rail: the joined L or T shape fills its moment ellipse far less than
either piece). Small regions get a discount so they merge first (no confetti). Auto
stops when the cheapest merge would cross a clear boundary, or when only separate
pieces are left, and says which cues keep the parts apart.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..contract import MAX_PARTS
from .raster import absorb_regions, distance_to_background, label_components
from .superpixels import slic

LIGHTNESS_WEIGHT = 0.5
EDGE_WEIGHT = 0.5
EDGE_GATE = 1.5  # a colour step counts at most this many times the edge strength along it
THICKNESS_WEIGHT = 12.0
THICK_SCALE = 0.1  # thickness saturates at this fraction of sqrt(object area)
NECK_WEIGHT = 6.0
ANGLE_WEIGHT = 12.0
# Names of the cues behind Graph.terms, for Auto's explanation.
CUES = ("colour or edge seam", "thickness change", "narrow neck", "junction at an angle")
_PLURAL = {"junction at an angle": "junctions at an angle"}
AUTO_THRESHOLD = 18.0  # merge cost (about a Delta-E) above which Auto stops merging
AUTO_SHARE = 14  # Auto discounts regions smaller than half of 1/AUTO_SHARE of the object
# Seed variants: seed 0 weighs the cues as above; any other seed scales each cue's weight by a
# log-normal factor of this spread, so K seeds give K plausible, different splits.
SEED_SPREAD = 0.6


@dataclass(frozen=True)
class Segmentation:
    labels: np.ndarray  # (h, w) int32: part index 0..N-1, -1 off the object
    count: int
    auto_reason: str  # why Auto chose `count` ("" when the count was given)


@dataclass
class _Region:
    size: float
    lab: tuple[float, float, float]  # summed Lab
    thickness: float
    xy: tuple[float, float]  # summed x, y
    second: tuple[float, float, float]  # summed x*x, y*y, x*y (for the region's shape)


def _compactness(size: float, xy: tuple[float, float], second: tuple[float, float, float]) -> float:
    """Area over the area of the region's moment ellipse: 1 for a disc, 0.95 for any
    rectangle or bar, small for L, T and comb shapes (pieces that meet at an angle)."""
    mx, my = xy[0] / size, xy[1] / size
    vxx = second[0] / size - mx * mx + 1.0 / 12.0
    vyy = second[1] / size - my * my + 1.0 / 12.0
    vxy = second[2] / size - mx * my
    det = max(vxx * vyy - vxy * vxy, 1e-12)
    return min(1.0, size / (4.0 * math.pi * math.sqrt(det)))



def segment(
    lab: np.ndarray,
    mask: np.ndarray,
    num_parts: int | None,
    superpixel_count: int,
    check: Callable[[], None],
    seed: int = 0,
) -> Segmentation:
    smooth = _box_blur(lab)
    sp, step = slic(smooth, mask, superpixel_count, check=check)
    regions, count = label_components(sp)
    # Superpixel crumbs (thin wires, texture) fold into a neighbour before the graph is built.
    sizes = np.bincount(regions[regions >= 0], minlength=count)
    regions = absorb_regions(regions, sizes < 0.25 * step * step, sizes)
    ids, inverse = np.unique(regions[regions >= 0], return_inverse=True)
    regions[regions >= 0] = inverse
    count = int(ids.size)
    check()
    graph = _Graph.build(regions, count, lab, smooth, mask, step)
    graph.cue_weights = cue_weights(seed)
    check()
    target = num_parts if num_parts is not None else 1
    # Auto judges sizes against the finest split it may return.
    graph.share = 0.5 * graph.area / (num_parts if num_parts is not None else AUTO_SHARE)
    reason = graph.merge(target, auto=num_parts is None, check=check)
    roots = graph.roots()
    # Parts numbered by decreasing area: part_01 is the biggest.
    parts = np.where(regions >= 0, roots[np.maximum(regions, 0)], -1)
    ids, sizes = np.unique(parts[parts >= 0], return_counts=True)
    order = ids[np.argsort(-sizes, kind="stable")]
    remap = np.full(count, -1, dtype=np.int32)
    remap[order] = np.arange(order.size, dtype=np.int32)
    parts = np.where(parts >= 0, remap[np.maximum(parts, 0)], -1).astype(np.int32)
    n = int(order.size)
    if num_parts is not None and n < num_parts:
        parts, n = _split_until(parts, n, num_parts)
    return Segmentation(labels=parts, count=n, auto_reason=reason)


def cue_weights(seed: int) -> tuple[float, ...]:
    """How much each cue counts for this seed (all 1 for seed 0, today's split)."""
    if seed == 0:
        return (1.0,) * len(CUES)
    return tuple(float(x) for x in np.exp(np.random.default_rng(seed).normal(0.0, SEED_SPREAD, len(CUES))))


def _box_blur(lab: np.ndarray) -> np.ndarray:
    """3x3 mean: tames JPEG noise and fine texture before superpixels and edges."""
    p = np.pad(lab, ((1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = lab.shape[:2]
    acc = np.zeros_like(lab)
    for dy in range(3):
        for dx in range(3):
            acc += p[dy : dy + h, dx : dx + w]
    return acc / 9.0


def _weighted(lab_diff: np.ndarray) -> np.ndarray:
    scaled = lab_diff.copy()
    scaled[..., 0] *= LIGHTNESS_WEIGHT
    return np.sqrt((scaled**2).sum(axis=-1))


class _Graph:
    """Region adjacency graph with greedy lowest-cost merging (lazy-deletion heap)."""

    def __init__(self, regions: list[_Region], adjacency: list[dict[int, list[float]]], area: float, step: float):
        self.regions = regions
        self.adj = adjacency
        self.parent = list(range(len(regions)))
        self.area = area
        self.step = step
        self.alive = len(regions)
        self.version = [0] * len(regions)
        self.share = 0.5 * area  # sizes below this merge at a discount; set per request
        self.thick_cap = THICK_SCALE * math.sqrt(area)
        self.cue_weights: tuple[float, ...] = (1.0,) * len(CUES)  # see cue_weights()

    @classmethod
    def build(
        cls, regions: np.ndarray, count: int, lab: np.ndarray, smooth: np.ndarray, mask: np.ndarray, step: float
    ) -> _Graph:
        h, w = regions.shape
        flat = regions.ravel()
        on = flat >= 0
        idx = flat[on]
        size = np.bincount(idx, minlength=count).astype(np.float64)
        labsum = np.stack([np.bincount(idx, lab[..., k].ravel()[on], minlength=count) for k in range(3)], axis=1)
        ys, xs = np.divmod(np.nonzero(on)[0], w)
        xysum = np.stack([np.bincount(idx, xs, minlength=count), np.bincount(idx, ys, minlength=count)], axis=1)
        xf, yf = xs.astype(np.float64), ys.astype(np.float64)
        second = np.stack([np.bincount(idx, m, minlength=count) for m in (xf * xf, yf * yf, xf * yf)], axis=1)
        dist = distance_to_background(mask).ravel()[on]
        thick = np.zeros(count)
        np.maximum.at(thick, idx, dist)
        edges = _edge_strength(smooth)

        a_parts, b_parts, s_parts = [], [], []
        for ra, rb, ea, eb in (
            (regions[:, :-1], regions[:, 1:], edges[:, :-1], edges[:, 1:]),
            (regions[:-1], regions[1:], edges[:-1], edges[1:]),
        ):
            sel = (ra >= 0) & (rb >= 0) & (ra != rb)
            a_parts.append(np.minimum(ra[sel], rb[sel]))
            b_parts.append(np.maximum(ra[sel], rb[sel]))
            s_parts.append(np.maximum(ea[sel], eb[sel]))
        a = np.concatenate(a_parts).astype(np.int64)
        b = np.concatenate(b_parts).astype(np.int64)
        s = np.concatenate(s_parts)
        keys, inverse = np.unique(a * count + b, return_inverse=True)
        length = np.bincount(inverse, minlength=keys.size)
        strength = np.bincount(inverse, s, minlength=keys.size)
        # Per boundary: its length in pixel sides and its summed edge strength.
        adjacency: list[dict[int, list[float]]] = [{} for _ in range(count)]
        for key, ln, st in zip(keys.tolist(), length.tolist(), strength.tolist()):
            i, j = divmod(key, count)
            adjacency[i][j] = [ln, st]
            adjacency[j][i] = [ln, st]
        nodes = [
            _Region(
                float(size[i]),
                tuple(labsum[i].tolist()),
                float(thick[i]),
                tuple(xysum[i].tolist()),
                tuple(second[i].tolist()),
            )
            for i in range(count)
        ]
        return cls(nodes, adjacency, float(size.sum()), step)

    def terms(self, i: int, j: int) -> tuple[float, float, float, float]:
        """Weighted evidence that regions i and j are different parts, by cue (see CUES)."""
        ri, rj = self.regions[i], self.regions[j]
        length, strength = self.adj[i][j]
        edge = strength / length
        dl = (ri.lab[0] / ri.size - rj.lab[0] / rj.size) * LIGHTNESS_WEIGHT
        da = ri.lab[1] / ri.size - rj.lab[1] / rj.size
        db = ri.lab[2] / ri.size - rj.lab[2] / rj.size
        # A colour change without an edge along the boundary is shading or texture, not a seam.
        colour = min(math.sqrt(dl * dl + da * da + db * db), EDGE_GATE * edge) + EDGE_WEIGHT * edge
        ti, tj = min(ri.thickness, self.thick_cap), min(rj.thickness, self.thick_cap)
        thickness = abs(math.log((ti + 1.0) / (tj + 1.0)))
        small = min(ri.size, rj.size)
        neck = max(0.0, 0.6 - length / math.sqrt(small)) / 0.6
        # Pieces meeting at an angle (a rung on a rail, a slat on a seat) make an L or T whose
        # moment ellipse is far less filled than the pieces' own.
        size = ri.size + rj.size
        xy = (ri.xy[0] + rj.xy[0], ri.xy[1] + rj.xy[1])
        second = (ri.second[0] + rj.second[0], ri.second[1] + rj.second[1], ri.second[2] + rj.second[2])
        ci = _compactness(ri.size, ri.xy, ri.second)
        cj = _compactness(rj.size, rj.xy, rj.second)
        expected = (ci * ri.size + cj * rj.size) / size
        angle = max(0.0, math.log(expected / _compactness(size, xy, second)))
        # Regions well below a fair share of the object merge first, whatever their cues.
        scale = min(1.0, small / self.share)
        return (
            scale * colour,
            scale * THICKNESS_WEIGHT * thickness,
            scale * NECK_WEIGHT * neck,
            scale * ANGLE_WEIGHT * angle,
        )

    def cost(self, i: int, j: int) -> float:
        return sum(w * t for w, t in zip(self.cue_weights, self.terms(i, j), strict=True))

    def merge(self, target: int, auto: bool, check: Callable[[], None]) -> str:
        heap: list[tuple[float, int, int, int, int]] = []
        for i, nbrs in enumerate(self.adj):
            for j in nbrs:
                if i < j:
                    heap.append((self.cost(i, j), i, j, 0, 0))
        heapq.heapify(heap)
        merges = 0
        while self.alive > target:
            if merges % 32 == 0:
                check()
            merges += 1
            while heap:
                c, i, j, vi, vj = heap[0]
                if self.parent[i] == i and self.parent[j] == j and self.version[i] == vi and self.version[j] == vj:
                    break
                heapq.heappop(heap)
            if auto and self.alive <= MAX_PARTS and (not heap or heap[0][0] > AUTO_THRESHOLD):
                return self._auto_reason()
            if not heap:
                self._join_nearest()
                continue
            _, i, j, _, _ = heapq.heappop(heap)
            self._union(i, j)
            for k in self.adj[i]:
                heapq.heappush(heap, (self.cost(i, k), min(i, k), max(i, k), *self._versions(i, k)))
        if not auto:
            return ""
        return (
            f"{self.alive} part{'s' if self.alive != 1 else ''}: no colour, edge, thickness, neck or "
            "junction boundary is strong enough to split the object."
        )

    def _auto_reason(self) -> str:
        """Say which cues keep the remaining parts apart, boundary by boundary."""
        tally = dict.fromkeys(CUES, 0)
        for i in range(len(self.regions)):
            if self.parent[i] != i:
                continue
            for j in self.adj[i]:
                if i < j:
                    terms = self.terms(i, j)
                    tally[CUES[max(range(len(CUES)), key=terms.__getitem__)]] += 1
        live = [i for i in range(len(self.regions)) if self.parent[i] == i]
        pieces = _count_pieces(live, self.adj)
        said = [f"{n} {cue if n == 1 else _PLURAL.get(cue, cue + 's')}" for cue, n in tally.items() if n]
        text = f"{self.alive} parts: the boundaries left between them are " if said else f"{self.alive} parts"
        text += ", ".join(said)
        if pieces > 1:
            text += f"{'; ' if said else ': '}the object shows {pieces} separate pieces"
        return text + f" (every further merge costs more than {AUTO_THRESHOLD:.0f})."

    def _versions(self, i: int, k: int) -> tuple[int, int]:
        lo, hi = min(i, k), max(i, k)
        return self.version[lo], self.version[hi]

    def _union(self, i: int, j: int) -> None:
        """Fold region j into region i."""
        ri, rj = self.regions[i], self.regions[j]
        ri.size += rj.size
        ri.lab = (ri.lab[0] + rj.lab[0], ri.lab[1] + rj.lab[1], ri.lab[2] + rj.lab[2])
        ri.xy = (ri.xy[0] + rj.xy[0], ri.xy[1] + rj.xy[1])
        ri.second = (ri.second[0] + rj.second[0], ri.second[1] + rj.second[1], ri.second[2] + rj.second[2])
        ri.thickness = max(ri.thickness, rj.thickness)
        self.parent[j] = i
        self.version[i] += 1
        self.alive -= 1
        for k, boundary in self.adj[j].items():
            del self.adj[k][j]
            if k == i:
                continue
            acc = self.adj[i].setdefault(k, [0.0, 0.0])
            for n, value in enumerate(boundary):
                acc[n] += value
            self.adj[k][i] = acc
        self.adj[j] = {}

    def _join_nearest(self) -> None:
        """No adjacent pair left (separate pieces): join the smallest piece to the nearest other."""
        live = [i for i in range(len(self.regions)) if self.parent[i] == i]
        sizes = np.array([self.regions[i].size for i in live])
        centres = np.array([self.regions[i].xy for i in live]) / sizes[:, None]
        s = int(np.argmin(sizes))
        d = ((centres - centres[s]) ** 2).sum(axis=1)
        d[s] = np.inf
        o = int(np.argmin(d))
        keep, fold = (live[o], live[s]) if sizes[o] >= sizes[s] else (live[s], live[o])
        self._union(keep, fold)

    def roots(self) -> np.ndarray:
        out = np.array(self.parent, dtype=np.int64)
        while True:
            nxt = out[out]
            if np.array_equal(nxt, out):
                return out
            out = nxt


def _edge_strength(smooth: np.ndarray) -> np.ndarray:
    """Perceptual gradient magnitude (central differences on the blurred Lab)."""
    p = np.pad(smooth, ((1, 1), (1, 1), (0, 0)), mode="edge")
    gx = _weighted(p[1:-1, 2:] - p[1:-1, :-2]) * 0.5
    gy = _weighted(p[2:, 1:-1] - p[:-2, 1:-1]) * 0.5
    return np.sqrt(gx * gx + gy * gy)


def _split_until(parts: np.ndarray, n: int, target: int) -> tuple[np.ndarray, int]:
    """Fewer regions than asked for (a tiny object): halve the largest part along its long axis."""
    parts = parts.copy()
    while n < target:
        sizes = np.bincount(parts[parts >= 0], minlength=n)
        big = int(np.argmax(sizes))
        if sizes[big] < 2:
            break
        ys, xs = np.nonzero(parts == big)
        coords = np.stack([xs, ys], axis=1).astype(np.float64)
        centred = coords - coords.mean(axis=0)
        axis = np.linalg.svd(centred, full_matrices=False)[2][0]
        proj = centred @ axis
        order = np.argsort(proj, kind="stable")
        moved = order[order.size // 2 :]
        parts[ys[moved], xs[moved]] = n
        n += 1
    return parts, n


def _count_pieces(live: list[int], adj: list[dict[int, list[float]]]) -> int:
    """Connected groups of the live regions (pieces of the object that do not touch)."""
    seen: set[int] = set()
    pieces = 0
    for start in live:
        if start in seen:
            continue
        pieces += 1
        stack = [start]
        seen.add(start)
        while stack:
            for k in adj[stack.pop()]:
                if k not in seen:
                    seen.add(k)
                    stack.append(k)
    return pieces
