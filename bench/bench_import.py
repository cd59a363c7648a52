"""Import speed: our scene builder vs Blender's glTF importer vs mesh.from_pydata.

    .venv/bin/python bench/bench_import.py [--parts 16] [--triangles 80000] [--runs 5] [--out bench_import.md]

The same closed meshes (UV spheres, generated with numpy) go through all three paths in
one run of the bpy module, round-robin; the scene is reset before every run and only the
import call is timed. Prints a markdown table of medians and ratios (goals: >= 1.5x faster than
the glTF importer, >= 4x faster than from_pydata) and writes it to --out.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import bpy  # noqa: E402

from partcrafter_blender.inference import PartMesh  # noqa: E402
from partcrafter_blender.inference.glb import write_glb  # noqa: E402
from partcrafter_blender.scene.build import build_parts  # noqa: E402

GOAL_VS_GLTF = 1.5
GOAL_VS_PYDATA = 4.0


def uv_sphere(segments: int, rings: int) -> tuple[np.ndarray, np.ndarray]:
    """Closed UV sphere: `rings - 1` latitude circles of `segments` vertices plus two poles,
    2 * segments * (rings - 1) triangles, outward winding."""
    theta = np.linspace(0.0, np.pi, rings + 1)[1:-1]  # latitudes, poles excluded
    phi = np.linspace(0.0, 2.0 * np.pi, segments, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    ring_verts = np.stack((np.sin(t) * np.cos(p), np.cos(t), np.sin(t) * np.sin(p)), axis=-1).reshape(-1, 3)
    verts = np.vstack(([0.0, 1.0, 0.0], ring_verts, [0.0, -1.0, 0.0])).astype(np.float32)
    south = len(verts) - 1
    nxt = (np.arange(segments) + 1) % segments
    cur = np.arange(segments)

    def ring(k: int) -> int:
        return 1 + k * segments

    faces = [np.column_stack((np.zeros(segments, int), ring(0) + nxt, ring(0) + cur))]
    for k in range(rings - 2):
        a, b = ring(k) + cur, ring(k) + nxt
        c, d = ring(k + 1) + cur, ring(k + 1) + nxt
        faces += [np.column_stack((a, b, d)), np.column_stack((a, d, c))]
    last = ring(rings - 2)
    faces.append(np.column_stack((np.full(segments, south), last + cur, last + nxt)))
    return verts, np.vstack(faces).astype(np.int32)


def make_parts(count: int, triangles: int, seed: int = 0) -> list[PartMesh]:
    """`count` spheres of about `triangles` triangles each, placed and sized differently, inside [-1, 1]^3."""
    segments = max(8, int(round(np.sqrt(triangles / 2.0))))
    rings = max(3, int(round(triangles / (2.0 * segments))) + 1)
    verts, faces = uv_sphere(segments, rings)
    rng = np.random.default_rng(seed)
    parts = []
    for i in range(count):
        radius = rng.uniform(0.1, 0.25)
        center = rng.uniform(-0.7, 0.7, size=3)
        color = (*rng.uniform(0.2, 0.9, size=3).tolist(), 1.0)
        parts.append(PartMesh(f"part_{i:02d}", verts * radius + center, faces.copy(), color))
    return parts


def reset_scene() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)


def scene_counts() -> tuple[int, int, int]:
    meshes = [o.data for o in bpy.context.scene.objects if o.type == "MESH"]
    return len(meshes), sum(len(m.vertices) for m in meshes), sum(len(m.polygons) for m in meshes)


def import_ours(parts: list[PartMesh], _glb: Path, _lists: list) -> None:
    build_parts(parts, collection_name="bench")


def import_gltf(_parts: list[PartMesh], glb: Path, _lists: list) -> None:
    # The importer logs every mesh to stdout; keep it out of the table (still formatted,
    # so it does the same work, minus the terminal).
    with contextlib.redirect_stdout(io.StringIO()):
        result = bpy.ops.import_scene.gltf(filepath=str(glb))
    if result != {"FINISHED"}:
        raise RuntimeError(f"glTF import failed: {result}")


def import_pydata(parts: list[PartMesh], _glb: Path, lists: list) -> None:
    """The usual add-on route: Python lists into from_pydata, one object per part."""
    scene_collection = bpy.context.scene.collection
    for part, (verts, faces) in zip(parts, lists, strict=True):
        mesh = bpy.data.meshes.new(part.name)
        mesh.from_pydata(verts, [], faces)
        mesh.update()
        scene_collection.objects.link(bpy.data.objects.new(part.name, mesh))


Importer = Callable[[list[PartMesh], Path, list], None]


def measure(methods: dict[str, Importer], parts: list[PartMesh], glb: Path, lists: list, runs: int):
    """Wall-clock and process CPU times per method and the scene counts each made. Runs go round-robin over the methods,
    so a burst of load on a shared machine hits all of them alike; the first round only warms
    caches (and loads the glTF add-on) and is dropped."""
    wall: dict[str, list[float]] = {label: [] for label in methods}
    cpu: dict[str, list[float]] = {label: [] for label in methods}
    counts: dict[str, tuple[int, int, int]] = {}
    for round_ in range(runs + 1):
        for label, fn in methods.items():
            reset_scene()
            start, start_cpu = time.perf_counter(), time.process_time()
            fn(parts, glb, lists)
            if round_:
                wall[label].append(time.perf_counter() - start)
                cpu[label].append(time.process_time() - start_cpu)
            counts[label] = scene_counts()
    return wall, cpu, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, default=16)
    parser.add_argument("--triangles", type=int, default=80_000, help="triangles per part")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args(argv)
    if args.runs < 5:
        parser.error("--runs must be at least 5 for a meaningful median")

    parts = make_parts(args.parts, args.triangles)
    lists = [(p.vertices.tolist(), p.faces.tolist()) for p in parts]
    expected = (len(parts), sum(len(p.vertices) for p in parts), sum(len(p.faces) for p in parts))
    methods: dict[str, Importer] = {
        "PartCrafter `build_parts` (foreach_set)": import_ours,
        "`bpy.ops.import_scene.gltf` (one GLB)": import_gltf,
        "`mesh.from_pydata` (Python lists)": import_pydata,
    }
    with tempfile.TemporaryDirectory(prefix="pc-bench-") as tmp:
        glb = Path(tmp) / "parts.glb"
        glb.write_bytes(write_glb(parts))
        wall, cpu, counts = measure(methods, parts, glb, lists, args.runs)
    for label in methods:
        if counts[label] != expected:
            print(f"error: {label} made {counts[label]} (meshes, vertices, faces), expected {expected}", file=sys.stderr)
            return 1
        print(f"{label}: " + ", ".join(f"{t:.3f}" for t in wall[label]) + " s", file=sys.stderr)

    med_wall = {label: statistics.median(wall[label]) for label in methods}
    med_cpu = {label: statistics.median(cpu[label]) for label in methods}
    ours = next(iter(methods))
    goals = [None, GOAL_VS_GLTF, GOAL_VS_PYDATA]
    lines = [
        f"Import of {expected[0]} parts, {expected[2]:,} triangles / {expected[1]:,} vertices in all "
        f"(bpy {bpy.app.version_string}, median of {args.runs} interleaved runs, identical counts checked; "
        "CPU = this process's CPU time, steadier than wall time on a busy machine):",
        "",
        "| method | wall (s) | wall / ours | CPU (s) | CPU / ours | goal (wall) |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for label, goal in zip(methods, goals, strict=True):
        ratio = med_wall[label] / med_wall[ours]
        verdict = "-" if goal is None else f"≥ {goal:g}× ({'met' if ratio >= goal else 'NOT met'})"
        lines.append(
            f"| {label} | {med_wall[label]:.3f} | {ratio:.2f}× | {med_cpu[label]:.3f} | "
            f"{med_cpu[label] / med_cpu[ours]:.2f}× | {verdict} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
