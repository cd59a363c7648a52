"""PartCrafter engine benchmark at the official full size, with random weights, on one GPU.

    python bench/bench_partcrafter_gpu.py --out OUT_DIR            # CUDA, bfloat16 (the real benchmark)
    python bench/bench_partcrafter_gpu.py --cpu-tiny --out OUT_DIR # tiny configs on the CPU (tests the script)
    python bench/bench_partcrafter_gpu.py --flops-only [--out DIR]  # FLOP accounting on the meta device, no GPU
    python bench/bench_partcrafter_gpu.py --out OUT_DIR --fast-decode  # the opt-in approximate decode

--flops-only counts FLOPs (torch FlopCounterMode) of the full-size networks on the meta
device (no weights, no memory), before and after the per-generation condition cache and
the shared decoder query projection, and for the opt-in fast decode (coarse dense grid +
extra refinement levels), and converts them into ESTIMATED seconds at a
stated fraction of the H200's bf16 dense peak. Nothing is timed.

Measures, each stage separately: model construction, image encoding, seconds per
denoising step, seconds to decode one part (dense grid / refinement / marching cubes),
end to end for 4 and 8 parts at 1024 tokens and 50 steps, peak GPU memory per stage,
and achieved TFLOP/s (FLOPs counted once with torch's FlopCounterMode).

Random weights give random occupancy, whose refinement band would cover the whole
volume. To time a realistic decode, the decoder network runs in full on every query,
then its logits are replaced by those of a sphere of radius 0.4 (a part about 40 % of
the object's extent) with a sharp slope, so refinement and marching cubes see a surface
like a real part's. Writes OUT_DIR/bench_partcrafter_gpu.json and .md after every
stage, so a run cut short still leaves its numbers.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from partcrafter_blender.inference.partcrafter import geometry  # noqa: E402
from partcrafter_blender.inference.partcrafter.dit import PartCrafterDiT  # noqa: E402
from partcrafter_blender.inference.partcrafter.engine import FAST_DECODE_COARSE_LEVELS  # noqa: E402
from partcrafter_blender.inference.partcrafter.geometry import GeometrySettings  # noqa: E402
from partcrafter_blender.inference.partcrafter.image_encoder import build_image_encoder  # noqa: E402
from partcrafter_blender.inference.partcrafter.pipeline import PartCrafterPipeline  # noqa: E402
from partcrafter_blender.inference.partcrafter.preprocess import FeatureExtractorConfig  # noqa: E402
from partcrafter_blender.inference.partcrafter.scheduler import RectifiedFlowScheduler  # noqa: E402
from partcrafter_blender.inference.partcrafter.vae import TripoSGVAE  # noqa: E402

# The published configs (conformance configs/), and the tiny ones of the conformance pipeline.
FULL = {
    "transformer": {"cross_attention_dim": 1024, "enable_global_cross_attn": True, "enable_local_cross_attn": True,
                    "enable_part_embedding": True, "global_attn_block_id_range": None,
                    "global_attn_block_ids": list(range(0, 21, 2)), "in_channels": 64, "max_num_parts": 32,
                    "num_attention_heads": 16, "num_layers": 21, "width": 2048},
    "vae": {"embed_frequency": 8, "embed_include_pi": False, "embedding_type": "frequency", "in_channels": 3,
            "latent_channels": 64, "num_attention_heads": 8, "num_layers_decoder": 16, "num_layers_encoder": 8,
            "width_decoder": 1024, "width_encoder": 512},
    "image_encoder": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16},
}
TINY = {
    "transformer": dict(FULL["transformer"], cross_attention_dim=32, global_attn_block_ids=[0, 2, 4], in_channels=8,
                        max_num_parts=8, num_attention_heads=4, num_layers=5, width=64),
    "vae": dict(FULL["vae"], latent_channels=8, num_attention_heads=4, num_layers_decoder=3, num_layers_encoder=2,
                width_decoder=64, width_encoder=32),
    "image_encoder": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2},
}
DINO_COMMON = {"model_type": "dinov2", "patch_size": 14, "image_size": 518, "mlp_ratio": 4, "layerscale_value": 1.0,
               "layer_norm_eps": 1e-6, "qkv_bias": True, "use_swiglu_ffn": False, "hidden_act": "gelu",
               "num_channels": 3, "apply_layernorm": True, "use_mask_token": True}

SPHERE_RADIUS = 0.4
SPHERE_SLOPE = 2000.0  # logits per unit length: |logit| < 17 within about one depth-8 cell of the surface


class Report:
    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.data: dict[str, Any] = {"stages": {}, "errors": {}}
        out_dir.mkdir(parents=True, exist_ok=True)

    def set(self, key: str, value: Any) -> None:
        self.data["stages"][key] = value
        self.write()

    def error(self, key: str, exc: BaseException) -> None:
        self.data["errors"][key] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
        self.write()

    def write(self) -> None:
        (self.out_dir / "bench_partcrafter_gpu.json").write_text(json.dumps(self.data, indent=2, default=str))
        (self.out_dir / "bench_partcrafter_gpu.md").write_text(markdown(self.data))


def markdown(data: dict[str, Any]) -> str:
    env = data.get("environment", {})
    lines = [
        "# PartCrafter engine benchmark (random weights)",
        "",
        f"Device: {env.get('device')} ({env.get('gpu')}), dtype {env.get('dtype')}, torch {env.get('torch')}, "
        f"mode {env.get('mode')}. Tokens {env.get('num_tokens')}, steps {env.get('steps')}, "
        f"octree depths {env.get('dense_depth')}/{env.get('hierarchical_depth')}, "
        f"fast decode coarse levels {env.get('fast_decode_coarse_levels')} (0 = official decode).",
        "",
        "| stage | seconds | per unit | peak GPU GiB | TFLOP/s |",
        "|---|---|---|---|---|",
    ]
    for key, s in data["stages"].items():
        if not isinstance(s, dict) or "seconds" not in s:
            continue
        unit = s.get("per_unit", "")
        peak = s.get("peak_gib")
        tflops = s.get("tflops")
        lines.append(
            f"| {key} | {s['seconds']:.3f} | {unit} | {'' if peak is None else f'{peak:.2f}'} | "
            f"{'' if tflops is None else f'{tflops:.3g}'} |"
        )
    goals = data.get("goals")
    if goals:
        lines += ["", "Goals:"] + [f"- {k}: {v}" for k, v in goals.items()]
    if data["errors"]:
        lines += ["", "Errors:"] + [f"- {k}: {v}" for k, v in data["errors"].items()]
    return "\n".join(lines) + "\n"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gib(n: int | None) -> float | None:
    return None if n is None else n / 2**30


def peak(device: torch.device) -> int | None:
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def count_flops(fn: Callable[[], Any]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


H200_BF16_DENSE_PEAK = 989e12  # FLOP/s, NVIDIA's dense (no sparsity) bf16 figure
IMAGE_TOKENS = 257  # DINOv2 at 224 px: CLS + 16 x 16 patches


def sphere_logits(points: torch.Tensor) -> torch.Tensor:
    """The benchmark's surrogate surface: a sphere with a sharp logit slope (module doc)."""
    return (SPHERE_RADIUS - points.float().norm(dim=-1)) * SPHERE_SLOPE


