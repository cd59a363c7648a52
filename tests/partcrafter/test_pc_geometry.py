"""Geometry extraction against the end-to-end pipeline case, starting from its final latents
(quirks 12-14), plus the failure, cancellation and precision behaviour the engine relies on."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from scipy.spatial import cKDTree
from skimage import measure

from partcrafter_blender.inference.contract import CancelToken, FailedPart
from partcrafter_blender.inference.errors import Cancelled
from partcrafter_blender.inference.partcrafter import geometry as geo
from partcrafter_blender.inference.partcrafter.vae import TripoSGVAE

LOGIT_ATOL = 1e-3
VERTEX_ATOL = 1e-4
SETTINGS = geo.GeometrySettings(dense_depth=5, hierarchical_depth=6, query_rows=16_384)


@pytest.fixture(scope="module")
def pipeline_case(conformance):
    folder = conformance / "pipeline"
    vae = TripoSGVAE.from_config(json.loads((folder / "vae" / "config.json").read_text(encoding="utf-8"))).eval()
    vae.load_state_dict(load_file(folder / "vae" / "diffusion_pytorch_model.safetensors"), strict=True)
    return vae, load_file(folder / "case_pipeline.safetensors")


@pytest.fixture(scope="module")
def reference_run(pipeline_case):
    """Dense logits, level-1 masks and final grids of all parts, as the official pipeline computes them."""
    vae, case = pipeline_case
    latents = case["final_latents"]
    masks: list[torch.Tensor] = []
    with torch.inference_mode():
        state = vae.prepare_decoder(latents)
        dense = geo.dense_logits(vae, state, SETTINGS, topk_first_chunk=True)
        grids = [
            geo.refine(vae, state.select(slice(p, p + 1)), dense[p], SETTINGS, on_level=lambda d, m: masks.append(m))
            for p in range(latents.shape[0])
        ]
        grid_points = geo.dense_grid_points(torch.arange(32_768), 5, 1.005)[None]
        topk = vae.topk_selection(state.select(slice(0, 1)), grid_points)
    return dense, masks, grids, topk


@pytest.fixture(scope="module")
def meshes(reference_run):
    return [geo.grid_to_mesh(grid) for grid in reference_run[2]]


def chamfer(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric mean nearest-neighbour distance between two vertex sets."""
    da, _ = cKDTree(b).query(a)
    db, _ = cKDTree(a).query(b)
    return float(da.mean() + db.mean())


def test_dense_grid_points_are_the_official_linspace_grid():
    axis = torch.linspace(-1.005, 1.005, 32)
    expected = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
    assert torch.equal(geo.dense_grid_points(torch.arange(32**3), 5, 1.005), expected)


@pytest.mark.parametrize("part", [0, 1, 2])
def test_dense_logits_and_final_grid_match_pipeline(pipeline_case, reference_run, part):
    _, case = pipeline_case
    dense, _, grids, _ = reference_run
    assert (dense[part].reshape(-1) - case[f"geometry.part{part}.dense_logits"]).abs().max().item() <= LOGIT_ATOL
    assert (grids[part] - case[f"geometry.part{part}.final_grid"]).abs().max().item() <= LOGIT_ATOL


def test_part0_topk_and_refinement_mask_match_pipeline(pipeline_case, reference_run):
    _, case = pipeline_case
    _, masks, _, topk = reference_run
    assert torch.equal(topk, case["geometry.part0.topk_indices"])
    assert torch.equal(masks[0], case["geometry.part0.level1.queried_mask"].bool())


@pytest.mark.parametrize("part", [0, 1, 2])
def test_meshes_match_pipeline(pipeline_case, meshes, part):
    _, case = pipeline_case
    ref_v, ref_f = case[f"mesh.part{part}.vertices"].numpy(), case[f"mesh.part{part}.faces"].numpy()
    mesh = meshes[part]
    assert isinstance(mesh, geo.PartSurface)
    assert mesh.vertices.dtype == np.float32 and mesh.faces.dtype == np.int32
    assert np.array_equal(mesh.faces, ref_f)
    assert np.abs(mesh.vertices - ref_v).max() <= VERTEX_ATOL
    assert chamfer(mesh.vertices, ref_v) < 1e-5
    assert mesh.vertices.max() < 1.005  # the official vertex mapping never reaches +bounds


def test_extract_part_meshes_end_to_end_with_other_batching(pipeline_case, meshes):
    vae, case = pipeline_case
    calls: list[tuple[int, int]] = []
    other = geo.extract_part_meshes(
        vae, case["final_latents"], dense_depth=5, hierarchical_depth=6, progress=lambda *a: calls.append(a),
        settings=replace(SETTINGS, parts_per_batch=2, query_rows=20_000),
    )
    assert calls == [(1, 3), (2, 3), (3, 3)]
    for a, b in zip(meshes, other, strict=True):
        assert np.array_equal(a.faces, b.faces)
        assert np.abs(a.vertices - b.vertices).max() <= VERTEX_ATOL


def test_topk_switch_off_changes_coarse_grid_but_not_the_mesh(pipeline_case, reference_run, meshes):
    """The measurement behind the top-k decision (docs/partcrafter-engine.md)."""
    vae, case = pipeline_case
    dense_official = reference_run[0]
    exact = replace(SETTINGS, topk_first_chunk=False)
    masks: list[torch.Tensor] = []
    with torch.inference_mode():
        state = vae.prepare_decoder(case["final_latents"][:1])
        dense_exact = geo.dense_logits(vae, state, exact)
        grid = geo.refine(vae, state, dense_exact[0], exact, on_level=lambda d, m: masks.append(m))
    assert (dense_official[0] - dense_exact[0]).abs().max().item() > 1.0
    assert not torch.equal(masks[0], reference_run[1][0])  # a different band is refined...
    mesh = geo.grid_to_mesh(grid)  # ...yet the surface is the same
    assert np.array_equal(mesh.faces, meshes[0].faces)
    assert chamfer(mesh.vertices, meshes[0].vertices) < 1e-6


