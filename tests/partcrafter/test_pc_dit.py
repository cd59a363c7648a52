"""The DiT against the official tiny-model cases (conformance dit/): atol 1e-4 on outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

from partcrafter_blender.inference.partcrafter.dit import DiTConfig, PartCrafterDiT  # noqa: E402

DIT_ATOL = 1e-4
GUIDED_ATOL = 5e-4


@pytest.fixture(scope="module")
def tiny_dit(conformance: Path) -> PartCrafterDiT:
    torch.set_num_threads(2)
    model = PartCrafterDiT.from_config(json.loads((conformance / "dit" / "config.json").read_text())).eval()
    model.load_state_dict(load_file(str(conformance / "dit" / "diffusion_pytorch_model.safetensors")), strict=True)
    return model


def _case(conformance: Path, name: str) -> tuple[dict, dict]:
    spec = json.loads((conformance / "dit" / "cases.json").read_text())["cases"][name]
    return spec, load_file(str(conformance / "dit" / spec["file"]))


def _num_parts(spec: dict, tensors: dict):
    value = spec["call"]["attention_kwargs"]["num_parts"]
    return tensors["num_parts"] if isinstance(value, str) else int(value)


def _run(model: PartCrafterDiT, spec: dict, t: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Forward pass, recording the intermediates the case stores as debug.* tensors."""
    seen: dict[str, torch.Tensor] = {}
    hooks = [model.time_proj.register_forward_hook(lambda m, i, o: seen.__setitem__("debug.temb", o))]
    hooks.append(model.blocks[0].register_forward_pre_hook(lambda m, a: seen.__setitem__("debug.block_input_00", a[0])))
    hooks.append(model.norm_out.register_forward_hook(lambda m, i, o: seen.__setitem__("debug.norm_out", o)))
    for k, block in enumerate(model.blocks):
        hooks.append(block.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(f"debug.block_out_{k:02d}", o)))
    try:
        with torch.no_grad():
            out = model(t["hidden_states"], t["timestep"], t["encoder_hidden_states"], _num_parts(spec, t))
    finally:
        for h in hooks:
            h.remove()
    return out, seen


def test_dit_matches_official_case(tiny_dit: PartCrafterDiT, conformance: Path, dit_case: str) -> None:
    spec, t = _case(conformance, dit_case)
    out, seen = _run(tiny_dit, spec, t)
    assert out.shape == t["output"].shape
    torch.testing.assert_close(out, t["output"], atol=DIT_ATOL, rtol=0)
    debug = [k for k in t if k.startswith("debug.")]
    assert debug, "the case should carry its intermediates"
    for key in debug:
        torch.testing.assert_close(seen[key], t[key], atol=DIT_ATOL, rtol=0, msg=lambda m, key=key: f"{key}: {m}")
    if "guided_noise_pred" in t:
        uncond, cond = out.chunk(2)
        guided = uncond + spec["guidance_scale"] * (cond - uncond)
        torch.testing.assert_close(guided, t["guided_noise_pred"], atol=GUIDED_ATOL, rtol=0)


def test_cfg_part_rows_follow_batch_index(tiny_dit: PartCrafterDiT, conformance: Path) -> None:
    """Quirk 3: under CFG the conditional half uses part rows N..2N-1, not 0..N-1."""
    spec, t = _case(conformance, "three_parts_cfg")
    assert spec["part_embedding_rows_used"] == [0, 1, 2, 3, 4, 5]
    ids, layout = tiny_dit.part_ids(6, 3, torch.device("cpu"))
    assert ids.tolist() == spec["part_embedding_rows_used"] and layout.sizes == (3, 3)
    ids, layout = tiny_dit.part_ids(5, torch.tensor([2, 3]), torch.device("cpu"))
    assert ids.tolist() == [0, 1, 0, 1, 2] and layout.sizes == (2, 3)


def test_too_many_rows_for_part_embedding_is_refused(tiny_dit: PartCrafterDiT) -> None:
    n = tiny_dit.config.max_num_parts  # CFG doubles the batch: 2n rows > max_num_parts
    x = torch.zeros(2 * n, 4, tiny_dit.config.in_channels)
    ctx = torch.zeros(2 * n, 3, tiny_dit.config.cross_attention_dim)
    with pytest.raises(ValueError, match="part-embedding rows"):
        tiny_dit(x, torch.full((2 * n,), 500.0), ctx, num_parts=n)


def test_batch_not_multiple_of_parts_is_refused(tiny_dit: PartCrafterDiT) -> None:
    x = torch.zeros(4, 4, tiny_dit.config.in_channels)
    with pytest.raises(ValueError, match="not a multiple"):
        tiny_dit(x, torch.full((4,), 500.0), torch.zeros(4, 3, tiny_dit.config.cross_attention_dim), num_parts=3)


def test_token_count_equal_to_image_tokens_is_refused(tiny_dit: PartCrafterDiT) -> None:
    """Quirk 8: T + 1 == image tokens would silently change the official global cross-attention."""
    x = torch.zeros(2, 19, tiny_dit.config.in_channels)
    with pytest.raises(ValueError, match="must differ from the number of image tokens"):
        tiny_dit(x, torch.full((2,), 500.0), torch.zeros(2, 20, tiny_dit.config.cross_attention_dim), num_parts=2)


@pytest.mark.parametrize(("dtype", "limit"), [("bfloat16", 0.1), ("float16", 0.02)])
def test_reduced_precision_stays_close_to_float32(
    tiny_dit: PartCrafterDiT, conformance: Path, dtype: str, limit: float
) -> None:
    """Half precision (as on the GPU) keeps the norms in float32 and stays near the float32 result.

    Measured: bf16 0.034, fp16 0.005 on outputs up to 3.1.
    """
    spec, t = _case(conformance, "three_parts_cfg")
    half = PartCrafterDiT(tiny_dit.config).eval()
    half.load_state_dict(tiny_dit.state_dict())
    half.to(getattr(torch, dtype))
    with torch.no_grad():
        out = half(t["hidden_states"], t["timestep"], t["encoder_hidden_states"], 3)
    assert out.dtype == getattr(torch, dtype)
    err = (out.float() - t["output"]).abs().max().item()
    assert err < limit, err


def test_config_rejects_unknown_keys_and_ignores_private_ones() -> None:
    cfg = DiTConfig.from_dict({"_class_name": "PartCrafterDiTModel", "width": 64, "num_attention_heads": 4})
    assert cfg.width == 64 and cfg.global_attn_block_ids == DiTConfig().global_attn_block_ids
    with pytest.raises(ValueError, match="Unknown keys.*not_a_key"):
        DiTConfig.from_dict({"not_a_key": 1})
