"""The whole PartCrafter inference: RGBA pixels -> one mesh (or a failure) per part.

preprocess -> DINOv2 image embeddings -> rectified-flow denoising of N part latents ->
occupancy decoding and marching cubes per part. Composes the network modules of this
package; reports progress per denoising step and per decoded part, stops between steps
when cancelled, and measures the seconds and peak GPU memory of every stage.

Devices: CUDA in float16 (default) or bfloat16, CPU in float32. Offload mode "model"
keeps every component in CPU memory and moves only the active one to the GPU (for
small cards).
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from ..contract import CancelToken, FailedPart, ProgressEvent
from ..errors import EngineUnavailable, InputImageError
from . import weights as W
from .denoise import StepTrace, denoise
from .dit import PartCrafterDiT
from .geometry import GeometrySettings, PartSurface, extract_part_meshes
from .image_encoder import build_image_encoder, canonical_name, encode_image
from .preprocess import FeatureExtractorConfig, condition_image, pixel_values
from .scheduler import RectifiedFlowScheduler
from .vae import TripoSGVAE

OFFLOAD_MODES = ("none", "model")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

# Share of the overall progress bar each stage gets (decoding is about as long as denoising).
_STAGE_SPAN = {"preprocess": (0.0, 0.02), "encode": (0.02, 0.05), "denoise": (0.05, 0.65), "decode": (0.65, 1.0)}


def resolve_device(device: str | None) -> torch.device:
    """"auto"/None -> CUDA when available, else CPU; anything else is checked."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EngineUnavailable(f"Device '{device}' was requested but this PyTorch has no CUDA GPU available.")
    if dev.type not in ("cuda", "cpu"):
        raise EngineUnavailable(f"Device '{device}' is not supported; use 'cuda', 'cuda:N' or 'cpu'.")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """"auto"/None -> float16 on CUDA (the published weights' dtype and the official script's), float32 on CPU."""
    if isinstance(dtype, torch.dtype):
        chosen = dtype
    elif dtype in (None, "", "auto"):
        return torch.float32 if device.type == "cpu" else torch.float16
    elif dtype in DTYPES:
        chosen = DTYPES[dtype]
    else:
        raise EngineUnavailable(f"Unknown dtype '{dtype}'; use one of: auto, {', '.join(DTYPES)}.")
    if device.type == "cpu" and chosen != torch.float32:
        raise EngineUnavailable("On the CPU the engine runs in float32 only; choose dtype 'float32' or 'auto'.")
    return chosen


@dataclass
class PipelineOutput:
    meshes: list[PartSurface | None]  # None where the part failed (see failures); per variant in turn
    failures: list[FailedPart]
    latents: torch.Tensor  # final latents [N, T, C], float32
    image_embeds: torch.Tensor  # [N, L, D] as fed to the transformer (before guidance)
    condition_route: str  # how the image was prepared: "alpha", "cutout" or "opaque"
    seconds: dict[str, float] = field(default_factory=dict)  # per stage, plus "total"
    peak_gpu_bytes: dict[str, int] = field(default_factory=dict)  # per stage, plus "total" (CUDA only)
    peak_rss_bytes: int = 0  # the process's peak resident memory so far


class _Meter:
    """Seconds and peak CUDA memory per stage."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.device = device
        self.seconds: dict[str, float] = {}
        self.peaks: dict[str, int] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.cuda:
                torch.cuda.synchronize(self.device)
                self.peaks[name] = int(torch.cuda.max_memory_allocated(self.device))
            self.seconds[name] = time.perf_counter() - start


def peak_rss_bytes() -> int:
    try:
        import resource
    except ImportError:  # Windows
        return 0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # macOS reports bytes, Linux KiB


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _load_module(module: torch.nn.Module, folder: Path, name: str, device: torch.device, dtype: torch.dtype,
                 rename: Callable[[str], str] | None = None) -> torch.nn.Module:
    """Fill a meta-device module with the checkpoint's tensors (strict), read straight onto `device`."""
    tensors = W.load_component_tensors(folder, name, device=device, dtype=dtype)
    if rename is not None:
        own = {canonical_name(k): k for k in module.state_dict()}
        tensors = {own.get(rename(k), k): v for k, v in tensors.items()}
    component = next(c for c in W.COMPONENTS if c.name == name)
    W.load_strict(module, tensors, f"{name}/{component.weights}")
    return module.eval().requires_grad_(False)


