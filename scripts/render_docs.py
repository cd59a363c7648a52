"""README pictures: run the CLI on example images and render each result next to its input.

    .venv/bin/python scripts/render_docs.py [IMAGE ...] [--engine relief] [--out docs/images]
    .venv/bin/python scripts/render_docs.py --gallery [--out docs/images]

For each image: `python -m partcrafter_blender generate` (the relief engine by default)
writes a .blend; Blender's Workbench engine renders it headless from a 3/4 view, with
Texture colour (the relief preview's picture texture; parts without one show their material
colour); then docs/images/<name>_render.png and
docs/images/<name>_compare.png (input | render) are written, each kept small for the README.

--gallery does all ten example images for docs/gallery.md: each is generated twice, with
Auto and with its true part count (the npN_ prefix); the true-count result is rendered with
one distinct colour per part, and docs/images/gallery_<name>.png (input | render, captioned
with both counts) is written as a small palette PNG.
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

from partcrafter_blender.inference.srgb import srgb_to_linear

REPO = Path(__file__).resolve().parents[1]
IMAGES = (REPO / ".." / "shared" / "images").resolve()
DEFAULT_IMAGES = {
    "table": "np10_b07dbghsn7.png",
    "teapot": "np3_7ba4129133dc46d0818930adb53c0315.png",
    "lantern": "np4_4d6e4d3dd9194633ac86285ada1017ad.png",
}
# The gallery shows every example image, in the order of ../shared/images/README.md.
GALLERY_IMAGES = {
    "table": "np10_b07dbghsn7.png",
    "chair": "np15_b07k7k8yf9.png",
    "stool": "np2_3cd2cdea87f34bd7acb096f5178b3760.png",
    "wrench": "np3_5bbc755b07924fcba6ccd702191f90df.png",
    "teapot": "np3_7ba4129133dc46d0818930adb53c0315.png",
    "extinguisher": "np3_c25308e36b3a4c6d9745e01fb34a93a1.png",
    "lantern": "np4_4d6e4d3dd9194633ac86285ada1017ad.png",
    "dumbbell": "np7_8d3e568f059244e19f3b5f7e789cccb2.png",
    "ladder": "np9_5cc2b8234ff04a2aa29d5f0a0393ed0c.png",
    "room": "np5_5d0ed2ea-d959-47b1-a981-8586ba55ef43_Library-6504.png",
}
WIDTH, HEIGHT = 1024, 768
BACKGROUND = (0.94, 0.94, 0.95)  # light grey, in display space
MAX_BYTES = 400_000
# Gallery sheet: caption strip above, input square | render below; rendered at 2x and
# scaled down so outlines stay thin at this size.
SHEET_W, SHEET_H, CAPTION_H, GAP = 900, 380, 36, 8
PANEL = SHEET_H - CAPTION_H
GALLERY_MAX_BYTES = 150_000
# One colour per part (sRGB), picked to stay apart from each other and from the grey
# background; parts beyond 16 cycle.
PART_COLOURS = [
    (0.90, 0.30, 0.24), (0.20, 0.47, 0.80), (0.96, 0.72, 0.16), (0.30, 0.69, 0.35),
    (0.62, 0.36, 0.78), (0.13, 0.74, 0.78), (0.95, 0.50, 0.70), (0.55, 0.38, 0.24),
    (0.70, 0.82, 0.25), (0.30, 0.30, 0.36), (0.98, 0.56, 0.20), (0.50, 0.66, 0.95),
    (0.80, 0.16, 0.48), (0.10, 0.50, 0.42), (0.85, 0.78, 0.55), (0.45, 0.22, 0.55),
]  # fmt: skip


def generate(image: Path, engine: str, blend: Path, parts: int | None = None) -> dict:
    """The CLI, as a user runs it (Auto part count unless `parts`); returns its JSON summary."""
    cmd = [sys.executable, "-m", "partcrafter_blender", "generate", str(image), "--engine", engine,
           "--seed", "0", "--out", str(blend), "--json"]  # fmt: skip
    if parts is not None:
        cmd += ["--parts", str(parts)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"generate failed for {image.name}:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _frame_camera(
    cam, points: np.ndarray, azimuth: float, elevation: float, fill: float, size: tuple[int, int]
) -> None:
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
    tan_h = tan_w * size[1] / size[0]

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


def prepare(blend: Path, size: tuple[int, int] = (WIDTH, HEIGHT), part_colours: bool = False):
    """Open the .blend and set up camera and Workbench look; returns the scene.
    `part_colours`: shade each part in its own colour from PART_COLOURS instead of its
    material colour, so neighbouring parts of the same colour stay apart."""
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
    _frame_camera(cam, pts, azimuth=math.radians(35), elevation=math.radians(22), fill=0.86, size=size)
    cam.data.clip_end = 1e4

    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.resolution_x, scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = False
    scene.display.render_aa = "16"
    scene.display.light_direction = (0.45, -0.35, 0.8)
    shading = scene.display.shading
    shading.light = "STUDIO"
    shading.studio_light = "paint.sl"  # saturated, even light: part colours read like the input's
    shading.color_type = "OBJECT" if part_colours else "TEXTURE"
    if part_colours:
        for i, obj in enumerate(sorted(meshes, key=lambda o: o.name)):
            obj.color = (*(float(c) for c in srgb_to_linear(PART_COLOURS[i % len(PART_COLOURS)])), 1.0)
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
    scene.world.color = tuple(float(c) for c in srgb_to_linear(BACKGROUND))
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.render.dither_intensity = 0.0  # dither noise on flat areas triples the PNG size
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    return scene


def render(
    blend: Path, out_png: Path, size: tuple[int, int] = (WIDTH, HEIGHT), part_colours: bool = False
) -> None:
    import bpy

    scene = prepare(blend, size, part_colours)
    scene.render.filepath = str(out_png)
    bpy.ops.render.render(write_still=True)


def _label(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, size: int = 26) -> None:
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        font = ImageFont.load_default()
    draw.text(xy, text, fill=(70, 70, 75), font=font)


def _input_square(input_png: Path, side: int) -> Image.Image:
    """The input cropped to the object (anything not near-white) with a margin, on a
    white square of `side` pixels."""
    src = Image.open(input_png).convert("RGB")
    arr = np.asarray(src)
    ys, xs = np.nonzero((arr < 245).any(axis=2))
    if len(xs):
        pad = int(0.08 * max(xs.max() - xs.min(), ys.max() - ys.min()))
        box = (max(xs.min() - pad, 0), max(ys.min() - pad, 0), min(xs.max() + pad, src.width), min(ys.max() + pad, src.height))
        src = src.crop(box)
    full = max(src.size)
    square = Image.new("RGB", (full, full), (255, 255, 255))
    square.paste(src, ((full - src.width) // 2, (full - src.height) // 2))
    return square.resize((side, side), Image.LANCZOS)


def compare(input_png: Path, render_png: Path, out_png: Path, caption: str) -> None:
    """Input (cropped to the object, on white) | render, same height, captioned."""
    left = _input_square(input_png, HEIGHT)
    right = Image.open(render_png).convert("RGB")
    gap = 12
    canvas = Image.new("RGB", (HEIGHT + gap + right.width, HEIGHT), (255, 255, 255))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (HEIGHT + gap, 0))
    draw = ImageDraw.Draw(canvas)
    _label(draw, (20, 16), "input image")
    _label(draw, (HEIGHT + gap + 20, 16), caption)
    save_small(canvas, out_png)


def save_small(img: Image.Image, path: Path, limit: int = MAX_BYTES) -> None:
    """PNG under `limit` bytes: full colour when it fits, else an adaptive 256-colour palette."""
    img.save(path, optimize=True)
    if path.stat().st_size > limit:
        img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    if path.stat().st_size > limit:
        raise SystemExit(f"{path} is {path.stat().st_size} bytes, over {limit}")


def sheet(input_png: Path, render_png: Path, out_png: Path, caption: str) -> None:
    """Gallery sheet: caption line above input | render (the render scaled to fit)."""
    canvas = Image.new("RGB", (SHEET_W, SHEET_H), (255, 255, 255))
    canvas.paste(_input_square(input_png, PANEL), (0, CAPTION_H))
    right = Image.open(render_png).convert("RGB").resize((SHEET_W - PANEL - GAP, PANEL), Image.LANCZOS)
    canvas.paste(right, (PANEL + GAP, CAPTION_H))
    _label(ImageDraw.Draw(canvas), (10, 8), caption, size=19)
    save_small(canvas, out_png, GALLERY_MAX_BYTES)


def engine_label(engine: str) -> str:
    """Caption wording; the relief pictures must never pass for PartCrafter results."""
    return "relief preview (not PartCrafter)" if engine == "relief" else f"{engine} engine"


def true_parts(image: Path) -> int:
    """The part count from the example images' `npN_` file name prefix."""
    prefix = image.name.split("_", 1)[0]
    if not (prefix.startswith("np") and prefix[2:].isdigit()):
        raise SystemExit(f"{image.name} has no npN_ prefix")
    return int(prefix[2:])


