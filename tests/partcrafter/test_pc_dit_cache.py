"""The per-generation condition cache of the DiT: reusing the cross-attention keys/values across
steps, skipping all-zero (unconditional) groups and embedding one shared timestep once must not
change the output beyond 1e-6 on the tiny official model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

from partcrafter_blender.inference.partcrafter import dit as dit_module  # noqa: E402
from partcrafter_blender.inference.partcrafter.denoise import denoise  # noqa: E402
from partcrafter_blender.inference.partcrafter.dit import PartCrafterDiT  # noqa: E402
from partcrafter_blender.inference.partcrafter.scheduler import RectifiedFlowScheduler  # noqa: E402

CACHE_ATOL = 1e-6


@pytest.fixture(scope="module")
def model(conformance: Path) -> PartCrafterDiT:
    torch.set_num_threads(2)
    net = PartCrafterDiT.from_config(json.loads((conformance / "dit" / "config.json").read_text())).eval()
    net.load_state_dict(load_file(str(conformance / "dit" / "diffusion_pytorch_model.safetensors")), strict=True)
    return net


@pytest.fixture(scope="module")
def cfg_case(conformance: Path) -> dict[str, torch.Tensor]:
    return load_file(str(conformance / "dit" / "case_three_parts_cfg.safetensors"))


def _inline_cross_attention_forward(model: PartCrafterDiT, x, t, ctx, n) -> torch.Tensor:
    """Reference without any cache: every block projects the raw condition itself, inside the step,
    and attends over all rows (zero rows included), as the official model does."""
    original = dit_module.DiTBlock.forward

    def forward(block, h, kv, layout, skip):
        if kv is not None:
            kv = block.prepare_kv(ctx.to(h.dtype), layout)
        return original(block, h, kv, layout, skip)

    dit_module.DiTBlock.forward = forward
    try:
        return model(x, t, ctx, n)
    finally:
        dit_module.DiTBlock.forward = original


def test_cached_condition_reused_over_steps_equals_per_step_projection(model, cfg_case) -> None:
    ctx = cfg_case["encoder_hidden_states"]  # [uncond zeros x3 ; cond x3], the pipeline's CFG layout
    assert bool((ctx[:3] == 0).all()) and bool((ctx[3:] != 0).any())
    generator = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        cache = model.prepare_condition(ctx, 3, zero_rows=3)
        assert [kv.live.tolist() for kv in cache.blocks if kv is not None] == [[1], [3, 4, 5], [1], [3, 4, 5], [1]]
        for step, t in enumerate((float(cfg_case["timestep"][0]), 1000.0, 20.0)):
            x = cfg_case["hidden_states"] if step == 0 else torch.randn(cfg_case["hidden_states"].shape, generator=generator)
            cached = model(x, torch.tensor(t), None, 3, condition=cache)
            reference = _inline_cross_attention_forward(model, x, torch.full((6,), t), ctx, 3)
            torch.testing.assert_close(cached, reference, atol=CACHE_ATOL, rtol=0)
            if step == 0:
                torch.testing.assert_close(cached, cfg_case["output"], atol=1e-4, rtol=0)


def test_zero_condition_groups_get_exactly_the_output_bias(model, cfg_case) -> None:
    """Attention over all-zero keys/values is zero, so the skipped groups equal the full computation."""
    block = next(b for b in model.blocks if b.has_cross_attention and not b.is_global)
    h = torch.randn(6, 9, model.config.width)
    ctx = cfg_case["encoder_hidden_states"][:, :7]
    layout = model.part_ids(6, 3, h.device)[1]
    with torch.inference_mode():
        skipped = block._cross(h, block.prepare_kv(ctx, layout, zero_rows=3))
        full = block._cross(h, block.prepare_kv(ctx, layout))
    assert torch.equal(skipped[:3], full[:3])
    torch.testing.assert_close(skipped, full, atol=CACHE_ATOL, rtol=0)


def test_training_layout_and_per_row_timesteps_still_work(model, conformance) -> None:
    t = load_file(str(conformance / "dit" / "case_tensor_num_parts_training.safetensors"))
    with torch.inference_mode():
        out = model(t["hidden_states"], t["timestep"], t["encoder_hidden_states"], t["num_parts"])
        cache = model.prepare_condition(t["encoder_hidden_states"], t["num_parts"])
        again = model(t["hidden_states"], t["timestep"], None, t["num_parts"], condition=cache)
    torch.testing.assert_close(out, t["output"], atol=1e-4, rtol=0)
    assert torch.equal(out, again)


def test_condition_for_another_layout_or_nonzero_rows_is_refused(model, cfg_case) -> None:
    with torch.inference_mode():
        with pytest.raises(ValueError, match="not all zeros"):
            model.prepare_condition(cfg_case["encoder_hidden_states"], 3, zero_rows=4)
        cache = model.prepare_condition(cfg_case["encoder_hidden_states"], 3)
        with pytest.raises(ValueError, match="prepared condition"):
            model(cfg_case["hidden_states"], torch.tensor(500.0), None, 2, condition=cache)


def test_denoise_projects_the_condition_once_per_generation(model, cfg_case, monkeypatch) -> None:
    calls: list[int] = []
    project = dit_module.Attention.project_kv
    monkeypatch.setattr(dit_module.Attention, "project_kv", lambda self, c: calls.append(1) or project(self, c))
    scheduler = RectifiedFlowScheduler.from_config({"num_train_timesteps": 1000, "shift": 1})
    embeds = cfg_case["encoder_hidden_states"][3:]
    latents = denoise(model, scheduler, embeds, num_tokens=16, num_steps=3, guidance_scale=7.0, seed=0)
    assert latents.shape == (3, 16, model.config.in_channels)
    assert len(calls) == sum(b.has_cross_attention for b in model.blocks)  # once per block, not per step