class _OnePart:
    batch = 1


class SphereField:
    """Stands in for the decoder when counting queries: the engine's own dense_logits and refine
    run on the CPU against the sphere's logits, so the count follows the real band logic."""

    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(self) -> None:
        self.queries = 0

    def query_logits(self, state: Any, points: torch.Tensor, topk: bool = False) -> torch.Tensor:
        self.queries += points.shape[1]
        return sphere_logits(points)


def decode_queries(settings: GeometrySettings) -> tuple[int, int]:
    """(dense-grid queries, refinement queries) of one part whose surface is the sphere."""
    field = SphereField()
    with torch.inference_mode():
        grid = geometry.dense_logits(field, _OnePart(), settings)[0]
        dense = field.queries
        geometry.refine(field, _OnePart(), grid, settings)
    return dense, field.queries - dense


def flops_only(parts: list[int], tokens: int, steps: int, dense_depth: int, hierarchical_depth: int,
               efficiency: float, coarse_levels: int) -> tuple[str, dict[str, Any]]:
    """Markdown table + data: FLOPs of the full-size networks before/after the compute savings,
    and of the fast decode (`coarse_levels`) against the official one."""
    with torch.device("meta"):
        dit = PartCrafterDiT.from_config(FULL["transformer"]).eval()
        vae = TripoSGVAE.from_config(FULL["vae"]).eval()
    encoder = build_image_encoder({**DINO_COMMON, **FULL["image_encoder"]}, device="meta").eval()
    meta = torch.device("meta")
    cfg, batch_parts = dit.config, GeometrySettings().parts_per_batch
    rate = efficiency * H200_BF16_DENSE_PEAK
    data: dict[str, Any] = {"parts": {}}
    with torch.inference_mode():
        data["image_encoder"] = count_flops(lambda: encoder(pixel_values=torch.zeros(1, 3, 224, 224, device=meta)))
        official = GeometrySettings(dense_depth=dense_depth, hierarchical_depth=hierarchical_depth)
        dense_points, refine_points = decode_queries(official)
        fast_dense, fast_refine = decode_queries(replace(official, coarse_levels=coarse_levels))
        for n in parts:
            x = torch.zeros(2 * n, tokens, cfg.in_channels, device=meta)
            ctx = torch.zeros(2 * n, IMAGE_TOKENS, cfg.cross_attention_dim, device=meta)
            ts = torch.full((2 * n,), 500.0, device=meta)
            before_step = count_flops(lambda: dit(x, ts, ctx, n))  # K/V projected inside every step
            cache = dit.prepare_condition(ctx, n, zero_rows=n)
            cache_once = count_flops(lambda: dit.prepare_condition(ctx, n, zero_rows=n))
            after_step = count_flops(lambda: dit(x, ts, None, n, condition=cache))
            rows = min(n, batch_parts)
            state = vae.prepare_decoder(torch.zeros(rows, tokens, cfg.in_channels, device=meta))
            prepare = count_flops(lambda: vae.prepare_decoder(torch.zeros(rows, tokens, cfg.in_channels, device=meta)))
            pts = torch.zeros(1, 10_000, 3, device=meta)
            # Before: the dense-grid points were expanded to every part before the query projection.
            before_query = count_flops(lambda: vae.query_logits(state, pts.expand(rows, -1, -1))) / (rows * 10_000)
            after_query = count_flops(lambda: vae.query_logits(state, pts)) / (rows * 10_000)
            refine_query = count_flops(lambda: vae.query_logits(state.select(slice(0, 1)), pts)) / 10_000
            before_part = prepare / rows + before_query * dense_points + refine_query * refine_points
            after_part = prepare / rows + after_query * dense_points + refine_query * refine_points
            fast_part = prepare / rows + after_query * fast_dense + refine_query * fast_refine
            data["parts"][n] = {
                "step_before": before_step, "step_after": after_step, "condition_cache_once": cache_once,
                "query_before": before_query, "query_after": after_query, "refine_query": refine_query,
                "part_before": before_part, "part_after": after_part,
                "denoise_before": steps * before_step, "denoise_after": steps * after_step + cache_once,
                "decode_before": n * before_part, "decode_after": n * after_part,
                "part_fast": fast_part, "decode_fast": n * fast_part,
            }
            d = data["parts"][n]
            d["generation_before"] = data["image_encoder"] + d["denoise_before"] + d["decode_before"]
            d["generation_after"] = data["image_encoder"] + d["denoise_after"] + d["decode_after"]
    data.update(dense_points=dense_points, refine_points=refine_points, fast_dense_points=fast_dense,
                fast_refine_points=fast_refine, coarse_levels=coarse_levels, rate=rate)

    def row(name: str, before: float | None, after: float, timed: bool = True) -> str:
        ratio = "-" if before is None else f"{after / before:.3f}"
        return (f"| {name} | {'in every step' if before is None else f'{before:.3e}'} | {after:.3e} | {ratio} | "
                f"{f'{after / rate * 1e3:,.1f} ms' if timed else '-'} |")

    lines = [
        f"# PartCrafter FLOP accounting (full size, meta device; {tokens} tokens, {steps} steps, guidance on, "
        f"octree depths {dense_depth}/{hierarchical_depth})",
        "",
        f"Counted with torch.utils.flop_counter.FlopCounterMode (matmuls and attention only). The time column is "
        f"an ESTIMATE, not a measurement: FLOPs / ({efficiency:.0%} of the H200 bf16 dense peak "
        f"{H200_BF16_DENSE_PEAK / 1e12:.0f} TFLOP/s = {rate / 1e12:.0f} TFLOP/s). 'before' = condition K/V "
        "projected in every step and attended by every row, dense-grid queries projected once per part; 'after' = "
        "this engine.",
        "",
        f"Decoding per part: {dense_points:,} dense-grid queries + {refine_points:,} refinement queries (the "
        f"benchmark's sphere, r = {SPHERE_RADIUS}; a real part's band differs), parts decoded {batch_parts} per batch; "
        "the 50,000 top-k re-queries of part 0 (0.3 %) are left out. "
        f"Image encoder (DINOv2-large, once): {data['image_encoder']:.3e} FLOPs.",
        "",
        "| quantity | FLOPs before | FLOPs after | after / before | est. time after |",
        "|---|---|---|---|---|",
    ]
    for n, d in data["parts"].items():
        lines += [
            row(f"{n} parts: one guided DiT step ({2 * n} rows)", d["step_before"], d["step_after"]),
            row(f"{n} parts: condition cache (once per generation)", None, d["condition_cache_once"]),
            row(f"{n} parts: decoder, one dense-grid query of one part", d["query_before"], d["query_after"], False),
            row(f"{n} parts: decode one part (dense + refinement)", d["part_before"], d["part_after"]),
            row(f"{n} parts: denoising, {steps} steps", d["denoise_before"], d["denoise_after"]),
            row(f"{n} parts: decoding, all parts", d["decode_before"], d["decode_after"]),
            row(f"{n} parts: generation (encoder + denoising + decoding)", d["generation_before"],
                d["generation_after"]),
        ]
    lines.append("")
    for n, d in data["parts"].items():
        den, dec, fast = d["denoise_after"] / rate, d["decode_after"] / rate, d["decode_fast"] / rate
        lines.append(f"- {n} parts, estimate: denoising {den:.2f} s, decoding {dec:.2f} s "
                     f"(decode/denoise {dec / den:.2f}), total {d['generation_after'] / rate:.2f} s of arithmetic; "
                     f"with fast_decode decoding {fast:.2f} s (decode/denoise {fast / den:.2f}).")
    lines += [
        "",
        f"Fast decode (opt-in `fast_decode`, coarse_levels={coarse_levels}, an approximation): dense grid at depth "
        f"{dense_depth - coarse_levels} ({fast_dense:,} queries) + {fast_refine:,} refinement queries over "
        f"{hierarchical_depth - dense_depth + coarse_levels} levels, against the official {dense_points:,} + "
        f"{refine_points:,} (same sphere).",
        "",
        "| quantity | FLOPs official | FLOPs fast_decode | fast / official | est. time fast |",
        "|---|---|---|---|---|",
    ]
    for n, d in data["parts"].items():
        lines += [
            f"| {n} parts: decode one part | {d['part_after']:.3e} | {d['part_fast']:.3e} | "
            f"{d['part_fast'] / d['part_after']:.3f} | {d['part_fast'] / rate * 1e3:,.1f} ms |",
            f"| {n} parts: decoding, all parts | {d['decode_after']:.3e} | {d['decode_fast']:.3e} | "
            f"{d['decode_fast'] / d['decode_after']:.3f} | {d['decode_fast'] / rate * 1e3:,.1f} ms |",
        ]
    return "\n".join(lines) + "\n", data


