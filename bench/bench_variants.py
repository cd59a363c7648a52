"""Seed variants on the PartCrafter network: K objects in one DiT batch vs K separate runs.

    .venv/bin/python bench/bench_variants.py [--variants 4] [--parts 2] [--steps 10] [--tokens 256]
                                            [--runs 3] [--device cpu] [--out FILE]

Uses the tiny pipeline of the conformance set (random weights, the real architecture) on the
CPU by default; --device cuda for a GPU. Only denoising is timed (decoding is per part either
way). Both ways run round-robin in one process; prints a markdown table of medians and the
speed-up, and checks that the batch gives the separate runs' latents (max |difference|).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from partcrafter_blender.inference.partcrafter.denoise import denoise  # noqa: E402
from partcrafter_blender.inference.partcrafter.dit import PartCrafterDiT  # noqa: E402
from partcrafter_blender.inference.partcrafter.scheduler import RectifiedFlowScheduler  # noqa: E402

PIPELINE = REPO.parent / "shared" / "conformance" / "partcrafter" / "pipeline"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", type=int, default=4)
    parser.add_argument("--parts", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--pipeline", type=Path, default=PIPELINE)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    device = torch.device(args.device)
    config = json.loads((args.pipeline / "transformer" / "config.json").read_text())
    model = PartCrafterDiT.from_config(config).eval()
    model.load_state_dict(load_file(args.pipeline / "transformer" / "diffusion_pytorch_model.safetensors"))
    model.to(device)
    scheduler_config = json.loads((args.pipeline / "scheduler" / "scheduler_config.json").read_text())
    embeds = torch.randn(args.parts, 16, model.config.cross_attention_dim, generator=torch.Generator().manual_seed(0))
    embeds = embeds.to(device)
    seeds = list(range(args.variants))

    def run(batched: bool) -> tuple[float, torch.Tensor]:
        kwargs = dict(num_tokens=args.tokens, num_steps=args.steps, guidance_scale=7.0)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        if batched:
            out = denoise(model, RectifiedFlowScheduler.from_config(scheduler_config), embeds, seed=0,
                          variant_seeds=seeds, **kwargs)
        else:
            out = torch.cat([denoise(model, RectifiedFlowScheduler.from_config(scheduler_config), embeds, seed=s,
                                     **kwargs) for s in seeds])
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t, out

    run(True)  # warm-up (allocator, kernels)
    separate, batched = [], []
    for _ in range(args.runs):
        seconds, a = run(False)
        separate.append(seconds)
        seconds, b = run(True)
        batched.append(seconds)
    diff = float((a - b).abs().max())
    s, b_ = statistics.median(separate), statistics.median(batched)
    text = "\n".join([
        f"Tiny conformance DiT ({config.get('num_layers', '?')} layers, width {model.proj_in.out_features}), "
        f"{args.variants} variants x {args.parts} parts, {args.tokens} tokens, {args.steps} guided steps, "
        f"device {device}, torch {torch.__version__}, median of {args.runs}.",
        "",
        "| denoising | s |",
        "| --- | ---: |",
        f"| {args.variants} separate runs | {s:.3f} |",
        f"| one batch of {args.variants} (num_parts tensor path) | {b_:.3f} |",
        "",
        f"Speed-up: {s / b_:.2f}x; max |batched - separate| latent difference {diff:.1e}.",
    ])
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
