"""Regenerating 1 part of 8 against a full generation of 8, on the tiny conformance
pipeline on the CPU, as a ratio measured in one run.

    .venv/bin/python bench/bench_regenerate.py [--runs 3] [--steps 10] [--out FILE.md]

Both paths run the same denoising steps over all 8 parts (the kept parts condition the
new one), so the saving comes from decoding 1 part instead of 8. Guidance is 1 (no CFG):
the tiny model holds 8 part rows, and guidance halves that. Runs are interleaved; the
medians and their ratio are printed as a markdown table and written to --out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CONFORMANCE = (REPO / ".." / "shared" / "conformance" / "partcrafter" / "pipeline").resolve()

import torch  # noqa: E402

from partcrafter_blender.inference.images import load_image  # noqa: E402
from partcrafter_blender.inference.partcrafter.geometry import GeometrySettings  # noqa: E402
from partcrafter_blender.inference.partcrafter.inpaint import regenerate_parts  # noqa: E402
from partcrafter_blender.inference.partcrafter.pipeline import PartCrafterPipeline  # noqa: E402

PARTS = 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    pipe = PartCrafterPipeline.from_pretrained(CONFORMANCE, device="cpu")
    image = load_image(CONFORMANCE / "robot_np3.png").rgba
    geometry = GeometrySettings(dense_depth=5, hierarchical_depth=6, max_expanded_coords=10**9)
    call = dict(num_inference_steps=args.steps, guidance_scale=1.0, num_tokens=64)
    original = pipe(image, PARTS, seed=0, **call, geometry=geometry)
    full_s, regen_s, full_stage, regen_stage = [], [], [], []
    for run in range(args.runs):
        start = time.perf_counter()
        out = pipe(image, PARTS, seed=run + 1, **call, geometry=geometry)
        full_s.append(time.perf_counter() - start)
        full_stage.append(out.seconds)
        start = time.perf_counter()
        regen = regenerate_parts(pipe, original.image_embeds[:1], original.latents, [3], seed=run + 1,
                                 num_inference_steps=args.steps, guidance_scale=1.0, geometry=geometry)
        regen_s.append(time.perf_counter() - start)
        regen_stage.append(regen.seconds)
        assert len(regen.meshes) == 1 and torch.equal(regen.latents[0], original.latents[0])
    full, again = statistics.median(full_s), statistics.median(regen_s)

    def stage(runs: list[dict[str, float]], name: str) -> float:
        return statistics.median(r.get(name, 0.0) for r in runs)

    lines = [
        f"Tiny conformance pipeline, CPU ({torch.get_num_threads()} threads), {PARTS} parts, {args.steps} steps, "
        f"64 tokens, guidance 1, dense depth 5 / hierarchical 6, median of {args.runs} interleaved runs:",
        "",
        "| run | denoise s | decode s | total s | × full |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| full generation of {PARTS} | {stage(full_stage, 'denoise'):.3f} | {stage(full_stage, 'decode'):.3f} | "
        f"{full:.3f} | 1.00 |",
        f"| regenerate 1 of {PARTS} | {stage(regen_stage, 'denoise'):.3f} | {stage(regen_stage, 'decode'):.3f} | "
        f"{again:.3f} | {again / full:.2f} |",
        "",
        f"Regenerating one part takes {again / full:.2f}× the time of a full generation ({full / again:.1f}× faster).",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
