"""The "partcrafter" engine: the PartCrafter network on the local GPU (or CPU, slowly).

Importing this module never imports torch, so listing engines and asking for
availability stay cheap (also inside Blender, where torch is usually absent and the
extension runs this engine in a worker process instead; see inference/worker).

Configuration, by precedence: request.options, the options given to the constructor,
then environment variables:

    weights_path        PARTCRAFTER_WEIGHTS   the diffusers-style weights folder (required)
    device              PARTCRAFTER_DEVICE    auto (default) | cuda | cuda:N | cpu
    dtype               PARTCRAFTER_DTYPE     auto (default: float16 on CUDA, as the published weights;
                                              float32 on CPU) | bfloat16 | float16 | float32
    offload             PARTCRAFTER_OFFLOAD   none (default) | model (only the active component on the GPU)
    num_tokens          -                     latent tokens per part (default 1024, as published)
    dense_depth,
    hierarchical_depth  -                     override the grid depths that `quality` picks
    max_expanded_coords -                     refinement query limit per part; a part over it fails
    fast_decode         -                     false (default: the official geometry) | true: an
                                              approximate coarse-to-fine decode, about 4x fewer
                                              decoder FLOPs (docs/partcrafter-engine.md, "Fast decode")
    state_dir           -                     keep what regenerating parts needs in a sidecar file
                                              there (inference/partstate.py); metadata names it
    regenerate_from,
    regenerate_sha256,
    regenerate_parts    -                     regenerate the parts (0-based indices) of the result
                                              whose sidecar this is, with the request's seed
                                              (inpaint.py); only those parts are returned
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import time
from typing import Any

import numpy as np

from ..contract import Availability, CancelToken, FailedPart, GenerationRequest, GenerationResult, PartMesh
from ..contract import ProgressCallback
from ..contract import ProgressEvent, part_name
from ..decimate import decimate, part_targets
from ..errors import Cancelled, EngineFailed, EngineUnavailable, InputImageError, missing_packages_message
from ..foreground import require_foreground
from ..partstate import RegenerationDataError, load_state, save_state
from .weights import verify_weights_folder

ENGINE_VERSION = "partcrafter-cleanroom-1"
# PartCrafter needs an explicit part count; Auto uses this one and says so in the metadata.
AUTO_NUM_PARTS = 4
DEFAULT_NUM_TOKENS = 1024
# quality -> (dense octree depth, hierarchical octree depth); "standard" is the published default.
QUALITY_DEPTHS = {"draft": (7, 8), "standard": (8, 9), "high": (8, 10)}
# max_triangles=0: triangles per part by quality (marching cubes alone gives several hundred thousand).
DEFAULT_PART_TRIANGLES = {"draft": 10_000, "standard": 30_000, "high": 100_000}
# fast_decode: the dense grid this many levels coarser (depth 6 instead of 8 at "standard").
FAST_DECODE_COARSE_LEVELS = 2
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
ENV = {"weights_path": "PARTCRAFTER_WEIGHTS", "device": "PARTCRAFTER_DEVICE", "dtype": "PARTCRAFTER_DTYPE",
       "offload": "PARTCRAFTER_OFFLOAD"}
REQUIRED_MODULES = {"torch": "torch", "transformers": "transformers", "safetensors": "safetensors",
                    "skimage": "scikit-image", "fast_simplification": "fast-simplification"}

# Distinct, readable part colours (sRGB), repeated when there are more parts.
PALETTE = (
    (0.90, 0.38, 0.33), (0.33, 0.60, 0.88), (0.45, 0.76, 0.40), (0.95, 0.72, 0.25),
    (0.62, 0.45, 0.82), (0.30, 0.78, 0.78), (0.92, 0.52, 0.74), (0.60, 0.60, 0.60),
)

_cache_lock = threading.Lock()
_cached: tuple[tuple, Any] | None = None  # (key, pipeline): one loaded model at a time


def _missing_modules() -> list[str]:
    return [pip for module, pip in REQUIRED_MODULES.items() if importlib.util.find_spec(module) is None]


def _load_pipeline(folder: str, device: str, dtype: str, offload: str) -> Any:
    """Reuse the loaded model when the same configuration asks again (the server, the CLI)."""
    global _cached
    from .pipeline import PartCrafterPipeline

    key = (os.path.realpath(folder), device, dtype, offload)
    with _cache_lock:
        if _cached is not None and _cached[0] == key:
            return _cached[1]
        _cached = None  # drop the old model before loading another
        pipe = PartCrafterPipeline.from_pretrained(folder, device=device, dtype=dtype, offload=offload)
        _cached = (key, pipe)
        return pipe


def release_cached_pipeline() -> None:
    global _cached
    with _cache_lock:
        _cached = None


def _int_option(settings: dict[str, Any], key: str, default: int) -> int:
    value = settings.get(key, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1 or (isinstance(value, float) and value != number):
        raise EngineUnavailable(f"The engine option '{key}' must be a positive whole number, not {value!r}.")
    return number


def _bool_option(settings: dict[str, Any], key: str) -> bool:
    value = settings.get(key, False)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if isinstance(value, (int, str)) and text in _TRUE | _FALSE:
        return text in _TRUE
    raise EngineUnavailable(f"The engine option '{key}' must be true or false, not {value!r}.")


def _variant_failures(failures: list[FailedPart], num_parts: int, request: GenerationRequest) -> list[FailedPart]:
    """Batch rows back to part indices, naming the variant's seed when there are several."""
    if request.variants == 1:
        return list(failures)
    seeds = request.variant_seeds()
    return [FailedPart(f.index % num_parts, f"seed {seeds[f.index // num_parts]}: {f.reason}") for f in failures]


