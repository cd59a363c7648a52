"""VAE decoder against every case of shared/conformance/partcrafter/vae (quirks 1, 2, 11, 12)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from partcrafter_blender.inference.partcrafter.vae import TripoSGVAE, frequency_embedding, topk_size

LOGIT_ATOL = 1e-3


@pytest.fixture(scope="module")
def vae_section(conformance):
    folder = conformance / "vae"
    spec = json.loads((folder / "cases.json").read_text(encoding="utf-8"))
    vae = TripoSGVAE.from_config(json.loads((folder / "config.json").read_text(encoding="utf-8"))).eval()
    vae.load_state_dict(load_file(folder / "diffusion_pytorch_model.safetensors"), strict=True)
    return folder, spec, vae


@pytest.fixture(scope="module")
def case_cache():
    return {}


def _load_case(vae_section, case_cache, name):
    folder, spec, _ = vae_section
    if name not in case_cache:
        case_cache[name] = (spec["cases"][name], load_file(folder / spec["cases"][name]["file"]))
    return case_cache[name]


@torch.inference_mode()
def test_vae_case_logits(vae_section, case_cache, vae_case):
    _, _, vae = vae_section
    meta, case = _load_case(vae_section, case_cache, vae_case)
    topk = meta["topk_k"] is not None  # a freshly armed official flash decoder
    out = vae.decode_sdf(case["latents"], case["sampled_points"], topk_first_chunk=topk)
    expected = case["output"][..., 0]
    assert out.shape == expected.shape
    assert (out - expected).abs().max().item() <= LOGIT_ATOL


@torch.inference_mode()
def test_vae_case_intermediates(vae_section, case_cache, vae_case):
    _, _, vae = vae_section
    meta, case = _load_case(vae_section, case_cache, vae_case)
    cfg = vae.config
    emb = frequency_embedding(case["sampled_points"][:, :16], cfg.embed_frequency, cfg.embed_include_pi)
    torch.testing.assert_close(emb, case["debug.query_embedding_first16"], atol=1e-6, rtol=0)
    if "debug.kv_cache" in case:
        torch.testing.assert_close(vae.latent_tokens(case["latents"]), case["debug.kv_cache"], atol=1e-4, rtol=0)
    if meta["topk_k"] is not None:
        assert topk_size(case["latents"].shape[1]) == meta["topk_k"]
        state = vae.prepare_decoder(case["latents"])
        mine = vae.topk_selection(state, case["sampled_points"][:, :50_000])
        ref = case["debug.topk_indices_chunk0"]
        assert mine.shape == ref.shape
        # Same kept keys per head; the order may only differ where two scores tie to fp32 rounding.
        for head in range(ref.shape[1]):
            assert set(mine[0, head].tolist()) == set(ref[0, head].tolist())
        assert (mine == ref).float().mean().item() > 0.99


@torch.inference_mode()
def test_topk_changes_only_the_first_chunk(vae_section, case_cache):
    _, _, vae = vae_section
    _, case = _load_case(vae_section, case_cache, "pipeline_two_chunks_topk_then_full")
    latents, points = case["latents"], case["sampled_points"]
    exact = vae.decode_sdf(latents, points)
    approx = vae.decode_sdf(latents, points, topk_first_chunk=True)
    assert (exact[:, :50_000] - approx[:, :50_000]).abs().max().item() > 1.0
    assert torch.equal(exact[:, 50_000:], approx[:, 50_000:])
    # Exact attention does not depend on the chunking.
    rechunked = vae.decode_sdf(latents, points, chunk_size=7_000)
    assert (rechunked - exact).abs().max().item() < 1e-4


@torch.inference_mode()
def test_batched_decode_equals_per_row_decode(vae_section, case_cache):
    _, _, vae = vae_section
    _, case = _load_case(vae_section, case_cache, "full_attention_dense_grid")
    latents = torch.cat([case["latents"], case["latents"].flip(1) * 0.5])
    points = case["sampled_points"][:, :4000]
    both = vae.decode_sdf(latents, points)
    for row in range(2):
        assert (both[row] - vae.decode_sdf(latents[row : row + 1], points)[0]).abs().max().item() < 1e-4
    assert (both[0] - case["output"][0, :4000, 0]).abs().max().item() <= LOGIT_ATOL