def test_band_is_evaluated_in_fp32_unless_switched():
    sparse = torch.full((12, 12, 12), 40.0)
    sparse[6, 6, 6] = 12.0  # inside the fp32 band, saturated in fp16
    assert geo.refinement_band(sparse, torch.float32).sum().item() == 125
    assert geo.refinement_band(sparse, torch.float16).sum().item() == 0
    edge = torch.full((12, 12, 12), 40.0)
    edge[0, 6, 6] = 0.0  # boundary cells never seed the band
    assert geo.refinement_band(edge, torch.float32).sum().item() == 0


def test_cropped_marching_cubes_equals_full_grid():
    axis = torch.linspace(-1, 1, 40)
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    field = 20 * (0.45 - torch.sqrt((x - 0.3) ** 2 + (1.4 * y) ** 2 + z**2)) + torch.sin(7 * x) * torch.cos(5 * z)
    field[0, :, :] = 3.0  # a slab touching the grid boundary as well
    mesh = geo.grid_to_mesh(field, 1.005)
    verts, faces, _, _ = measure.marching_cubes(field.numpy(), 0.0, method="lewiner")
    assert np.array_equal(mesh.faces, faces)
    assert np.abs(mesh.vertices - (verts / 40 * 2.01 - 1.005)).max() < 1e-5


def test_surfaceless_parts_are_reported_with_a_reason():
    with pytest.raises(geo.PartGeometryError, match="outside"):
        geo.grid_to_mesh(torch.full((8, 8, 8), -3.0))
    with pytest.raises(geo.PartGeometryError, match="inside"):
        geo.grid_to_mesh(torch.full((8, 8, 8), 3.0))
    nan = torch.randn(8, 8, 8)
    nan[2, 2, 2] = float("nan")
    with pytest.raises(geo.PartGeometryError, match="non-finite"):
        geo.grid_to_mesh(nan)


def test_failing_parts_become_failed_parts_and_the_others_survive(pipeline_case, meshes):
    vae, case = pipeline_case
    latents = case["final_latents"].clone()
    latents[2, 0, 0] = float("nan")
    # Part 0 refines 195408 cells, part 1 203880: a limit in between fails part 1 only.
    limited = replace(SETTINGS, max_expanded_coords=200_000, parts_per_batch=3)
    out = geo.extract_part_meshes(vae, latents, settings=limited)
    assert isinstance(out[0], geo.PartSurface) and np.array_equal(out[0].faces, meshes[0].faces)
    assert isinstance(out[1], FailedPart) and out[1].index == 1 and "203,880 queries" in out[1].reason
    assert isinstance(out[2], FailedPart) and out[2].index == 2 and "non-finite" in out[2].reason


def test_progress_per_part_and_cancellation(pipeline_case):
    vae, case = pipeline_case
    calls: list[tuple[int, int]] = []
    token = CancelToken()

    def progress(done: int, total: int) -> None:
        calls.append((done, total))
        token.cancel()

    with pytest.raises(Cancelled):
        geo.extract_part_meshes(vae, case["final_latents"], settings=replace(SETTINGS, parts_per_batch=1),
                                progress=progress, cancel=token)
    assert calls == [(1, 3)]


@pytest.mark.parametrize("parts_per_batch", [1, 3])
def test_decoding_reports_progress_after_every_decoder_chunk(pipeline_case, parts_per_batch, monkeypatch):
    """A CPU decode takes minutes per part: the bar must move with every chunk of queries,
    not only when a part is finished."""
    vae, case = pipeline_case
    log: list[tuple[str, object]] = []
    real_query = vae.query_logits

    def counted(*args, **kwargs):
        log.append(("query", None))
        return real_query(*args, **kwargs)

    monkeypatch.setattr(vae, "query_logits", counted)
    settings = replace(SETTINGS, parts_per_batch=parts_per_batch, topk_first_chunk=False)
    geo.extract_part_meshes(
        vae, case["final_latents"], settings=settings,
        progress=lambda done, total: log.append(("part", done)),
        detail=lambda fraction, message: log.append(("chunk", (fraction, message))),
    )
    kinds = [kind for kind, _ in log]
    assert kinds.count("query") > 3 * 4  # dense (2 chunks per part or 3 shared) and 12 refinement chunks per part
    # Every decoder query is followed by a progress report before the next one.
    for i, kind in enumerate(kinds):
        if kind == "query":
            assert kinds[i + 1] == "chunk", (i, kinds[i - 2 : i + 3])
    chunks = [value for kind, value in log if kind == "chunk"]
    fractions = [f for f, _ in chunks]
    assert fractions == sorted(fractions) and 0 < fractions[0] and fractions[-1] == pytest.approx(1.0)
    messages = [m for _, m in chunks]
    assert any("dense grid" in m for m in messages)
    for part in (1, 2, 3):
        assert any(m.startswith(f"Decoding part {part} of 3: refining level 6") for m in messages)


def test_settings_reject_inconsistent_depths():
    with pytest.raises(ValueError):
        geo.GeometrySettings(dense_depth=7, hierarchical_depth=6)