class PartCrafterPipeline:
    def __init__(
        self,
        transformer: PartCrafterDiT,
        vae: TripoSGVAE,
        image_encoder: torch.nn.Module,
        scheduler: RectifiedFlowScheduler,
        feature_config: FeatureExtractorConfig,
        device: torch.device,
        dtype: torch.dtype,
        offload: str = "none",
    ) -> None:
        if offload not in OFFLOAD_MODES:
            raise EngineUnavailable(f"Unknown offload mode '{offload}'; use one of: {', '.join(OFFLOAD_MODES)}.")
        self.transformer = transformer
        self.vae = vae
        self.image_encoder = image_encoder
        self.scheduler = scheduler
        self.feature_config = feature_config
        self.device = device
        self.dtype = dtype
        self.offload = offload if device.type == "cuda" else "none"
        self.load_seconds = 0.0

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        device: str | None = "auto",
        dtype: str | torch.dtype | None = "auto",
        offload: str = "none",
    ) -> PartCrafterPipeline:
        """Load a verified weights folder. Every tensor must match by name and shape."""
        start = time.perf_counter()
        folder = Path(folder).expanduser()
        W.require_valid_weights(folder)
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        if offload not in OFFLOAD_MODES:
            raise EngineUnavailable(f"Unknown offload mode '{offload}'; use one of: {', '.join(OFFLOAD_MODES)}.")
        home = torch.device("cpu") if offload == "model" else dev
        try:
            transformer_cfg = _read_json(folder / "transformer" / "config.json")
            vae_cfg = _read_json(folder / "vae" / "config.json")
            encoder_cfg = _read_json(folder / "image_encoder_dinov2" / "config.json")
            with torch.device("meta"):
                transformer = PartCrafterDiT.from_config(transformer_cfg)
                vae = TripoSGVAE.from_config(vae_cfg)
            encoder = build_image_encoder(encoder_cfg, device="meta")
            scheduler = RectifiedFlowScheduler.from_config(_read_json(folder / "scheduler" / "scheduler_config.json"))
            features = FeatureExtractorConfig.from_file(folder / "feature_extractor_dinov2" / "preprocessor_config.json")
        except (ValueError, KeyError, TypeError) as exc:
            raise W.WeightsError(f"The weights folder {folder} has a config this engine cannot use: {exc}") from exc
        transformer = _load_module(transformer, folder, "transformer", home, dt)
        vae = _load_module(vae, folder, "vae", home, dt)
        encoder = _load_module(encoder, folder, "image_encoder_dinov2", home, dt, rename=canonical_name)
        pipe = cls(transformer, vae, encoder, scheduler, features, dev, dt, offload)
        pipe.load_seconds = time.perf_counter() - start
        return pipe

    @contextmanager
    def _active(self, module: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """With offload "model", the module visits the GPU only for the duration of its stage."""
        if self.offload != "model":
            yield module
            return
        module.to(self.device)
        try:
            yield module
        finally:
            module.to("cpu")
            torch.cuda.empty_cache()

    def max_parts(self, guidance_scale: float) -> int:
        rows = self.transformer.config.max_num_parts
        return rows // 2 if guidance_scale > 1.0 else rows

    @torch.inference_mode()
    def __call__(
        self,
        image: np.ndarray,
        num_parts: int,
        *,
        seed: int = 0,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.0,
        num_tokens: int = 1024,
        geometry: GeometrySettings | None = None,
        progress: Callable[[ProgressEvent], None] | None = None,
        cancel: CancelToken | None = None,
        trace: StepTrace | None = None,
        variant_seeds: Sequence[int] = (),
    ) -> PipelineOutput:
        """`image`: RGBA uint8 (H, W, 4). Returns one entry per part, in part order; with
        `variant_seeds`, the parts of one object per seed (denoised in one batch), object
        after object, and `seed` unused."""
        if not 1 <= num_parts <= self.max_parts(guidance_scale):
            raise InputImageError(
                f"This model makes 1 to {self.max_parts(guidance_scale)} parts per object"
                f"{' with guidance' if guidance_scale > 1.0 else ''}; {num_parts} were requested."
            )
        if num_inference_steps < 1 or num_tokens < 1:
            raise InputImageError("The number of steps and of tokens must be at least 1.")
        geometry = geometry or GeometrySettings()
        report = progress or (lambda event: None)
        meter = _Meter(self.device)
        start = time.perf_counter()

        def emit(stage: str, done: float, message: str) -> None:
            lo, hi = _STAGE_SPAN[stage]
            report(ProgressEvent(stage, lo + (hi - lo) * done, message))

        emit("preprocess", 0.0, "Preparing the image")
        with meter.stage("preprocess"):
            cond = condition_image(image)
            pixels = torch.from_numpy(pixel_values(cond.rgb, self.feature_config)).to(self.device)
        if cancel is not None:
            cancel.raise_if_cancelled()

        emit("encode", 0.0, "Encoding the image (DINOv2)")
        with meter.stage("encode"), self._active(self.image_encoder) as encoder:
            embeds = encode_image(encoder, pixels).float()
        image_embeds = embeds.expand(num_parts, -1, -1).contiguous()  # one identical row per part

        def on_step(done: int, total: int) -> None:
            emit("denoise", done / total, f"Denoising step {done}/{total}")

        with meter.stage("denoise"), self._active(self.transformer) as transformer:
            latents = denoise(
                transformer, self.scheduler, image_embeds, num_tokens=num_tokens, num_steps=num_inference_steps,
                guidance_scale=guidance_scale, seed=seed, progress=on_step, cancel=cancel, trace=trace,
                variant_seeds=variant_seeds,
            )

        def on_part(done: int, total: int) -> None:
            emit("decode", done / total, f"Decoded part {done}/{total}")

        decoded = len(latents)
        emit("decode", 0.0, f"Decoding {decoded} part{'s' if decoded > 1 else ''}")
        with meter.stage("decode"), self._active(self.vae) as vae:
            results = extract_part_meshes(vae, latents, settings=geometry, progress=on_part, cancel=cancel)

        meshes: list[PartSurface | None] = []
        failures: list[FailedPart] = []
        for item in results:
            if isinstance(item, FailedPart):
                meshes.append(None)
                failures.append(item)
            else:
                meshes.append(item)
        seconds = dict(meter.seconds, total=time.perf_counter() - start)
        peaks = dict(meter.peaks)
        if peaks:
            peaks["total"] = max(peaks.values())
        return PipelineOutput(
            meshes=meshes, failures=failures, latents=latents.float().cpu(), image_embeds=image_embeds.cpu(),
            condition_route=cond.route, seconds=seconds, peak_gpu_bytes=peaks, peak_rss_bytes=peak_rss_bytes(),
        )
