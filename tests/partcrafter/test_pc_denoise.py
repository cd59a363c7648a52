"""The sampling loop end to end against conformance pipeline/: image in, final latents out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from safetensors.torch import load_file  # noqa: E402

from partcrafter_blender.inference.contract import CancelToken  # noqa: E402
from partcrafter_blender.inference.errors import Cancelled  # noqa: E402
from partcrafter_blender.inference.partcrafter.denoise import denoise, initial_noise  # noqa: E402
from partcrafter_blender.inference.partcrafter.dit import PartCrafterDiT  # noqa: E402
from partcrafter_blender.inference.partcrafter.image_encoder import encode_image, load_image_encoder  # noqa: E402
from partcrafter_blender.inference.partcrafter.preprocess import (  # noqa: E402
    FeatureExtractorConfig,
    condition_image,
    pixel_values,
)
from partcrafter_blender.inference.partcrafter.scheduler import RectifiedFlowScheduler  # noqa: E402

EMBED_ATOL = 1e-4
RAW_ATOL = 1e-4  # DiT output
LATENT_ATOL = 5e-4  # guided prediction and latents


@pytest.fixture(scope="module")
def pipe_dir(conformance: Path) -> Path:
    torch.set_num_threads(2)
    return conformance / "pipeline"


@pytest.fixture(scope="module")
def ref(pipe_dir: Path) -> dict[str, torch.Tensor]:
    tensors = load_file(str(pipe_dir / "case_pipeline.safetensors"))
    return {k: v for k, v in tensors.items() if not k.startswith(("geometry.", "mesh."))}


@pytest.fixture(scope="module")
def call(pipe_dir: Path) -> dict:
    return json.loads((pipe_dir / "cases.json").read_text())["call"]["params"]


@pytest.fixture(scope="module")
def transformer(pipe_dir: Path) -> PartCrafterDiT:
    model = PartCrafterDiT.from_config(json.loads((pipe_dir / "transformer" / "config.json").read_text())).eval()
    model.load_state_dict(load_file(str(pipe_dir / "transformer" / "diffusion_pytorch_model.safetensors")), strict=True)
    return model


def _scheduler(pipe_dir: Path) -> RectifiedFlowScheduler:
    return RectifiedFlowScheduler.from_config(json.loads((pipe_dir / "scheduler" / "scheduler_config.json").read_text()))


@pytest.fixture(scope="module")
def image_embeds(pipe_dir: Path, call: dict) -> torch.Tensor:
    """Image file -> engine RGBA -> route -> pixel_values -> tiny DINOv2, one row per part."""
    rgb = np.asarray(Image.open(pipe_dir / "robot_np3.png").convert("RGB"))
    cond = condition_image(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]))
    assert cond.route == "opaque"
    fe = FeatureExtractorConfig.from_file(pipe_dir / "feature_extractor_dinov2" / "preprocessor_config.json")
    encoder = load_image_encoder(pipe_dir / "image_encoder_dinov2")
    embeds = encode_image(encoder, torch.from_numpy(pixel_values(cond.rgb, fe)))
    return embeds.expand(call["num_parts"], -1, -1)


def test_image_embeddings_match(image_embeds: torch.Tensor, ref) -> None:
    torch.testing.assert_close(image_embeds, ref["image_embeds"], atol=EMBED_ATOL, rtol=0)


def test_initial_noise_is_exact(ref, call: dict) -> None:
    n, t, c = ref["initial_noise"].shape
    assert (n, t) == (call["num_parts"], call["num_tokens"])
    assert torch.equal(initial_noise(n, t, c, call["seed"]), ref["initial_noise"])


def test_every_step_matches_the_official_pipeline(pipe_dir: Path, transformer, image_embeds, ref, call: dict) -> None:
    traces: dict[int, dict[str, torch.Tensor]] = {}
    progress: list[tuple[int, int]] = []
    latents = denoise(
        transformer,
        _scheduler(pipe_dir),
        image_embeds,
        num_tokens=call["num_tokens"],
        num_steps=call["num_inference_steps"],
        guidance_scale=call["guidance_scale"],
        seed=call["seed"],
        progress=lambda done, total: progress.append((done, total)),
        trace=lambda i, tensors: traces.__setitem__(i, tensors),
    )
    steps = call["num_inference_steps"]
    assert progress == [(i + 1, steps) for i in range(steps)]
    assert sorted(traces) == list(range(steps))
    tolerances = {
        "latents_in": LATENT_ATOL,
        "noise_pred_raw": RAW_ATOL,
        "noise_pred_guided": LATENT_ATOL,
        "latents_out": LATENT_ATOL,
    }
    for i in range(steps):
        assert torch.equal(traces[i]["timestep"], ref[f"step{i}.timestep"])
        for key, atol in tolerances.items():
            torch.testing.assert_close(
                traces[i][key], ref[f"step{i}.{key}"], atol=atol, rtol=0, msg=lambda m, i=i, key=key: f"step{i}.{key}: {m}"
            )
    assert latents.dtype == torch.float32
    torch.testing.assert_close(latents, ref["final_latents"], atol=LATENT_ATOL, rtol=0)


def test_cancellation_between_steps(pipe_dir: Path, transformer, image_embeds, call: dict) -> None:
    token = CancelToken()
    done: list[int] = []

    def progress(step: int, total: int) -> None:
        done.append(step)
        if step == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        denoise(transformer, _scheduler(pipe_dir), image_embeds, num_tokens=16, num_steps=4,
                guidance_scale=7.0, seed=0, progress=progress, cancel=token)
    assert done == [1, 2]
    with pytest.raises(Cancelled):
        denoise(transformer, _scheduler(pipe_dir), image_embeds, num_tokens=16, num_steps=4,
                guidance_scale=7.0, seed=0, progress=lambda s, t: done.append(s), should_stop=lambda: True)
    assert done == [1, 2]  # stopped before the first step


def test_without_guidance_only_the_conditional_batch_runs(pipe_dir: Path, transformer, image_embeds) -> None:
    batches: list[int] = []
    hook = transformer.proj_in.register_forward_hook(lambda m, i, o: batches.append(o.shape[0]))
    try:
        latents = denoise(transformer, _scheduler(pipe_dir), image_embeds, num_tokens=16, num_steps=2,
                          guidance_scale=1.0, seed=3, trace=None)
    finally:
        hook.remove()
    assert batches == [3, 3] and latents.shape == (3, 16, 8)
