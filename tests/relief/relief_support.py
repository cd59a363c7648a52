"""Helpers for the relief engine tests: example images, synthetic figures with known
parts, and independent geometry checks (trimesh, our own silhouette raster)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image, ImageDraw
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from partcrafter_blender.inference.contract import GenerationRequest, GenerationResult
from partcrafter_blender.inference.images import decode_image
from partcrafter_blender.inference.relief.engine import ReliefEngine

SHARED = (Path(__file__).resolve().parents[2] / ".." / "shared").resolve()
IMAGES = SHARED / "images"
EXAMPLES = sorted(IMAGES.glob("*.png"))


def expected_parts(path: Path) -> int:
    """The npN_ prefix names the object's part count."""
    return int(path.name[2 : path.name.index("_")])


def run(rgba: np.ndarray, num_parts: int | None, **kwargs) -> GenerationResult:
    return ReliefEngine().generate(GenerationRequest(image=rgba, num_parts=num_parts, **kwargs))


def png_bytes(arr: np.ndarray, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=save.pop("format", "PNG"), **save)
    return buf.getvalue()


def decode(arr: np.ndarray, **save) -> np.ndarray:
    """Through the real decoder, as the CLI and server do."""
    return decode_image(png_bytes(arr, **save)).rgba


def check_meshes(result: GenerationResult, count: int) -> None:
    """Exact count, non-empty, closed, consistently outward-oriented, finite, in frame."""
    assert len(result.parts) == count
    assert [p.name for p in result.parts] == [f"part_{k + 1:02d}" for k in range(count)]
    for part in result.parts:
        assert len(part.faces) > 0
        assert np.isfinite(part.vertices).all()
        assert np.abs(part.vertices).max() <= 1.0
        mesh = trimesh.Trimesh(part.vertices, part.faces, process=False)
        assert mesh.is_watertight, part.name
        assert mesh.is_winding_consistent, part.name
        assert mesh.volume > 0, part.name  # outward normals
        check_manifold_after_merge(part.vertices, part.faces, part.name)
        assert part.color is not None and all(0.0 <= c <= 1.0 for c in part.color)


MERGE_DISTANCE = 1e-4  # Blender's default "Merge by Distance", in frame units (the result is 2 m at most)


def check_manifold_after_merge(vertices: np.ndarray, faces: np.ndarray, name: str = "") -> None:
    """Merge vertices closer than MERGE_DISTANCE (as an artist or a slicer does), then
    require a closed, consistently oriented 2-manifold: no face collapses, every edge has
    exactly two faces that traverse it in opposite directions, and the faces around
    every vertex form one fan (no two cones touching at a point)."""
    pairs = cKDTree(vertices.astype(np.float64)).query_pairs(MERGE_DISTANCE, output_type="ndarray")
    n = len(vertices)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n)) if len(pairs) else coo_matrix((n, n))
    _, merged = connected_components(graph, directed=False)
    f = merged[faces]
    assert (f[:, 0] != f[:, 1]).all() and (f[:, 1] != f[:, 2]).all() and (f[:, 2] != f[:, 0]).all(), f"{name}: faces collapse"
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    assert len(np.unique(directed, axis=0)) == len(directed), f"{name}: an edge is traversed twice the same way"
    undirected, uses = np.unique(np.sort(directed, axis=1), axis=0, return_counts=True)
    assert (uses == 2).all(), f"{name}: {int((uses != 2).sum())} edges not shared by exactly two faces (max {uses.max()})"
    # The link of each vertex: for face (a, b, c), vertex a sees the edge b -> c. Manifold
    # vertices have links that form a single cycle.
    links: dict[int, dict[int, int]] = {}
    for a, b, c in f.tolist():
        for v, p, q in ((a, b, c), (b, c, a), (c, a, b)):
            links.setdefault(v, {})[p] = q
    for v, nxt in links.items():
        start = next(iter(nxt))
        cur, steps = nxt[start], 1
        while cur != start:
            cur, steps = nxt[cur], steps + 1
        assert steps == len(nxt), f"{name}: vertex {v} joins {len(nxt)} faces in more than one fan"