def build(sizes: dict[str, Any], device: torch.device, dtype: torch.dtype) -> PartCrafterPipeline:
    """Random weights created directly on the device (no CPU initialisation of 1.4B parameters)."""
    with torch.device(device):
        transformer = PartCrafterDiT.from_config(sizes["transformer"])
        vae = TripoSGVAE.from_config(sizes["vae"])
    encoder = build_image_encoder({**DINO_COMMON, **sizes["image_encoder"]}, device=device)
    for module in (transformer, vae, encoder):
        module.to(dtype).eval().requires_grad_(False)
    scheduler = RectifiedFlowScheduler.from_config({"num_train_timesteps": 1000, "shift": 1, "use_dynamic_shifting": False})
    return PartCrafterPipeline(transformer, vae, encoder, scheduler, FeatureExtractorConfig(), device, dtype)


def synthetic_image() -> np.ndarray:
    """An RGBA drawing (two blobs on transparency) standing in for a user's image."""
    h, w = 512, 384
    y, x = np.mgrid[0:h, 0:w]
    rgba = np.zeros((h, w, 4), np.uint8)
    body = ((x - 190) / 120) ** 2 + ((y - 300) / 160) ** 2 < 1
    head = ((x - 190) / 70) ** 2 + ((y - 110) / 70) ** 2 < 1
    rgba[body] = (200, 80, 60, 255)
    rgba[head] = (60, 120, 200, 255)
    return rgba


