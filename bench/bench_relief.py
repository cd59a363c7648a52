"""Relief engine speed: median seconds per stage at 512^2, 1024^2 and 2048^2, 8 parts,
plus how quickly a cancel takes effect. Prints markdown tables.

    .venv/bin/python bench/bench_relief.py [--repeats 5] [--image PATH]

Goal (issue 3): at most 1.0 s end to end for 1024^2 at 8 parts on a 2-core machine, and
cost growing no worse than linearly with the pixel count (a 4x pixel step costs <= 4x).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from partcrafter_blender.inference.contract import CancelToken, GenerationRequest
from partcrafter_blender.inference.errors import Cancelled
from partcrafter_blender.inference.images import load_image
from partcrafter_blender.inference.relief.engine import ReliefEngine

DEFAULT_IMAGE = Path(__file__).resolve().parents[1] / ".." / "shared" / "images" / "np10_b07dbghsn7.png"
SIDES = (512, 1024, 2048)
STAGES = ("matting", "segmentation", "meshing", "texture")


def square(rgba: np.ndarray, side: int) -> np.ndarray:
    return np.asarray(Image.fromarray(rgba).resize((side, side), Image.Resampling.LANCZOS), dtype=np.uint8)


def time_runs(rgba: np.ndarray, parts: int, repeats: int) -> dict[str, float]:
    engine = ReliefEngine()
    request = GenerationRequest(image=rgba, num_parts=parts)
    engine.generate(request)  # warm-up: imports, allocator
    totals, stages = [], {s: [] for s in STAGES}
    for _ in range(repeats):
        t = time.perf_counter()
        result = engine.generate(request)
        totals.append(time.perf_counter() - t)
        for s in STAGES:
            stages[s].append(result.metadata["stage_seconds"][s])
    out = {s: statistics.median(v) for s, v in stages.items()}
    out["total"] = statistics.median(totals)
    return out


def cancel_latency(rgba: np.ndarray, delays: list[float]) -> list[float]:
    """Seconds from cancel() to the engine raising Cancelled, cancelling at each delay."""
    latencies = []
    for delay in delays:
        token = CancelToken()
        stopped: dict[str, float] = {}

        def work() -> None:
            try:
                ReliefEngine().generate(GenerationRequest(image=rgba, num_parts=8), cancel=token)
            except Cancelled:
                stopped["at"] = time.perf_counter()

        thread = threading.Thread(target=work)
        thread.start()
        time.sleep(delay)
        cancelled_at = time.perf_counter()
        token.cancel()
        thread.join()
        if "at" in stopped:  # else it had already finished
            latencies.append(stopped["at"] - cancelled_at)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--parts", type=int, default=8)
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    args = parser.parse_args()

    source = load_image(args.image).rgba
    rows = {side: time_runs(square(source, side), args.parts, args.repeats) for side in SIDES}
    base = rows[1024]["total"]
    print(f"Relief engine, {args.image.name}, {args.parts} parts, median of {args.repeats}\n")
    print("| image | matting s | segmentation s | meshing s | texture s | total s | total / 1024^2 | pixels / 1024^2 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for side, r in rows.items():
        print(
            f"| {side}^2 | {r['matting']:.3f} | {r['segmentation']:.3f} | {r['meshing']:.3f} | {r['texture']:.3f} | "
            f"{r['total']:.3f} | {r['total'] / base:.2f} | {(side / 1024) ** 2:.2f} |"
        )
    latencies = cancel_latency(square(source, 1024), [0.02 * k for k in range(1, 16)])
    if latencies:
        print(
            f"\nCancel latency over {len(latencies)} mid-run cancels: "
            f"median {statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms (goal <= 200 ms)"
        )


if __name__ == "__main__":
    main()
