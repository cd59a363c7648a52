"""Polygon budget speed: our decimation (fast-simplification + the closed/oriented check and
sliver clean-up, inference/decimate.py) vs Blender's Decimate modifier (collapse) on the same mesh.

    .venv/bin/python bench/bench_decimate.py [--grid 200] [--reduction 10] [--runs 3] [--out FILE]

A marching-cubes part (the kind the PartCrafter engine reduces) goes through both, round-robin,
in one run of the bpy module; only the reduction is timed (Blender: evaluating the modifier,
mesh already built). Prints a markdown table: seconds per million input triangles, the ratio,
and each output's triangle count, closedness and worst triangle quality.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import bpy  # noqa: E402
from skimage import measure  # noqa: E402

from partcrafter_blender.inference.decimate import decimate, is_closed_and_oriented, triangle_quality  # noqa: E402


def marching_cubes_part(n: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(-1.0, 1.0, n)
    X, Y, Z = np.meshgrid(x, x, x, indexing="ij")
    field = np.sqrt((X / 0.8) ** 2 + (Y / 0.5) ** 2 + (Z / 0.6) ** 2) - 1.0 + 0.08 * np.sin(6 * X) * np.cos(5 * Y)
    vertices, faces, _, _ = measure.marching_cubes(field, 0.0, spacing=(x[1] - x[0],) * 3)
    return (vertices - 1.0).astype(np.float32), faces.astype(np.int32)


def blender_object(vertices: np.ndarray, faces: np.ndarray, ratio: float) -> bpy.types.Object:
    mesh = bpy.data.meshes.new("part")
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", vertices.reshape(-1))
    mesh.loops.add(faces.size)
    mesh.loops.foreach_set("vertex_index", faces.reshape(-1))
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    mesh.update()
    obj = bpy.data.objects.new("part", mesh)
    bpy.context.scene.collection.objects.link(obj)
    modifier = obj.modifiers.new("decimate", "DECIMATE")
    modifier.decimate_type = "COLLAPSE"
    modifier.ratio = ratio
    modifier.show_viewport = False
    return obj


def blender_decimate(obj: bpy.types.Object) -> tuple[float, np.ndarray, np.ndarray]:
    t = time.perf_counter()
    obj.modifiers["decimate"].show_viewport = True
    depsgraph = bpy.context.evaluated_depsgraph_get()  # evaluates the modifier
    depsgraph.update()
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    mesh.calc_loop_triangles()
    seconds = time.perf_counter() - t
    tris = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int32)
    mesh.loop_triangles.foreach_get("vertices", tris)
    co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", co)
    evaluated.to_mesh_clear()
    obj.modifiers["decimate"].show_viewport = False
    bpy.context.evaluated_depsgraph_get().update()
    return seconds, co.reshape(-1, 3), tris.reshape(-1, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", type=int, default=200, help="marching-cubes grid size (200: ~230k triangles)")
    parser.add_argument("--reduction", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    vertices, faces = marching_cubes_part(args.grid)
    target = int(len(faces) / args.reduction)
    obj = blender_object(vertices, faces, 1.0 / args.reduction)
    ours, theirs = [], []
    for _ in range(args.runs):  # round-robin, so both see the same machine load
        t = time.perf_counter()
        reduced = decimate(vertices, faces, target)
        ours.append(time.perf_counter() - t)
        seconds, bv, bf = blender_decimate(obj)
        theirs.append(seconds)
    million = len(faces) / 1e6
    ours_s, theirs_s = statistics.median(ours) / million, statistics.median(theirs) / million

    def row(name: str, seconds: float, v: np.ndarray, f: np.ndarray) -> str:
        closed = "yes" if is_closed_and_oriented(f) else "no"
        return f"| {name} | {seconds:.3f} | {len(f):,} | {closed} | {triangle_quality(v, f).min():.3f} |"

    lines = [
        f"Input: marching-cubes part, {len(faces):,} triangles; target {target:,} ({args.reduction:g}x fewer); "
        f"median of {args.runs}, bpy {bpy.app.version_string}.",
        "",
        "| reduction | s per million input triangles | triangles out | closed and oriented | min quality |",
        "| --- | --- | --- | --- | --- |",
        row("ours (fast-simplification + checks + sliver clean-up)", ours_s, reduced.vertices, reduced.faces),
        row("Blender Decimate modifier (collapse)", theirs_s, bv, bf),
        "",
        f"Ratio: ours takes {ours_s / theirs_s:.2f}x the time of Blender's Decimate "
        f"({theirs_s / ours_s:.2f}x {'faster' if ours_s < theirs_s else 'slower'}).",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
