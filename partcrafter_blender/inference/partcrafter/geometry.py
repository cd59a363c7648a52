"""Part latents -> triangle meshes: dense occupancy grid, hierarchical band refinement,
marching cubes (conformance README quirks 12-14).

Differences from the official extraction, all deliberate:
* Device-agnostic: nothing is hard-coded to CUDA (the official refinement allocates one
  tensor on 'cuda', so on CPU every mesh silently came out None).
* A part that yields no mesh is reported as `FailedPart(index, reason)`; no bare except,
  no dummy mesh. Errors that are not about the part's shape (out of memory, bugs) propagate.
* The refinement band |2*sigmoid(l)-1| < 1 is evaluated in fp32 by default (`band_in_fp32`),
  even when the decoder runs in fp16/bf16. The official GPU script evaluates it in fp16,
  where it saturates at |l| ~ 8 instead of ~ 17, so it refines a thinner band.
* Refined values are written back at the child's integer index directly; the official
  float round trip lands on the same index in fp32 (checked by the conformance case).
* Marching cubes runs on the bounding box of the cells that straddle the level; the
  result is the same mesh as on the full grid (same faces, vertices within float32
  rounding of the offset), only faster.
Opt-in fast decode (`coarse_levels=k`, engine option `fast_decode`; NOT the official result):
the dense grid is evaluated k levels coarser and the band refinement runs k extra times to
reach the official dense depth, then the official refinement to the hierarchical depth.
The coarse levels refine a deliberately wide band (|logit| below `coarse_band_logit`, every
cell whose sign differs from a neighbour's, dilated with a 5^3 max-pool), because a feature
thinner than a coarse cell shows only as a moderate logit at the coarse samples. What it
can still miss: a feature lying entirely between coarse samples whose |logit| all stay above
the threshold (docs/partcrafter-engine.md, "Fast decode", has the measured error).
Batching: the dense grid is the same for every part, so a group of parts is decoded in one
batch; refinement queries differ per part and are decoded part by part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from skimage import measure

from ..contract import CancelToken, FailedPart
from .vae import DEFAULT_CHUNK_SIZE, DecoderState, TripoSGVAE

DEFAULT_BOUNDS = 1.005
DEFAULT_MAX_EXPANDED_COORDS = 10**8
# Low-res grids this large are dilated with a 3^3 instead of a 5^3 max-pool (quirk 13).
SMALL_DILATION_RESOLUTION = 512
# Fast decode: coarse cells with |logit| below this are refined, twice the official fp32 band's
# |l| < 17, because a coarse sample can lie twice as far from a surface as a sample one level finer.
COARSE_BAND_LOGIT = 34.0
COARSE_DILATION = 5

PartProgress = Callable[[int, int], None]  # (parts finished, parts total)
# (share of the whole decoding done, what it is doing): once per decoder chunk, so a slow
# CPU decode still moves the bar every second or so.
DecodeProgress = Callable[[float, str], None]
ChunkProgress = Callable[[int, int], None]  # (chunks done, chunks in this pass)
# Share of a part's decoding given to the dense grid; its refinement levels share the rest.
_DENSE_SHARE = 0.5


class PartSurface(NamedTuple):
    vertices: np.ndarray  # float32 [V, 3], PartCrafter object frame
    faces: np.ndarray  # int32 [F, 3]


class PartGeometryError(Exception):
    """Why one part has no mesh; becomes a FailedPart, never a dummy mesh."""


@dataclass(frozen=True)
class GeometrySettings:
    dense_depth: int = 8
    hierarchical_depth: int = 9
    bounds: float = DEFAULT_BOUNDS
    max_expanded_coords: int = DEFAULT_MAX_EXPANDED_COORDS
    # Official pipeline: the flash decoder's one-shot top-k covers only the first 50000
    # dense-grid queries of part 0. That looks accidental (a self-disarming flag armed once per
    # call) and does not change the conformance meshes, but the official grids need it, so it
    # is the default. False = exact attention everywhere (docs/partcrafter-engine.md).
    topk_first_chunk: bool = True
    band_in_fp32: bool = True
    query_rows: int = 200_000  # points x parts per decoder forward
    parts_per_batch: int = 8  # parts decoded together on the dense grid (their queries are projected once)
    # Fast decode (opt-in approximation, 0 = official): the dense grid k levels coarser, then
    # k extra refinement levels with the wide coarse band (module docstring).
    coarse_levels: int = 0
    coarse_band_logit: float = COARSE_BAND_LOGIT

    def __post_init__(self) -> None:
        if not 1 <= self.dense_depth <= self.hierarchical_depth:
            raise ValueError("need 1 <= dense_depth <= hierarchical_depth")
        if self.query_rows < 1 or self.parts_per_batch < 1:
            raise ValueError("query_rows and parts_per_batch must be positive")
        if not 0 <= self.coarse_levels < self.dense_depth:
            raise ValueError("coarse_levels must be at least 0 and leave a dense grid of depth 1 or more")
        if not self.coarse_band_logit > 0:
            raise ValueError("coarse_band_logit must be positive")

    @property
    def grid_depth(self) -> int:
        """Depth of the grid that is decoded in full (the dense depth unless decoding fast)."""
        return self.dense_depth - self.coarse_levels


def dense_grid_points(flat_index: torch.Tensor, depth: int, bounds: float) -> torch.Tensor:
    """Points of the dense grid linspace(-b, b, 2^d)^3 ('ij', x-major) at the given flat indices."""
    res = 2**depth
    axis = torch.linspace(-bounds, bounds, res, dtype=torch.float32, device=flat_index.device)
    i, j, k = flat_index // (res * res), (flat_index // res) % res, flat_index % res
    return torch.stack([axis[i], axis[j], axis[k]], dim=-1)


def _check_cancel(cancel: CancelToken | None) -> None:
    if cancel is not None:
        cancel.raise_if_cancelled()


def dense_logits(
    vae: TripoSGVAE,
    state: DecoderState,
    settings: GeometrySettings,
    topk_first_chunk: bool = False,
    cancel: CancelToken | None = None,
    on_chunk: ChunkProgress | None = None,
) -> torch.Tensor:
    """Logits of every part of `state` (from vae.prepare_decoder) on the dense grid of depth
    `settings.grid_depth` -> [B, R, R, R] (fp32)."""
    res = 2**settings.grid_depth
    total = res**3
    out = torch.empty(state.batch, total, dtype=torch.float32, device=vae.device)
    rows = max(1, settings.query_rows // state.batch)
    chunks = -(-total // rows)
    for chunk, start in enumerate(range(0, total, rows)):
        _check_cancel(cancel)
        idx = torch.arange(start, min(start + rows, total), device=vae.device)
        points = dense_grid_points(idx, settings.grid_depth, settings.bounds)[None]
        out[:, start : start + len(idx)] = vae.query_logits(state, points).float()
        if on_chunk is not None:
            on_chunk(chunk + 1, chunks)
    if topk_first_chunk:
        # The official one-shot flash decoder: row 0's first chunk used top-k attention.
        idx = torch.arange(min(DEFAULT_CHUNK_SIZE, total), device=vae.device)
        points = dense_grid_points(idx, settings.grid_depth, settings.bounds)[None]
        out[0, : len(idx)] = vae.query_logits(state.select(slice(0, 1)), points, topk=True)[0].float()
    return out.view(-1, res, res, res)


def refinement_band(logits: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Cells of the low-res grid to split: interior cells with |2*sigmoid(l)-1| < 1 evaluated
    in `dtype`, dilated. fp32 keeps every |l| below ~17; fp16 saturates at ~8 (official GPU run)."""
    band = (2 * torch.sigmoid(logits.to(dtype)) - 1).abs() < 1
    interior = torch.zeros_like(band)
    interior[1:-1, 1:-1, 1:-1] = True
    band &= interior
    kernel = 3 if logits.shape[0] >= SMALL_DILATION_RESOLUTION else 5
    pool_dtype = torch.float16 if band.device.type == "cuda" else torch.float32
    return F.max_pool3d(band[None, None].to(pool_dtype), kernel, stride=1, padding=kernel // 2)[0, 0] > 0


def coarse_band(logits: torch.Tensor, threshold: float = COARSE_BAND_LOGIT) -> torch.Tensor:
    """Fast decode's band on a coarse grid: |l| < threshold, or a sign that differs from a face
    neighbour's (a steep crossing), boundary cells included, dilated with a 5^3 max-pool."""
    band = logits.abs() < threshold
    inside = logits > 0
    for axis in range(3):
        n = logits.shape[axis]
        change = inside.narrow(axis, 1, n - 1) != inside.narrow(axis, 0, n - 1)
        band.narrow(axis, 1, n - 1).logical_or_(change)
        band.narrow(axis, 0, n - 1).logical_or_(change)
    pool_dtype = torch.float16 if band.device.type == "cuda" else torch.float32
    pooled = F.max_pool3d(band[None, None].to(pool_dtype), COARSE_DILATION, stride=1, padding=COARSE_DILATION // 2)
    return pooled[0, 0] > 0


def _upsample2(grid: torch.Tensor) -> torch.Tensor:
    r = grid.shape[0]
    return grid[:, None, :, None, :, None].expand(r, 2, r, 2, r, 2).reshape(2 * r, 2 * r, 2 * r)


def refine(
    vae: TripoSGVAE,
    state: DecoderState,
    grid: torch.Tensor,
    settings: GeometrySettings,
    cancel: CancelToken | None = None,
    on_level: Callable[[int, torch.Tensor], None] | None = None,
    on_chunk: Callable[[int, int, int], None] | None = None,
) -> torch.Tensor:
    """Refine one part's dense grid [R, R, R] (`state` of that part only, R = 2^grid_depth) up
    to the hierarchical depth (fp32 result). Levels below the dense depth (fast decode only)
    use the wide `coarse_band`, the others the official `refinement_band`.

    `on_level(depth, queried_mask)` sees which cells of each new level were re-queried;
    `on_chunk(level, chunks done, chunks in the level)` follows the queries (level from 0)."""
    band_dtype = torch.float32 if settings.band_in_fp32 else vae.dtype
    for depth in range(settings.grid_depth, settings.hierarchical_depth):
        res = 2**depth
        if depth < settings.dense_depth:
            band = coarse_band(grid, settings.coarse_band_logit)
        else:
            band = refinement_band(grid, band_dtype)
        children = _upsample2(band)
        grid = _upsample2(grid)  # reshape of an expanded view: a fresh tensor, safe to write
        coords = children.nonzero()
        if len(coords) > settings.max_expanded_coords:
            raise PartGeometryError(
                f"refining to depth {depth + 1} needs {len(coords):,} queries, more than the limit of "
                f"{settings.max_expanded_coords:,}"
            )
        if on_level is not None:
            on_level(depth + 1, children)
        chunks = max(1, -(-len(coords) // settings.query_rows))
        for chunk, start in enumerate(range(0, len(coords), settings.query_rows)):
            _check_cancel(cancel)
            c = coords[start : start + settings.query_rows]
            points = (c.float() - res) * settings.bounds / res  # children spacing (quirk 13)
            grid[c[:, 0], c[:, 1], c[:, 2]] = vae.query_logits(state, points[None])[0].float()
            if on_chunk is not None:
                on_chunk(depth - settings.grid_depth, chunk + 1, chunks)
    return grid


def surface_bbox(grid: torch.Tensor) -> tuple[slice, slice, slice]:
    """Smallest box holding every marching-cubes cell whose corners straddle level 0."""
    inside = grid > 0
    active = grid == 0
    for axis in range(3):
        change = inside.narrow(axis, 1, inside.shape[axis] - 1) != inside.narrow(axis, 0, inside.shape[axis] - 1)
        active.narrow(axis, 1, inside.shape[axis] - 1).logical_or_(change)
        active.narrow(axis, 0, inside.shape[axis] - 1).logical_or_(change)
    box = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        hits = active.any(dim=others[1]).any(dim=others[0]).nonzero()[:, 0]
        box.append(slice(max(int(hits[0]) - 1, 0), min(int(hits[-1]) + 2, grid.shape[axis])))
    return box[0], box[1], box[2]


def grid_to_mesh(grid: torch.Tensor, bounds: float = DEFAULT_BOUNDS) -> PartSurface:
    """Marching cubes (lewiner, level 0) on the final [2^h]^3 grid, vertices in object space."""
    if not bool(torch.isfinite(grid).all()):
        raise PartGeometryError("the decoder produced non-finite occupancy values (NaN or infinity)")
    lo, hi = float(grid.min()), float(grid.max())
    if hi <= 0:
        raise PartGeometryError("no surface: the whole volume is outside the part (the part is empty)")
    if lo > 0:
        raise PartGeometryError("no surface: the whole volume is inside the part (it fills the bounding box)")
    box = surface_bbox(grid)
    volume = grid[box].cpu().numpy()
    vertices, faces, _, _ = measure.marching_cubes(volume, 0.0, method="lewiner")
    if len(faces) == 0:
        raise PartGeometryError("no surface: marching cubes found no triangles")
    offset = np.array([s.start for s in box], dtype=np.float32)
    res = grid.shape[0]
    vertices = (vertices + offset) / res * (2 * bounds) - bounds  # official mapping (quirk 13)
    return PartSurface(vertices.astype(np.float32), faces.astype(np.int32))


def extract_part_meshes(
    vae: TripoSGVAE,
    latents: torch.Tensor,
    dense_depth: int = 8,
    hierarchical_depth: int = 9,
    bounds: float = DEFAULT_BOUNDS,
    progress: PartProgress | None = None,
    cancel: CancelToken | None = None,
    settings: GeometrySettings | None = None,
    detail: DecodeProgress | None = None,
) -> list[PartSurface | FailedPart]:
    """One mesh (or the reason there is none) per part of `latents` [N, T, C], in order.

    `settings`, when given, overrides the depth/bounds arguments. `progress` hears of each
    finished part, `detail` of each decoder chunk (dense grid, then refinement levels)."""
    if settings is None:
        settings = GeometrySettings(dense_depth=dense_depth, hierarchical_depth=hierarchical_depth, bounds=bounds)
    latents = latents.to(vae.device)
    num_parts = latents.shape[0]
    results: list[PartSurface | FailedPart] = []
    with torch.inference_mode():
        for first in range(0, num_parts, settings.parts_per_batch):
            state = vae.prepare_decoder(latents[first : first + settings.parts_per_batch])
            topk = settings.topk_first_chunk and first == 0
            dense_report = _dense_reporter(detail, first, state.batch, num_parts)
            grids = dense_logits(vae, state, settings, topk_first_chunk=topk, cancel=cancel, on_chunk=dense_report)
            for offset in range(state.batch):
                index = first + offset
                refine_report = _refine_reporter(detail, first, state.batch, offset, num_parts, settings)
                try:
                    grid = refine(
                        vae, state.select(slice(offset, offset + 1)), grids[offset], settings, cancel,
                        on_chunk=refine_report,
                    )
                    results.append(grid_to_mesh(grid, settings.bounds))
                except PartGeometryError as exc:
                    results.append(FailedPart(index=index, reason=str(exc)))
                if progress is not None:
                    progress(index + 1, num_parts)
    return results


def _dense_reporter(detail: DecodeProgress | None, first: int, batch: int, num_parts: int) -> ChunkProgress | None:
    """Dense-grid chunks of parts first..first+batch-1 -> the first share of their span of the bar."""
    if detail is None:
        return None
    names = f"part {first + 1}" if batch == 1 else f"parts {first + 1}-{first + batch}"

    def report(done: int, total: int) -> None:
        detail((first + batch * _DENSE_SHARE * done / total) / num_parts,
               f"Decoding {names} of {num_parts}: dense grid {done}/{total}")

    return report


def _refine_reporter(
    detail: DecodeProgress | None, first: int, batch: int, offset: int, num_parts: int, settings: GeometrySettings
) -> Callable[[int, int, int], None] | None:
    """Refinement chunks of one part -> its slice of the rest of the batch's span."""
    if detail is None:
        return None
    levels = max(1, settings.hierarchical_depth - settings.grid_depth)
    start = first + batch * _DENSE_SHARE + offset * (1 - _DENSE_SHARE)

    def report(level: int, done: int, total: int) -> None:
        share = (level + done / total) / levels
        detail((start + (1 - _DENSE_SHARE) * share) / num_parts,
               f"Decoding part {first + offset + 1} of {num_parts}: refining level "
               f"{settings.grid_depth + level + 1}, {done}/{total}")

    return report
