"""The "relief" engine: a fast, classical (non-learned) preview on CPU.

Foreground matting, colour/edge-driven part segmentation and inflated relief meshes,
with numpy and Pillow only, so it runs inside Blender's own Python. It is not
PartCrafter and never claims to be.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..contract import (
    Availability,
    CancelToken,
    GenerationRequest,
    GenerationResult,
    PartMesh,
    ProgressCallback,
    ProgressEvent,
    part_name,
)
from ..errors import InputImageError
from ..partstate import save_state
from .matting import extract_foreground
from .meshing import build_grid, mesh_parts, object_frame
from .regenerate import resegment, stored_labels
from .segmentation import Segmentation, segment
from .texture import crop_texture, front_uvs

VERSION = "1.0"

# quality -> (working long side in pixels, superpixels, triangles for the whole object)
QUALITY = {
    "draft": (192, 150, 12_000),
    "standard": (320, 300, 40_000),
    "high": (512, 600, 120_000),
}


class ReliefEngine:
    name = "relief"
    label = "Relief (fast classical preview, not PartCrafter)"
    is_preview = True
    # Advanced options (`--engine-option`, Extra Options); anything else is refused.
    extra_options = ("object_triangle_budget", "triangle_budget")

    def availability(self) -> Availability:
        return Availability(ok=True)

    def generate(
        self,
        request: GenerationRequest,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> GenerationResult:
        started = time.perf_counter()
        token = cancel or CancelToken()
        report = progress or (lambda event: None)
        side, superpixels, total_budget = QUALITY[request.quality]
        part_budget = None
        if request.max_triangles and request.budget_scope == "model":
            total_budget = request.max_triangles
        elif request.max_triangles:  # the grid meets the budget directly: nothing to decimate
            part_budget = request.max_triangles
        stages: dict[str, float] = {}

        def emit(stage: str, fraction: float, message: str) -> None:
            token.raise_if_cancelled()
            report(ProgressEvent(stage=stage, fraction=fraction, message=message))

        emit("matting", 0.0, "Separating the object from the background")
        t = time.perf_counter()
        matte = extract_foreground(request.image, side)
        stages["matting"] = time.perf_counter() - t

        emit("segmentation", 0.2, "Splitting the object into parts")
        t = time.perf_counter()
        regenerate = _regeneration(request)
        if regenerate is not None:  # only the selected parts' region is split again
            stored, indices = regenerate
            labels, indices = resegment(matte, stored, indices, request.seed, superpixels, token.raise_if_cancelled,
                                        request.num_parts)
            seg = Segmentation(labels=labels, count=int(labels.max()) + 1, auto_reason="")
        else:
            seg = segment(matte.lab, matte.mask, request.num_parts, superpixels, token.raise_if_cancelled,
                          request.seed)
            indices = list(range(seg.count))
        stages["segmentation"] = time.perf_counter() - t

        emit("meshing", 0.5, f"Building {seg.count} part meshes")
        t = time.perf_counter()
        aspect = matte.py / matte.px
        if part_budget:
            total_budget = part_budget * seg.count
        grid = build_grid(seg.labels, seg.count, total_budget, part_budget)
        token.raise_if_cancelled()
        frame = object_frame(seg.labels, aspect)
        geometry = mesh_parts(
            grid,
            seg.count,
            frame,
            aspect,
            token.raise_if_cancelled,
            lambda k: report(
                ProgressEvent("meshing", 0.5 + 0.5 * (k + 1) / seg.count, f"Meshed part {k + 1} of {seg.count}")
            ),
        )
        colours = _part_colours(matte.rgb, seg.labels, seg.count)
        stages["meshing"] = time.perf_counter() - t

        # Original image pixel (x, y) -> frame: X = (x - cx) * scale, Y = (cy - y) * scale.
        image_to_frame = {
            "cx": matte.x0 + frame.cx * matte.px,
            "cy": matte.y0 + frame.cy * matte.py,
            "scale": frame.scale / matte.px,
        }
        t = time.perf_counter()
        token.raise_if_cancelled()
        texture = crop_texture(request.image, matte)
        stages["texture"] = time.perf_counter() - t
        parts = [
            PartMesh(
                name=part_name(k),
                vertices=geometry[k].vertices,
                faces=geometry[k].faces,
                color=colours[k],
                uvs=front_uvs(geometry[k].vertices, image_to_frame, texture),
            )
            for k in indices
        ]
        metadata: dict[str, Any] = {
            "preview": "Fast classical preview (relief engine), not PartCrafter.",
            "matting": matte.method,
            "working_size": [int(matte.mask.shape[1]), int(matte.mask.shape[0])],
            "grid_step_pixels": round(grid.step * matte.px, 3),
            "triangles": int(sum(len(p.faces) for p in parts)),
            "stage_seconds": {k: round(v, 4) for k, v in stages.items()},
            "image_to_frame": image_to_frame,
            # The original pixels the texture shows: x0, y0, width, height.
            "texture_crop": [texture.x0, texture.y0, texture.width, texture.height],
        }
        if regenerate is not None:
            metadata["regenerated_parts"] = indices
        if request.options.get("state_dir"):
            metadata["state_file"], metadata["state_sha256"] = save_state(
                request.options["state_dir"], {"image": request.image, "labels": seg.labels},
                {"engine": self.name, "engine_version": VERSION, "num_parts": seg.count},
            )
        if request.num_parts is None and regenerate is None:
            metadata["auto_parts"] = {"count": seg.count, "reason": seg.auto_reason}
        report(ProgressEvent("meshing", 1.0, f"Done: {seg.count} parts"))
        return GenerationResult(
            parts=parts,
            engine=self.name,
            engine_version=VERSION,
            requested_parts=request.num_parts,
            seed=request.seed,
            steps=0,
            guidance=0.0,
            seconds=time.perf_counter() - started,
            metadata=metadata,
            texture=texture.pixels,
        )


def _part_colours(rgb: np.ndarray, labels: np.ndarray, count: int) -> list[tuple[float, float, float, float]]:
    """Per-channel median of each part's pixels: robust to highlights and dark seams."""
    flat = labels.ravel()
    on = flat >= 0
    order = np.argsort(flat[on], kind="stable")
    pixels = rgb.reshape(-1, 3)[on][order]
    bounds = np.searchsorted(flat[on][order], np.arange(count + 1))
    colours = []
    for k in range(count):
        chunk = pixels[bounds[k] : bounds[k + 1]]
        r, g, b = (np.median(chunk, axis=0) / 255.0).tolist()
        colours.append((round(r, 4), round(g, 4), round(b, 4), 1.0))
    return colours


def _regeneration(request: GenerationRequest) -> tuple[np.ndarray, list[int]] | None:
    """(stored labels, part indices) when the request regenerates parts of a result, else None."""
    source = request.options.get("regenerate_from")
    if not source:
        return None
    image, labels = stored_labels(str(source), str(request.options.get("regenerate_sha256", "")))
    if image.shape != request.image.shape or not np.array_equal(image, request.image):
        raise InputImageError("Regenerating parts needs the image the result was made from (the one kept with it).")
    raw = request.options.get("regenerate_parts", [])
    return labels, sorted({int(x) for x in (raw.split(",") if isinstance(raw, str) else raw)})
