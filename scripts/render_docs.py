"""README pictures: run the CLI on example images and render each result next to its input.

    .venv/bin/python scripts/render_docs.py [IMAGE ...] [--engine relief] [--out docs/images]

For each image: `python -m partcrafter_blender generate` (the relief engine by default)
writes a .blend; Blender's Workbench engine renders it headless from a 3/4 view, each
part in its own material colour; then docs/images/<name>_render.png and
docs/images/<name>_compare.png (input | render) are written, each kept small for the README.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[1]
IMAGES = (REPO / ".." / "shared" / "images").resolve()
DEFAULT_IMAGES = {
    "table": "np10_b07dbghsn7.png",
    "teapot": "np3_7ba4129133dc46d0818930adb53c0315.png",
    "lantern": "np4_4d6e4d3dd9194633ac86285ada1017ad.png",
}
WIDTH, HEIGHT = 1024, 768
BACKGROUND = (0.94, 0.94, 0.95)  # light grey, in display space
MAX_BYTES = 400_000


def generate(image: Path, engine: str, blend: Path) -> dict:
    """The CLI, as a user runs it; returns its JSON summary."""
    cmd = [sys.executable, "-m", "partcrafter_blender", "generate", str(image), "--engine", engine,
           "--seed", "0", "--out", str(blend), "--json"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"generate failed for {image.name}:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _frame_camera(cam, points: np.ndarray, azimuth: float, elevation: float, fill: float) -> None:
    """Aim a perspective camera at `points` from the given direction and choose distance and
    lens shift so their projection fills `fill` of the frame, centred."""
    import mathutils

    lo, hi = points.min(axis=0), points.max(axis=0)
    center = (lo + hi) / 2
    # Front of the model faces -Y (the importer turns the engines' +Z viewer axis into -Y).
    direction = np.array(
        [math.sin(azimuth) * math.cos(elevation), -math.cos(azimuth) * math.cos(elevation), math.sin(elevation)]
    )
    forward = -direction
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    rel = points - center
    px, py, pz = rel @ right, rel @ up, rel @ direction
    tan_w = math.tan(cam.data.angle_x / 2)  # horizontal half-angle (landscape: sensor fits width)
    tan_h = tan_w * HEIGHT / WIDTH

    def extents(distance: float) -> tuple[float, float, float, float]:
        depth = distance - pz
        x, y = px / depth, py / depth
        return x.min(), x.max(), y.min(), y.max()

    near, far = float(np.abs(rel).max() * 1.5) + 1e-3, 1e4
    for _ in range(60):  # the projected size shrinks monotonically with distance
        mid = math.sqrt(near * far)
        x0, x1, y0, y1 = extents(mid)
        if max((x1 - x0) / (2 * tan_w), (y1 - y0) / (2 * tan_h)) > fill:
            near = mid
        else:
            far = mid
    x0, x1, y0, y1 = extents(far)
    cam.location = mathutils.Vector(center + direction * far)
    cam.rotation_euler = mathutils.Vector(forward).to_track_quat("-Z", "Y").to_euler()
    # Lens shift is in units of the frame's larger side (the width here).
    cam.data.shift_x = (x0 + x1) / 2 / (2 * tan_w)
    cam.data.shift_y = (y0 + y1) / 2 / (2 * tan_w)


def prepare(blend: Path):
    """Open the .blend and set up camera and Workbench look; returns the scene."""
    import bpy

    bpy.ops.wm.open_mainfile(filepath=str(blend))
    scene = bpy.context.scene
    meshes = [o for o in scene.objects if o.type == "MESH"]
    depsgraph = bpy.context.evaluated_depsgraph_get()
    points = []
    for obj in meshes:
        co = np.empty(len(obj.data.vertices) * 3, dtype=np.float32)
        obj.data.vertices.foreach_get("co", co)
        m = np.array(obj.evaluated_get(depsgraph).matrix_world)
        points.append(co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3])
    pts = np.concatenate(points).astype(np.float64)

    cam = bpy.data.objects.new("DocCamera", bpy.data.cameras.new("DocCamera"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    cam.data.lens = 60
    _frame_camera(cam, pts, azimuth=math.radians(35), elevation=math.radians(22), fill=0.86)
    cam.data.clip_end = 1e4

    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.resolution_x, scene.render.resolution_y = WIDTH, HEIGHT
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = False
    scene.display.render_aa = "16"
    scene.display.light_direction = (0.45, -0.35, 0.8)
    shading = scene.display.shading
    shading.light = "STUDIO"
    shading.studio_light = "paint.sl"  # saturated, even light: part colours read like the input's
    shading.color_type = "MATERIAL"
    shading.show_cavity = True
    shading.cavity_type = "BOTH"
    shading.cavity_ridge_factor = 1.0
    shading.cavity_valley_factor = 1.2
    shading.curvature_ridge_factor = 0.6
    shading.curvature_valley_factor = 0.8
    shading.show_object_outline = True
    shading.object_outline_color = (0.12, 0.12, 0.14)
    shading.show_shadows = True
    shading.shadow_intensity = 0.35
    shading.show_specular_highlight = True
    if scene.world is None:
        scene.world = bpy.data.worlds.new("World")
    scene.world.color = tuple(_srgb_to_linear(c) for c in BACKGROUND)
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.render.dither_intensity = 0.0  # dither noise on flat areas triples the PNG size
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    return scene


def render(blend: Path, out_png: Path) -> None:
    import bpy

    scene = prepare(blend)
    scene.render.filepath = str(out_png)
    bpy.ops.render.render(write_still=True)


def _srgb_to_linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _label(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str) -> None:
    try:
        font = ImageFont.load_default(size=26)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        font = ImageFont.load_default()
    draw.text(xy, text, fill=(70, 70, 75), font=font)


def compare(input_png: Path, render_png: Path, out_png: Path, caption: str) -> None:
    """Input (cropped to the object, on white) | render, same height, captioned."""
    src = Image.open(input_png).convert("RGB")
    arr = np.asarray(src)
    ys, xs = np.nonzero((arr < 245).any(axis=2))
    if len(xs):
        pad = int(0.08 * max(xs.max() - xs.min(), ys.max() - ys.min()))
        box = (max(xs.min() - pad, 0), max(ys.min() - pad, 0), min(xs.max() + pad, src.width), min(ys.max() + pad, src.height))
        src = src.crop(box)
    side = max(src.size)
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(src, ((side - src.width) // 2, (side - src.height) // 2))
    left = square.resize((HEIGHT, HEIGHT), Image.LANCZOS)
    right = Image.open(render_png).convert("RGB")
    gap = 12
    canvas = Image.new("RGB", (HEIGHT + gap + right.width, HEIGHT), (255, 255, 255))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (HEIGHT + gap, 0))
    draw = ImageDraw.Draw(canvas)
    _label(draw, (20, 16), "input image")
    _label(draw, (HEIGHT + gap + 20, 16), caption)
    save_small(canvas, out_png)


def save_small(img: Image.Image, path: Path) -> None:
    """PNG under MAX_BYTES: full colour when it fits, else an adaptive 256-colour palette."""
    img.save(path, optimize=True)
    if path.stat().st_size > MAX_BYTES:
        img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    if path.stat().st_size > MAX_BYTES:
        raise SystemExit(f"{path} is {path.stat().st_size} bytes, over {MAX_BYTES}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", help="NAME=PATH or PATH (default: three images from ../shared/images)")
    parser.add_argument("--engine", default="relief")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    args = parser.parse_args(argv)
    jobs = {}
    for item in args.images or [f"{k}={IMAGES / v}" for k, v in DEFAULT_IMAGES.items()]:
        name, _, path = item.rpartition("=")
        jobs[name or Path(path).stem] = Path(path)
    missing = [str(p) for p in jobs.values() if not p.is_file()]
    if missing:
        parser.error(f"image(s) not found: {', '.join(missing)}")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pc-docs-") as tmp:
        for name, image in jobs.items():
            blend = Path(tmp) / f"{name}.blend"
            summary = generate(image, args.engine, blend)
            raw = Path(tmp) / f"{name}_raw.png"
            render(blend, raw)
            render_png = args.out / f"{name}_render.png"
            save_small(Image.open(raw).convert("RGB"), render_png)
            compare_png = args.out / f"{name}_compare.png"
            compare(image, raw, compare_png, f"{len(summary['parts'])} parts, {summary['engine']} engine")
            for p in (render_png, compare_png):
                print(f"{p} ({p.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
