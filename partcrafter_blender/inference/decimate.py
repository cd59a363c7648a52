"""The polygon budget: quadric decimation of closed part meshes to a triangle target.

Runs in the engine's process (the PartCrafter engine, its worker, the server), so only the
reduced mesh travels and is imported. The collapse itself is `fast-simplification`
(quadric error metrics, the library trimesh also uses), an engine-side dependency: the
Blender extension does not bundle it, and the relief engine, which runs inside Blender,
meets the budget with its own grid instead (relief/meshing.py).

Every reduced part is checked: closed (each edge shared by exactly two triangles) and
consistently oriented (the two run the edge in opposite directions). A closed part that
the library cannot reduce without breaking that is kept as it was, never returned broken
(`Decimated.reduced` says so, and the engines record it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import EngineUnavailable

# Aggressiveness of the collapse schedule, tried in order: lower is slower and gentler.
_AGGRESSIVENESS = (7, 5, 3)
# Sliver clean-up: triangles under this quality get their best edge flipped, where the two
# triangles are this flat (cosine between their normals), so the surface barely moves.
SLIVER_QUALITY = 0.25
FLIP_FLATNESS = float(np.cos(np.radians(12.0)))


@dataclass(frozen=True)
class Decimated:
    vertices: np.ndarray  # float32 (V, 3)
    faces: np.ndarray  # int32 (F, 3)
    input_triangles: int
    min_quality: float  # worst triangle's shape quality in [0, 1] (1: equilateral)
    reduced: bool  # False when the part was kept as it was (under target, or not reducible)


def part_targets(face_counts: list[int], max_triangles: int, whole: bool) -> list[int]:
    """The triangle target of each part: `max_triangles` each, or, for the whole result,
    `max_triangles` shared in proportion to each part's size (at least 4 triangles each,
    a tetrahedron). A part already under its target keeps its count."""
    if max_triangles <= 0:
        return list(face_counts)
    if not whole:
        return [min(n, max_triangles) for n in face_counts]
    total = sum(face_counts)
    if total <= max_triangles:
        return list(face_counts)
    return [min(n, max(4, int(max_triangles * n / total))) for n in face_counts]


def decimate(vertices: np.ndarray, faces: np.ndarray, target: int) -> Decimated:
    """Reduce a closed, consistently oriented triangle mesh to about `target` triangles."""
    vertices = np.ascontiguousarray(vertices, dtype=np.float32)
    faces = np.ascontiguousarray(faces, dtype=np.int32)
    kept = Decimated(vertices, faces, len(faces), float(triangle_quality(vertices, faces).min(initial=1.0)), False)
    if target >= len(faces):
        return kept
    simplify = _library()
    reduction = 1.0 - target / len(faces)
    closed = is_closed_and_oriented(faces)
    for agg in _AGGRESSIVENESS:
        v, f = simplify(vertices, faces, target_reduction=reduction, agg=agg)
        v, f = _drop_unused(np.asarray(v, dtype=np.float32), np.asarray(f, dtype=np.int32))
        if len(f) and (is_closed_and_oriented(f) or not closed):
            f = flip_slivers(v, f)  # flips fix flat caps, relaxing fixes needles
            v = relax_slivers(v, f)
            f = flip_slivers(v, f)
            return Decimated(v, f, len(faces), float(triangle_quality(v, f).min()), True)
    return kept  # never a broken part


def is_closed_and_oriented(faces: np.ndarray) -> bool:
    """Every directed edge appears once and its reverse once: closed, manifold, one orientation."""
    f = np.asarray(faces, dtype=np.int64)
    if not len(f) or (f[:, 0] == f[:, 1]).any() or (f[:, 1] == f[:, 2]).any() or (f[:, 0] == f[:, 2]).any():
        return False
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    n = int(f.max()) + 1
    keys = directed[:, 0] * n + directed[:, 1]
    if len(np.unique(keys)) != len(keys):
        return False  # an edge run twice the same way: flipped face or non-manifold edge
    reverse = directed[:, 1] * n + directed[:, 0]
    return bool(np.isin(reverse, keys, assume_unique=True).all())


def triangle_quality(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """4*sqrt(3)*area / (sum of squared edge lengths) per triangle: 1 equilateral, 0 degenerate."""
    p = np.asarray(vertices, dtype=np.float64)[np.asarray(faces, dtype=np.int64)]
    a, b, c = p[:, 1] - p[:, 0], p[:, 2] - p[:, 1], p[:, 0] - p[:, 2]
    area = 0.5 * np.linalg.norm(np.cross(a, -c), axis=1)
    squares = (a * a).sum(1) + (b * b).sum(1) + (c * c).sum(1)
    return np.where(squares > 0, 4.0 * np.sqrt(3.0) * area / np.maximum(squares, 1e-300), 0.0)


def flip_slivers(vertices: np.ndarray, faces: np.ndarray, rounds: int = 3) -> np.ndarray:
    """Flip the diagonal of flat triangle pairs where that lifts the worse triangle's quality.

    A flip keeps the vertex set, the triangle count, closedness and orientation: triangles
    (a, b, c) and (b, a, d) become (c, a, d) and (d, b, c). Only pairs whose normals agree
    within FLIP_FLATNESS flip, and never onto an edge that already exists. Few triangles
    are slivers, so the per-pair work is plain Python on tuples."""
    points = np.asarray(vertices, dtype=np.float64).tolist()
    f = np.array(faces, dtype=np.int64)
    tris = f.tolist()
    owner = {(t[i], t[(i + 1) % 3]): n for n, t in enumerate(tris) for i in range(3)}
    for _ in range(rounds):
        quality = triangle_quality(vertices, np.array(tris))
        bad = np.nonzero(quality < SLIVER_QUALITY)[0]
        touched: set[int] = set()
        for t in bad[np.argsort(quality[bad])].tolist():
            if t in touched:
                continue
            best: tuple[float, int, list[int], list[int]] | None = None
            for e in range(3):
                a, b, c = tris[t][e], tris[t][(e + 1) % 3], tris[t][(e + 2) % 3]
                u = owner.get((b, a))
                if u is None or u in touched:
                    continue
                d = next(x for x in tris[u] if x != a and x != b)
                if d == c or (c, d) in owner or (d, c) in owner:
                    continue
                new_t, new_u = [c, a, d], [d, b, c]
                normals = [_normal(points, tri) for tri in (tris[t], tris[u], new_t, new_u)]
                if any(n is None for n in normals) or min(
                    _dot(n, m) for n in normals for m in normals  # type: ignore[arg-type]
                ) < FLIP_FLATNESS:
                    continue
                gain = min(_quality(points, new_t), _quality(points, new_u))
                if gain > min(quality[t], quality[u]) and (best is None or gain > best[0]):
                    best = (gain, u, new_t, new_u)
            if best is None:
                continue
            _gain, u, new_t, new_u = best
            for n in (t, u):
                for i in range(3):
                    owner.pop((tris[n][i], tris[n][(i + 1) % 3]), None)
            tris[t], tris[u] = new_t, new_u
            for n in (t, u):
                for i in range(3):
                    owner[(tris[n][i], tris[n][(i + 1) % 3])] = n
            touched.update((t, u))
        if not touched:
            break
    return np.array(tris, dtype=np.int32).reshape(-1, 3)


def _normal(points: list[list[float]], tri: list[int]) -> tuple[float, float, float] | None:
    (ax, ay, az), (bx, by, bz), (cx, cy, cz) = (points[i] for i in tri)
    ux, uy, uz, vx, vy, vz = bx - ax, by - ay, bz - az, cx - ax, cy - ay, cz - az
    nx, ny, nz = uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx
    length = math.sqrt(nx * nx + ny * ny + nz * nz)
    return None if length == 0 else (nx / length, ny / length, nz / length)


def _dot(n: tuple[float, float, float], m: tuple[float, float, float]) -> float:
    return n[0] * m[0] + n[1] * m[1] + n[2] * m[2]


def _quality(points: list[list[float]], tri: list[int]) -> float:
    """triangle_quality() of one triangle, in plain Python."""
    (ax, ay, az), (bx, by, bz), (cx, cy, cz) = (points[i] for i in tri)
    ux, uy, uz, vx, vy, vz = bx - ax, by - ay, bz - az, cx - ax, cy - ay, cz - az
    nx, ny, nz = uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx
    squares = ux * ux + uy * uy + uz * uz + vx * vx + vy * vy + vz * vz + (cx - bx) ** 2 + (cy - by) ** 2 + (cz - bz) ** 2
    return 0.0 if squares == 0 else 2.0 * math.sqrt(3.0) * math.sqrt(nx * nx + ny * ny + nz * nz) / squares


def relax_slivers(vertices: np.ndarray, faces: np.ndarray, rounds: int = 6, step: float = 0.5) -> np.ndarray:
    """Slide the vertices of sliver triangles towards their neighbours' centroid, within
    their tangent plane (so the surface stays put), undoing any move that turns a face."""
    v = np.asarray(vertices, dtype=np.float64).copy()
    f = np.asarray(faces, dtype=np.int64)
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    degree = np.bincount(edges[:, 0], minlength=len(v)).astype(np.float64)
    for _ in range(rounds):
        quality = triangle_quality(v, f)
        bad = quality < SLIVER_QUALITY
        if not bad.any():
            break
        moving = np.zeros(len(v), dtype=bool)
        moving[f[bad].reshape(-1)] = True
        face_normals = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
        normals = np.zeros_like(v)
        for k in range(3):
            np.add.at(normals, f[:, k], face_normals)
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-300)
        centroid = np.zeros_like(v)
        np.add.at(centroid, edges[:, 0], v[edges[:, 1]])
        centroid /= np.maximum(degree, 1.0)[:, None]
        delta = centroid - v
        delta -= (delta * normals).sum(axis=1, keepdims=True) * normals
        trial = np.where(moving[:, None], v + step * delta, v)
        new_normals = np.cross(trial[f[:, 1]] - trial[f[:, 0]], trial[f[:, 2]] - trial[f[:, 0]])
        turned = (new_normals * face_normals).sum(axis=1) <= 0.5 * np.linalg.norm(new_normals, axis=1) * np.linalg.norm(face_normals, axis=1)
        keep = np.zeros(len(v), dtype=bool)
        keep[f[turned].reshape(-1)] = True
        v = np.where(keep[:, None], v, trial)
    return v.astype(np.float32)


def _drop_unused(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    used, inverse = np.unique(faces.reshape(-1), return_inverse=True)
    return vertices[used], inverse.reshape(-1, 3).astype(np.int32)


def _library():  # type: ignore[no-untyped-def]
    try:
        from fast_simplification import simplify
    except ImportError as exc:
        raise EngineUnavailable(
            "The triangle budget needs the 'fast-simplification' package in the engine's Python "
            "(pip install fast-simplification; it is part of the 'gpu' extra)."
        ) from exc
    return simplify