class DecodeProbe:
    """Times the geometry sub-stages and replaces random logits by a sphere's (see module doc)."""

    def __init__(self, vae: TripoSGVAE, device: torch.device) -> None:
        self.device = device
        self.seconds = {"dense": 0.0, "refine": 0.0, "marching_cubes": 0.0}
        self.queries = 0
        self.parts_meshed = 0
        self._originals: dict[str, Any] = {}
        real = vae.query_logits

        def surrogate(state, points, topk=False):
            out = real(state, points, topk=topk)  # the full network cost, every query
            self.queries += out.numel()
            return sphere_logits(points).expand_as(out).to(out.dtype)

        vae.query_logits = surrogate
        for name, key in (("dense_logits", "dense"), ("refine", "refine"), ("grid_to_mesh", "marching_cubes")):
            self._originals[name] = getattr(geometry, name)
            setattr(geometry, name, self._timed(self._originals[name], key))

    def _timed(self, fn: Callable[..., Any], key: str) -> Callable[..., Any]:
        def wrapper(*args, **kwargs):
            sync(self.device)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                sync(self.device)
                self.seconds[key] += time.perf_counter() - start

        return wrapper

    def reset(self) -> None:
        self.seconds = dict.fromkeys(self.seconds, 0.0)
        self.queries = 0


