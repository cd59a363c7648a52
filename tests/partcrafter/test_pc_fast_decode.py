"""The opt-in fast decode (GeometrySettings.coarse_levels, engine option fast_decode) against the
official geometry: the conformance pipeline case, the same case with steeper logits, and an
analytic thin plate whose surface is known. Bounds are the measured values with margin
(docs/partcrafter-engine.md, "Fast decode")."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from partcrafter_blender.inference.partcrafter import geometry as geo
from partcrafter_blender.inference.partcrafter.vae import TripoSGVAE

# The conformance call (dense 5 / hierarchical 6); fast = dense grid at depth 4, two refinement levels.
OFFICIAL = geo.GeometrySettings(dense_depth=5, hierarchical_depth=6, query_rows=16_384)
FAST = replace(OFFICIAL, coarse_levels=1, topk_first_chunk=False)
EXACT = replace(OFFICIAL, topk_first_chunk=False)
# Measured: conformance case Chamfer 7e-7 (vertex rounding only; faces identical); steep case 4.1e-5.
CONFORMANCE_CHAMFER = 1e-5
STEEP_CHAMFER = 2e-4
STEEP_SCALE = 16.0


def chamfer(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric mean nearest-neighbour distance between two vertex sets."""
    return float(cKDTree(b).query(a)[0].mean() + cKDTree(a).query(b)[0].mean())


def components(faces: np.ndarray, num_vertices: int) -> int:
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(num_vertices, num_vertices))
    return connected_components(graph, directed=False)[0]


class CountingVAE:
    """The tiny VAE with every decoder query counted (the fast mode must actually query less)."""

    def __init__(self, vae: TripoSGVAE) -> None:
        self.vae, self.queries = vae, 0
        self.device, self.dtype, self.prepare_decoder = vae.device, vae.dtype, vae.prepare_decoder

    def query_logits(self, state, points, topk=False):
        self.queries += points.shape[1] * state.batch
        return self.vae.query_logits(state, points, topk=topk)


@pytest.fixture(scope="module")
def pipeline_case(conformance):
    folder = conformance / "pipeline"
    vae = TripoSGVAE.from_config(json.loads((folder / "vae" / "config.json").read_text(encoding="utf-8"))).eval()
    vae.load_state_dict(load_file(folder / "vae" / "diffusion_pytorch_model.safetensors"), strict=True)
    return vae, load_file(folder / "case_pipeline.safetensors")


def test_fast_decode_evaluates_a_coarser_grid_and_refines_through_it(pipeline_case):
    vae, case = pipeline_case
    levels: list[int] = []
    with torch.inference_mode():
        state = vae.prepare_decoder(case["final_latents"][:1])
        grid = geo.dense_logits(vae, state, FAST)
        assert grid.shape == (1, 16, 16, 16)
        final = geo.refine(vae, state, grid[0], FAST, on_level=lambda depth, mask: levels.append(depth))
    assert levels == [5, 6] and final.shape == (64, 64, 64)


def test_fast_decode_matches_the_official_meshes_on_the_conformance_case(pipeline_case):
    vae, case = pipeline_case
    out = geo.extract_part_meshes(vae, case["final_latents"], settings=FAST)
    for part, mesh in enumerate(out):
        assert isinstance(mesh, geo.PartSurface)
        ref_v, ref_f = case[f"mesh.part{part}.vertices"].numpy(), case[f"mesh.part{part}.faces"].numpy()
        assert chamfer(mesh.vertices, ref_v) < CONFORMANCE_CHAMFER
        assert abs(len(mesh.faces) - len(ref_f)) <= 0.01 * len(ref_f)
        assert components(mesh.faces, len(mesh.vertices)) == components(ref_f, len(ref_v))


def test_fast_decode_on_steeper_logits_stays_close_and_queries_less(pipeline_case):
    """Same surfaces, logits x16: a narrow band like a sharper model's. Reference = official with
    exact attention (at this steepness the one-shot top-k alone changes part 0's mesh)."""
    vae, case = pipeline_case
    steep = TripoSGVAE.from_config(vae.config).eval()
    steep.load_state_dict(vae.state_dict())
    with torch.no_grad():
        steep.decoder.proj_out.weight.mul_(STEEP_SCALE)
        steep.decoder.proj_out.bias.mul_(STEEP_SCALE)
    official, fast = CountingVAE(steep), CountingVAE(steep)
    reference = geo.extract_part_meshes(official, case["final_latents"], settings=EXACT)
    approx = geo.extract_part_meshes(fast, case["final_latents"], settings=FAST)
    assert fast.queries < official.queries
    for ref, mesh in zip(reference, approx, strict=True):
        assert chamfer(mesh.vertices, ref.vertices) < STEEP_CHAMFER
        assert abs(len(mesh.faces) - len(ref.faces)) <= 0.01 * len(ref.faces)
        assert components(mesh.faces, len(mesh.vertices)) == components(ref.faces, len(ref.vertices))


class PlateField:
    """A known surface standing in for the decoder: a plate 0.03 thick (under one depth-6 cell) at
    x = 0.5307, logits 300 per unit of signed distance. Its nearest depth-3 samples are 0.1 and
    0.187 away from its mid-plane, i.e. at logits of about -25 and -51."""

    device, dtype = torch.device("cpu"), torch.float32
    centre, half = torch.tensor([0.5307, 0.0, 0.0]), torch.tensor([0.015, 0.5, 0.5])

    def prepare_decoder(self, latents: torch.Tensor) -> geo.DecoderState:
        return geo.DecoderState(latents, latents)

    def query_logits(self, state, points, topk=False):
        q = (points - self.centre).abs() - self.half  # box signed distance
        outside = q.clamp(min=0).norm(dim=-1) + q.max(dim=-1).values.clamp(max=0)
        return (-300.0 * outside).expand(state.batch, -1)


def test_thin_plate_survives_the_coarse_grid_and_the_threshold_is_what_keeps_it():
    field, latents = PlateField(), torch.zeros(1, 1, 1)
    coarse = replace(OFFICIAL, coarse_levels=2, topk_first_chunk=False)  # dense grid 8^3, cell 0.29
    official = geo.extract_part_meshes(field, latents, settings=OFFICIAL)[0]
    fast = geo.extract_part_meshes(field, latents, settings=coarse)[0]
    assert isinstance(official, geo.PartSurface) and isinstance(fast, geo.PartSurface)
    assert components(fast.faces, len(fast.vertices)) == components(official.faces, len(official.vertices)) == 1
    assert chamfer(fast.vertices, official.vertices) < CONFORMANCE_CHAMFER  # measured 0.0
    x = fast.vertices[:, 0]
    assert abs(x.min() - 0.5157) < 0.02 and abs(x.max() - 0.5457) < 0.02
    # With the official band's threshold at the coarse level no sample is in the band: the plate is lost.
    lost = geo.extract_part_meshes(field, latents, settings=replace(coarse, coarse_band_logit=17.0))[0]
    assert isinstance(lost, geo.FailedPart) and "no surface" in lost.reason


def test_coarse_levels_must_leave_a_dense_grid():
    with pytest.raises(ValueError):
        geo.GeometrySettings(dense_depth=3, hierarchical_depth=4, coarse_levels=3)
    with pytest.raises(ValueError):
        geo.GeometrySettings(coarse_levels=-1)
    with pytest.raises(ValueError):
        geo.GeometrySettings(coarse_band_logit=0.0)
    assert geo.GeometrySettings(dense_depth=8, coarse_levels=2).grid_depth == 6