def gallery(engine: str, out: Path, tmp: Path) -> None:
    """docs/gallery.md pictures: every example image, true-count result rendered with one
    colour per part, captioned with the true count and what Auto gave."""
    render_size = (2 * (SHEET_W - PANEL - GAP), 2 * PANEL)
    for name, file in GALLERY_IMAGES.items():
        image = IMAGES / file
        n = true_parts(image)
        auto = generate(image, engine, tmp / f"{name}_auto.blend")
        blend = tmp / f"{name}.blend"
        summary = generate(image, engine, blend, parts=n)
        raw = tmp / f"{name}_gallery_raw.png"
        render(blend, raw, render_size, part_colours=True)
        got, got_auto = len(summary["parts"]), len(auto["parts"])
        result = f"{engine_label(summary['engine'])}, --parts {n}: {got} parts · Auto: {got_auto}"
        caption = f"{name} ({n} parts)  |  {result}"
        out_png = out / f"gallery_{name}.png"
        sheet(image, raw, out_png, caption)
        print(f"{out_png} ({out_png.stat().st_size // 1024} KB)  {caption}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", help="NAME=PATH or PATH (default: three images from ../shared/images)")
    parser.add_argument("--engine", default="relief")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    parser.add_argument("--gallery", action="store_true", help="all ten example images for docs/gallery.md")
    args = parser.parse_args(argv)
    if args.gallery:
        if args.images:
            parser.error("--gallery takes no images")
        missing = [f for f in GALLERY_IMAGES.values() if not (IMAGES / f).is_file()]
        if missing:
            parser.error(f"example image(s) not found in {IMAGES}: {', '.join(missing)}")
        args.out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="pc-docs-") as tmp:
            gallery(args.engine, args.out, Path(tmp))
        return 0
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
            compare(image, raw, compare_png, f"{len(summary['parts'])} parts, {engine_label(summary['engine'])}")
            for p in (render_png, compare_png):
                print(f"{p} ({p.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
