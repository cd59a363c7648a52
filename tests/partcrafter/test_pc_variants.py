"""Seed variants on the PartCrafter network: K objects in one DiT batch (the num_parts tensor
path, each object with its single-run part rows) give the latents of K separate runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

from partcrafter_blender.inference.partcrafter.denoise import batch_part_rows, denoise  # noqa: E402
from partcrafter_blender.inference.partcrafter.dit import PartCrafterDiT  # noqa: E402
from partcrafter_blender.inference.partcrafter.scheduler import RectifiedFlowScheduler  # noqa: E402

# The stated tolerance for final latents (test_pc_denoise.py: guided prediction and latents);
# batched GEMMs round differently from single-object ones, nothing more.
LATENT_ATOL = 5e-4


@pytest.fixture(scope="module")
def pipe_dir(conformance: Path) -> Path:
    return conformance / "pipeline"


@pytest.fixture(scope="module")
def transformer(pipe_dir: Path) -> PartCrafterDiT:
    model = PartCrafterDiT.from_config(json.loads((pipe_dir / "transformer" / "config.json").read_text())).eval()
    model.load_state_dict(load_file(pipe_dir / "transformer" / "diffusion_pytorch_model.safetensors"), strict=True)
    return model


def _scheduler(pipe_dir: Path) -> RectifiedFlowScheduler:
    return RectifiedFlowScheduler.from_config(json.loads((pipe_dir / "scheduler" / "scheduler_config.json").read_text()))


@pytest.mark.parametrize("guidance", [7.0, 1.0])
def test_a_batch_of_seeds_gives_the_latents_of_separate_runs(pipe_dir, transformer, guidance):
    n, seeds = 2, [4, 9, 11]
    embeds = torch.randn(n, 5, transformer.config.cross_attention_dim, generator=torch.Generator().manual_seed(0))
    kwargs = dict(num_tokens=16, num_steps=3, guidance_scale=guidance)
    batched = denoise(transformer, _scheduler(pipe_dir), embeds, seed=0, variant_seeds=seeds, **kwargs)
    assert batched.shape == (len(seeds) * n, 16, transformer.config.in_channels)
    separate = [denoise(transformer, _scheduler(pipe_dir), embeds, seed=s, **kwargs) for s in seeds]
    torch.testing.assert_close(batched, torch.cat(separate), atol=LATENT_ATOL, rtol=0)
    # ...and the seeds matter: the objects differ from each other.
    assert (separate[0] - separate[1]).abs().max() > 100 * LATENT_ATOL


def test_the_part_rows_are_those_of_a_single_run():
    assert batch_part_rows(3, 1, guided=True).tolist() == [0, 1, 2, 3, 4, 5]  # quirk 3, as the integer path
    assert batch_part_rows(2, 2, guided=True).tolist() == [0, 1, 0, 1, 2, 3, 2, 3]
    assert batch_part_rows(2, 3, guided=False).tolist() == [0, 1, 0, 1, 0, 1]


def test_the_engine_batches_the_variants_into_one_result(conformance, monkeypatch):
    import numpy as np

    from partcrafter_blender.inference import GenerationRequest, run_engine
    from partcrafter_blender.inference.images import load_image
    from partcrafter_blender.inference.partcrafter.engine import PartCrafterEngine

    monkeypatch.setenv("PARTCRAFTER_WEIGHTS", str(conformance / "pipeline"))
    robot = load_image(conformance / "pipeline" / "robot_np3.png")
    options = {"device": "cpu", "num_tokens": 64, "dense_depth": 4, "hierarchical_depth": 5}

    def ask(**kwargs):
        return GenerationRequest(image=robot.rgba, num_parts=2, steps=2, options=options, **kwargs)

    events = []
    batched = run_engine(PartCrafterEngine(), ask(seed=5, variants=2), events.append)
    assert batched.variant_seeds == [5, 6]
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions)
    assert sum(e.stage == "denoise" for e in events) == 2  # one batch: two steps, not four
    for seed, parts in batched.variants():
        alone = run_engine(PartCrafterEngine(), ask(seed=seed))
        assert [p.name for p in parts] == [p.name for p in alone.parts]
        for a, b in zip(parts, alone.parts, strict=True):
            assert a.faces.shape == b.faces.shape
            np.testing.assert_allclose(a.vertices, b.vertices, atol=1e-3)