class PartCrafterEngine:
    name = "partcrafter"
    label = "PartCrafter (neural, local GPU)"
    is_preview = False
    generates_variants = True  # seed variants are denoised in one DiT batch
    takes_options = True  # create_engine passes the caller's options (weights folder, device, ...)
    # Advanced options (`--engine-option`, Extra Options); anything else is refused.
    extra_options = ("num_tokens", "dense_depth", "hierarchical_depth", "max_expanded_coords", "fast_decode")

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = dict(options or {})

    def settings(self, request_options: dict[str, Any] | None = None) -> dict[str, Any]:
        """One precedence for every setting: the request's options (an explicit option:
        --weights, the operator's call), then the engine's own options (what the caller
        configured: the preferences), then the PARTCRAFTER_* environment variables."""
        merged: dict[str, Any] = {key: os.environ[var] for key, var in ENV.items() if os.environ.get(var)}
        merged.update({k: v for k, v in self.options.items() if v not in (None, "")})
        merged.update({k: v for k, v in (request_options or {}).items() if v not in (None, "")})
        merged.setdefault("device", "auto")
        merged.setdefault("dtype", "auto")
        merged.setdefault("offload", "none")
        return merged

    def availability(self, request_options: dict[str, Any] | None = None) -> Availability:
        missing = _missing_modules()
        if missing:
            return Availability(False, missing_packages_message(sys.executable, missing), setting="packages")
        folder = self.settings(request_options).get("weights_path")
        if not folder:
            return Availability(
                False,
                "No PartCrafter weights folder is configured. Set it in the add-on preferences or in the "
                "PARTCRAFTER_WEIGHTS environment variable.",
                setting="weights_path",
            )
        report = verify_weights_folder(folder)
        return Availability(report.ok, "" if report.ok else report.message(), setting="" if report.ok else "weights_path")

    def warm_up(self) -> None:
        """Load the network now, with the options of a request that sets none (a server replica, once at start)."""
        settings = self.settings()
        _load_pipeline(str(settings["weights_path"]), str(settings["device"]), str(settings["dtype"]), str(settings["offload"]))

    def generate(
        self,
        request: GenerationRequest,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> GenerationResult:
        started = time.perf_counter()
        require_foreground(request.image)  # before loading gigabytes of weights for nothing
        settings = self.settings(request.options)
        availability = self.availability(request.options)
        if not availability.ok:
            raise EngineUnavailable(availability.reason)
        if cancel is not None:
            cancel.raise_if_cancelled()
        report = progress or (lambda event: None)
        num_parts = request.num_parts or AUTO_NUM_PARTS
        dense, hierarchical = QUALITY_DEPTHS[request.quality]
        dense = _int_option(settings, "dense_depth", dense)
        hierarchical = _int_option(settings, "hierarchical_depth", hierarchical)
        num_tokens = _int_option(settings, "num_tokens", DEFAULT_NUM_TOKENS)
        limit = {}
        if "max_expanded_coords" in settings:
            limit["max_expanded_coords"] = _int_option(settings, "max_expanded_coords", 0)
        fast_decode = _bool_option(settings, "fast_decode")
        # Fast decode is an approximation anyway; it uses exact attention on its coarse grid
        # instead of the official one-shot top-k (quirk 12), which only made sense on the dense one.
        coarse = min(FAST_DECODE_COARSE_LEVELS, dense - 1) if fast_decode else 0

        import torch

        from .geometry import GeometrySettings

        report(ProgressEvent("load", 0.0, "Loading the PartCrafter model"))
        try:
            pipe = _load_pipeline(str(settings["weights_path"]), str(settings["device"]), str(settings["dtype"]),
                                  str(settings["offload"]))
            geometry = GeometrySettings(dense_depth=dense, hierarchical_depth=hierarchical, coarse_levels=coarse,
                                        topk_first_chunk=not fast_decode, **limit)
            if settings.get("regenerate_from"):
                indices, output = _regenerate(pipe, request, settings, geometry, progress, cancel)
                num_parts, num_tokens = output.latents.shape[:2]
            else:
                output = pipe(
                    request.image,
                    num_parts,
                    seed=request.seed,
                    num_inference_steps=request.steps,
                    guidance_scale=request.guidance,
                    num_tokens=num_tokens,
                    geometry=geometry,
                    progress=progress,
                    cancel=cancel,
                    variant_seeds=request.variant_seeds() if request.variants > 1 else (),
                )
                indices = list(range(len(output.meshes)))
        except (Cancelled, EngineUnavailable, InputImageError, EngineFailed, RegenerationDataError):
            raise
        except torch.cuda.OutOfMemoryError as exc:
            release_cached_pipeline()
            raise EngineFailed(
                "The GPU ran out of memory. Try fewer parts, quality 'draft', or the offload mode 'model' "
                f"(which keeps only the active component on the GPU). ({exc})"
            ) from exc
        except (RuntimeError, ValueError, OSError) as exc:
            raise EngineFailed(f"PartCrafter failed: {exc}") from exc

        # Row r of the output is part r % num_parts of variant r // num_parts; a regeneration
        # returns only its chosen parts, and `indices` says which.
        meshes = [(index, mesh) for index, mesh in zip(indices, output.meshes, strict=True) if mesh is not None]
        if not meshes:
            reasons = "; ".join(f"part {f.index + 1}: {f.reason}" for f in output.failures)
            raise EngineFailed(f"PartCrafter produced no part with a surface ({reasons}).")
        report(ProgressEvent("decimate", 1.0, "Reducing the parts to the triangle budget"))
        budget = request.max_triangles or DEFAULT_PART_TRIANGLES[request.quality]
        if settings.get("regenerate_from") and request.budget_scope == "model":
            # The kept parts are not returned: the regenerated ones get their share of the whole.
            budget = max(1, budget * len(indices) // num_parts)
        targets: list[int] = []  # a whole-result budget holds for each variant
        for variant in range(request.variants):
            counts = [len(m.faces) for i, m in meshes if i // num_parts == variant]
            targets += part_targets(counts, budget, whole=request.budget_scope == "model")
        parts: list[PartMesh] = []
        reduction = {"max_triangles": budget, "budget_scope": request.budget_scope, "input_triangles": 0,
                     "min_triangle_quality": 1.0, "parts_kept_unreduced": 0}
        for (index, mesh), target in zip(meshes, targets, strict=True):
            if cancel is not None:
                cancel.raise_if_cancelled()
            reduced = decimate(mesh.vertices, mesh.faces, target)
            reduction["input_triangles"] += reduced.input_triangles
            reduction["parts_kept_unreduced"] += int(target < len(mesh.faces) and not reduced.reduced)
            reduction["min_triangle_quality"] = round(min(reduction["min_triangle_quality"], reduced.min_quality), 4)
            # The frame is already the contract's (Y-up); the grid reaches 1.005, the contract 1.
            vertices = np.clip(reduced.vertices, -1.0, 1.0)
            variant, part = divmod(index, num_parts)
            parts.append(PartMesh(part_name(part), vertices, reduced.faces,
                                  color=(*PALETTE[part % len(PALETTE)], 1.0), variant=variant))
        metadata = {
            "num_parts": num_parts,
            "auto_parts": request.num_parts is None,
            "device": str(pipe.device),
            "dtype": str(pipe.dtype).removeprefix("torch."),
            "offload": pipe.offload,
            "num_tokens": num_tokens,
            "dense_depth": dense,
            "hierarchical_depth": hierarchical,
            "fast_decode": fast_decode,
            "condition_route": output.condition_route,
            "load_seconds": pipe.load_seconds,
            "stage_seconds": output.seconds,
            "peak_gpu_bytes": output.peak_gpu_bytes,
            "peak_rss_bytes": output.peak_rss_bytes,
            "decimation": reduction,
        }
        if settings.get("regenerate_from"):
            metadata["regenerated_parts"] = indices
        if settings.get("state_dir") and request.variants == 1:  # the sidecar holds one object
            metadata["state_file"], metadata["state_sha256"] = save_state(
                settings["state_dir"],
                {"latents": output.latents.numpy(), "image_embeds": output.image_embeds[:1].numpy(), "image": request.image},
                {"engine": self.name, "engine_version": ENGINE_VERSION, "num_parts": num_parts},
            )
        if request.num_parts is None and not settings.get("regenerate_from"):
            metadata["auto_parts_note"] = (
                f"PartCrafter needs an explicit part count; Auto used {AUTO_NUM_PARTS}. Choose a count for other splits."
            )
        return GenerationResult(
            parts=parts,
            engine=self.name,
            engine_version=ENGINE_VERSION,
            requested_parts=request.num_parts,
            seed=request.seed,
            steps=request.steps,
            guidance=request.guidance,
            seconds=time.perf_counter() - started,
            failed_parts=_variant_failures(output.failures, num_parts, request),
            variant_seeds=request.variant_seeds() if request.variants > 1 else [],
            metadata=metadata,
        )


def _regenerate(pipe: Any, request: GenerationRequest, settings: dict[str, Any], geometry: Any,
                progress: ProgressCallback | None, cancel: CancelToken | None) -> tuple[list[int], Any]:
    """The stored result's parts `regenerate_parts` made afresh with the request's seed."""
    import torch

    from .inpaint import check_indices, regenerate_parts

    if request.variants > 1:
        raise InputImageError("Regenerating parts makes one result; set Variants to 1.")
    arrays, meta = load_state(str(settings["regenerate_from"]), str(settings.get("regenerate_sha256", "")))
    if meta.get("engine") != PartCrafterEngine.name or "latents" not in arrays:
        raise RegenerationDataError("This regeneration data was not made by the PartCrafter engine.")
    raw = settings.get("regenerate_parts", [])
    wanted = [int(x) for x in (raw.split(",") if isinstance(raw, str) else raw)]
    latents = torch.from_numpy(arrays["latents"])
    indices = check_indices(wanted, latents.shape[0])
    output = regenerate_parts(
        pipe, torch.from_numpy(arrays["image_embeds"]), latents, indices, seed=request.seed,
        num_inference_steps=request.steps, guidance_scale=request.guidance, geometry=geometry,
        progress=progress, cancel=cancel,
    )
    return indices, output