def run_end_to_end(pipe, probe, report, key, num_parts, args, flops_per_step, flops_per_query) -> None:
    probe.reset()
    steps_done: list[float] = []

    def on_progress(event):
        if event.stage == "denoise":
            steps_done.append(time.perf_counter())

    sync(pipe.device)
    start = time.perf_counter()
    out = pipe(
        synthetic_image(), num_parts, seed=0, num_inference_steps=args.steps, guidance_scale=7.0,
        num_tokens=args.tokens, geometry=GeometrySettings(dense_depth=args.dense_depth,
                                                          hierarchical_depth=args.hierarchical_depth,
                                                          coarse_levels=args.coarse_levels,
                                                          topk_first_chunk=not args.coarse_levels),
        progress=on_progress,
    )
    total = time.perf_counter() - start
    seconds = out.seconds
    peaks = out.peak_gpu_bytes
    net_seconds = probe.seconds["dense"] + probe.seconds["refine"]
    failures = [f"part {f.index}: {f.reason}" for f in out.failures]
    report.set(f"{key}.encode", {"seconds": seconds["encode"], "peak_gib": gib(peaks.get("encode"))})
    report.set(f"{key}.denoise", {
        "seconds": seconds["denoise"], "per_unit": f"{seconds['denoise'] / args.steps:.4f} s/step",
        "seconds_per_step": seconds["denoise"] / args.steps, "peak_gib": gib(peaks.get("denoise")),
        "tflops": flops_per_step * args.steps / seconds["denoise"] / 1e12 if flops_per_step else None,
    })
    report.set(f"{key}.decode", {
        "seconds": seconds["decode"], "per_unit": f"{seconds['decode'] / num_parts:.3f} s/part",
        "seconds_per_part": seconds["decode"] / num_parts, "peak_gib": gib(peaks.get("decode")),
        "queries": probe.queries,
        "tflops": flops_per_query * probe.queries / net_seconds / 1e12 if flops_per_query and net_seconds else None,
        "failed_parts": failures,
    })
    for sub in ("dense", "refine", "marching_cubes"):
        report.set(f"{key}.decode.{sub}", {"seconds": probe.seconds[sub],
                                           "per_unit": f"{probe.seconds[sub] / num_parts:.3f} s/part"})
    report.set(f"{key}.total", {"seconds": total, "peak_gib": gib(peaks.get("total")),
                                "vertices": [0 if m is None else len(m.vertices) for m in out.meshes]})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="folder for bench_partcrafter_gpu.{json,md} (flops_*.md)")
    parser.add_argument("--cpu-tiny", action="store_true", help="tiny configs on the CPU, to test this script")
    parser.add_argument("--flops-only", action="store_true", help="FLOP accounting on the meta device, no GPU")
    parser.add_argument("--efficiency", type=float, default=0.5, help="--flops-only: assumed share of bf16 peak")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    parser.add_argument("--parts", default="4,8", help="part counts for the end-to-end runs")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--tokens", type=int, default=None)
    parser.add_argument("--dense-depth", type=int, default=None)
    parser.add_argument("--hierarchical-depth", type=int, default=None)
    parser.add_argument("--fast-decode", action="store_true",
                        help="end-to-end runs use the opt-in fast decode (--flops-only always reports both)")
    parser.add_argument("--coarse-levels", type=int, default=FAST_DECODE_COARSE_LEVELS,
                        help="levels the fast decode's dense grid is coarser (default: the engine's)")
    parser.add_argument("--time-budget", type=float, default=420.0, help="skip later runs past this many seconds")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.flops_only:
        text, data = flops_only([int(p) for p in args.parts.split(",") if p], args.tokens or 1024, args.steps or 50,
                                args.dense_depth or 8, args.hierarchical_depth or 9, args.efficiency,
                                args.coarse_levels)
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "flops_partcrafter.md").write_text(text)
            (args.out / "flops_partcrafter.json").write_text(json.dumps(data, indent=2, default=str))
        print(text)
        return 0
    if args.out is None:
        parser.error("--out is required unless --flops-only")

    if args.cpu_tiny:
        device, dtype, sizes = torch.device("cpu"), torch.float32, TINY
        defaults = {"steps": 4, "tokens": 64, "dense_depth": 5, "hierarchical_depth": 6, "parts": "2,4"}
        if args.parts == "4,8":
            args.parts = defaults["parts"]
    else:
        if not torch.cuda.is_available():
            print("No CUDA GPU: this benchmark measures the GPU engine at full size. "
                  "Use --cpu-tiny to run the script itself on the CPU.")
            return 2
        device, dtype, sizes = torch.device("cuda"), getattr(torch, args.dtype), FULL
        defaults = {"steps": 50, "tokens": 1024, "dense_depth": 8, "hierarchical_depth": 9}
    for name in ("steps", "tokens", "dense_depth", "hierarchical_depth"):
        if getattr(args, name) is None:
            setattr(args, name, defaults[name])
    parts = [int(p) for p in args.parts.split(",") if p]
    args.coarse_levels = min(args.coarse_levels, args.dense_depth - 1) if args.fast_decode else 0

    report = Report(args.out)
    report.data["environment"] = {
        "mode": "cpu-tiny" if args.cpu_tiny else "full-size", "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "cuda": torch.version.cuda, "dtype": str(dtype).removeprefix("torch."),
        "python": platform.python_version(), "num_tokens": args.tokens, "steps": args.steps,
        "dense_depth": args.dense_depth, "hierarchical_depth": args.hierarchical_depth,
        "fast_decode_coarse_levels": args.coarse_levels,
        "decode_surface": f"sphere r={SPHERE_RADIUS}, slope {SPHERE_SLOPE}/unit (network still runs on every query)",
    }
    report.write()

    reset_peak(device)
    sync(device)
    t0 = time.perf_counter()
    pipe = build(sizes, device, dtype)
    sync(device)
    params = {name: sum(p.numel() for p in m.parameters())
              for name, m in (("transformer", pipe.transformer), ("vae", pipe.vae), ("image_encoder", pipe.image_encoder))}
    report.set("build", {"seconds": time.perf_counter() - t0, "peak_gib": gib(peak(device)), "parameters": params})

    probe = DecodeProbe(pipe.vae, device)

    # Warm-up: kernels, allocator, cuDNN/cuBLAS heuristics (not reported as a stage).
    try:
        t0 = time.perf_counter()
        pipe(synthetic_image(), 2, seed=0, num_inference_steps=2, guidance_scale=7.0, num_tokens=args.tokens,
             geometry=GeometrySettings(dense_depth=min(5, args.dense_depth), hierarchical_depth=min(6, args.hierarchical_depth)))
        report.data["warmup_seconds"] = time.perf_counter() - t0
    except Exception as exc:  # keep measuring what still works
        report.error("warmup", exc)

    # FLOPs: one guided denoising step per part count, and one decoder query chunk.
    flops_per_step: dict[int, int] = {}
    flops_per_query = 0
    try:
        cfg = pipe.transformer.config
        with torch.no_grad():
            for n in parts:
                x = torch.randn(2 * n, args.tokens, cfg.in_channels, device=device, dtype=dtype)
                ctx = torch.randn(2 * n, IMAGE_TOKENS, cfg.cross_attention_dim, device=device, dtype=dtype)
                ctx[:n] = 0  # the unconditional half, as the sampling loop builds it
                ts = torch.full((2 * n,), 500.0, device=device)
                cond = pipe.transformer.prepare_condition(ctx, n, zero_rows=n)  # once per generation
                flops_per_step[n] = count_flops(lambda: pipe.transformer(x, ts, None, n, condition=cond))
            latents = torch.randn(1, args.tokens, pipe.vae.config.latent_channels, device=device, dtype=dtype)
            state = pipe.vae.prepare_decoder(latents)
            pts = torch.rand(1, 10_000, 3, device=device) * 2 - 1
            real_query = type(pipe.vae).query_logits
            flops_per_query = count_flops(lambda: real_query(pipe.vae, state, pts)) // 10_000
        report.data["flops"] = {"per_denoising_step": flops_per_step, "per_decoder_query": flops_per_query}
    except Exception as exc:
        report.error("flops", exc)

    for n in parts:
        if time.perf_counter() - started > args.time_budget:
            report.data["errors"][f"e2e_{n}_parts"] = "skipped: time budget spent"
            report.write()
            continue
        try:
            run_end_to_end(pipe, probe, report, f"e2e_{n}_parts", n, args, flops_per_step.get(n, 0), flops_per_query)
        except Exception as exc:
            report.error(f"e2e_{n}_parts", exc)
        if device.type == "cuda":
            torch.cuda.empty_cache()

    if not args.cpu_tiny and time.perf_counter() - started < args.time_budget:
        try:  # small-card mode: only the active component on the GPU
            for module in (pipe.transformer, pipe.vae, pipe.image_encoder):
                module.to("cpu")
            torch.cuda.empty_cache()
            pipe.offload = "model"
            short = argparse.Namespace(**{**vars(args), "steps": min(10, args.steps)})
            run_end_to_end(pipe, probe, report, "offload_model_4_parts_10_steps", 4, short,
                           flops_per_step.get(4, 0), flops_per_query)
        except Exception as exc:
            report.error("offload_model_4_parts", exc)

    stages = report.data["stages"]
    if "e2e_4_parts.total" in stages and not args.cpu_tiny:
        e2e = stages["e2e_4_parts.total"]["seconds"]
        dec, den = stages["e2e_4_parts.decode"]["seconds"], stages["e2e_4_parts.denoise"]["seconds"]
        report.data["goals"] = {
            "end to end, 4 parts, under 10 s": f"{e2e:.2f} s -> {'met' if e2e < 10 else 'NOT met'}",
            "decoding all parts no slower than denoising": f"decode {dec:.2f} s vs denoise {den:.2f} s -> "
            f"{'met' if dec <= den else 'NOT met'}",
        }
    report.data["bench_seconds"] = time.perf_counter() - started
    report.write()
    print((args.out / "bench_partcrafter_gpu.md").read_text())
    return 0 if not report.data["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