def part_silhouettes(result: GenerationResult, shape: tuple[int, int], side: int = 512) -> np.ndarray:
    """Orthographic silhouette of every part projected back onto the image, at `side`
    pixels on the long side: (parts, h, w) bool. Rasterised at 4x and area-reduced so
    the polygon filler's edge rule does not bias thin structures."""
    h, w = shape
    tf = result.metadata["image_to_frame"]
    k = 4 * side / max(h, w)
    out = []
    for part in result.parts:
        v = part.vertices.astype(np.float64)
        x = (v[:, 0] / tf["scale"] + tf["cx"]) * k - 0.5
        y = (tf["cy"] - v[:, 1] / tf["scale"]) * k - 0.5
        fx, fy = x[part.faces], y[part.faces]
        area = (fx[:, 1] - fx[:, 0]) * (fy[:, 2] - fy[:, 0]) - (fx[:, 2] - fx[:, 0]) * (fy[:, 1] - fy[:, 0])
        im = Image.new("L", (round(w * k), round(h * k)), 0)
        draw = ImageDraw.Draw(im)
        for tri_x, tri_y in zip(fx[np.abs(area) > 1e-12], fy[np.abs(area) > 1e-12]):
            draw.polygon(list(zip(tri_x.tolist(), tri_y.tolist())), fill=255)
        out.append(np.asarray(im.resize((im.width // 4, im.height // 4), Image.Resampling.BOX)) > 127)
    return np.stack(out)


def downsample_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    im = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(im.resize((size[1], size[0]), Image.Resampling.BOX)) > 127


def erode(mask: np.ndarray) -> np.ndarray:
    """One-pixel 4-neighbour erosion of (..., h, w) masks."""
    p = np.pad(mask, [(0, 0)] * (mask.ndim - 2) + [(1, 1), (1, 1)])
    return mask & p[..., :-2, 1:-1] & p[..., 2:, 1:-1] & p[..., 1:-1, :-2] & p[..., 1:-1, 2:]


def interpenetration(silhouettes: np.ndarray) -> float:
    """Share of the object covered by two parts at once, ignoring the one-pixel seams
    where neighbours meet (rasterising each part separately counts a seam twice)."""
    overlap = erode(silhouettes).sum(axis=0) > 1
    return float(overlap.sum() / max(silhouettes.any(axis=0).sum(), 1))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@dataclass(frozen=True)
class Figure:
    rgba: np.ndarray
    blocks: list[np.ndarray]  # ground-truth part masks
    colours: list[tuple[int, int, int]]

    @property
    def mask(self) -> np.ndarray:
        return np.any(self.blocks, axis=0)


def block_figure(size: int = 400, background=(255, 255, 255)) -> Figure:
    """A little robot of touching coloured blocks: head, body, two arms, two legs."""
    boxes = [
        ((150, 40, 250, 120), (220, 40, 40)),  # head
        ((120, 120, 280, 260), (40, 90, 200)),  # body
        ((60, 130, 120, 240), (240, 200, 30)),  # left arm
        ((280, 130, 340, 240), (40, 170, 80)),  # right arm
        ((130, 260, 195, 370), (140, 60, 170)),  # left leg
        ((205, 260, 270, 370), (30, 30, 30)),  # right leg
    ]
    scale = size / 400
    img = np.zeros((size, size, 4), np.uint8)
    img[..., :3] = background
    img[..., 3] = 255
    blocks = []
    for (x0, y0, x1, y1), colour in boxes:
        x0, y0, x1, y1 = (round(c * scale) for c in (x0, y0, x1, y1))
        block = np.zeros((size, size), bool)
        block[y0:y1, x0:x1] = True
        img[block, :3] = colour
        blocks.append(block)
    return Figure(img, blocks, [c for _, c in boxes])


def disc_image(size: int = 300, radius: float = 100, colour=(200, 60, 60)) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:size, :size]
    mask = (xx + 0.5 - size / 2) ** 2 + (yy + 0.5 - size / 2) ** 2 <= radius**2
    img = np.full((size, size, 4), 255, np.uint8)
    img[mask, :3] = colour
    return img, mask
