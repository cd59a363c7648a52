"""Regenerate some parts of a PartCrafter result: inpainting for rectified flow.

The transformer sees all N parts at once, so kept parts condition the new ones. At
every step the kept parts' latents are put where the flow would have them on the
way to their stored clean latents x0: x_sigma = (1 - sigma) * x0 + sigma * noise (the
interpolation whose velocity the model predicts; sigma = 1 is pure noise, 0 clean),
with the same noise the sampler starts from. Only the regenerated parts' latents are
sampled afresh, and only they are decoded. After the last step the kept rows are
exactly x0, bit for bit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from ..contract import CancelToken, FailedPart, ProgressEvent
from ..errors import InputImageError
from .denoise import denoise, initial_noise
from .geometry import GeometrySettings, extract_part_meshes
from .pipeline import PartCrafterPipeline, PipelineOutput, peak_rss_bytes


class KeptLatents:
    """The `constrain` hook of `denoise`: kept rows follow their stored latents."""

    def __init__(self, latents: torch.Tensor, regenerate: Sequence[int], seed: int) -> None:
        n, tokens, channels = latents.shape
        self.clean = latents.float()
        self.noise = initial_noise(n, tokens, channels, seed).to(latents.device)  # the sampler's own draw
        self.keep = torch.ones(n, dtype=torch.bool, device=latents.device)
        self.keep[list(regenerate)] = False

    def __call__(self, latents: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = float(sigma)
        target = self.clean if s == 0.0 else (1.0 - s) * self.clean + s * self.noise
        out = latents.clone()
        out[self.keep] = target[self.keep]
        return out


def check_indices(indices: Sequence[int], num_parts: int) -> list[int]:
    chosen = sorted(set(int(i) for i in indices))
    if not chosen:
        raise InputImageError("Choose at least one part to regenerate.")
    if chosen[0] < 0 or chosen[-1] >= num_parts:
        raise InputImageError(f"This result has parts 1 to {num_parts}; part {chosen[-1] + 1} does not exist.")
    return chosen


@torch.inference_mode()
def regenerate_parts(
    pipe: PartCrafterPipeline,
    image_embeds: torch.Tensor,
    latents: torch.Tensor,
    indices: Sequence[int],
    *,
    seed: int,
    num_inference_steps: int,
    guidance_scale: float,
    geometry: GeometrySettings | None = None,
    progress: Callable[[ProgressEvent], None] | None = None,
    cancel: CancelToken | None = None,
) -> PipelineOutput:
    """`image_embeds` [1, L, D] and `latents` [N, T, C] as a generation left them. Returns
    the new latents of all N parts, and meshes (or failures) for `indices` only, in order."""
    n = latents.shape[0]
    chosen = check_indices(indices, n)
    if n > pipe.max_parts(guidance_scale):
        raise InputImageError(f"This model makes at most {pipe.max_parts(guidance_scale)} parts with this guidance; the result has {n}.")
    report = progress or (lambda event: None)
    start = time.perf_counter()
    seconds: dict[str, float] = {}
    embeds = image_embeds.to(pipe.device).float().expand(n, -1, -1).contiguous()
    stored = latents.to(pipe.device).float()

    def on_step(done: int, total: int) -> None:
        report(ProgressEvent("denoise", 0.05 + 0.6 * done / total, f"Denoising step {done}/{total}"))

    t = time.perf_counter()
    with pipe._active(pipe.transformer) as transformer:
        new = denoise(
            transformer, pipe.scheduler, embeds, num_tokens=latents.shape[1], num_steps=num_inference_steps,
            guidance_scale=guidance_scale, seed=seed, progress=on_step, cancel=cancel,
            constrain=KeptLatents(stored, chosen, seed),
        )
    seconds["denoise"] = time.perf_counter() - t

    def on_part(done: int, total: int) -> None:
        report(ProgressEvent("decode", 0.65 + 0.35 * done / total, f"Decoded part {done}/{total}"))

    t = time.perf_counter()
    with pipe._active(pipe.vae) as vae:
        results = extract_part_meshes(vae, new[chosen], settings=geometry or GeometrySettings(), progress=on_part,
                                      cancel=cancel)
    seconds["decode"] = time.perf_counter() - t
    meshes, failures = [], []
    for index, item in zip(chosen, results, strict=True):
        if isinstance(item, FailedPart):
            meshes.append(None)
            failures.append(FailedPart(index=index, reason=item.reason))
        else:
            meshes.append(item)
    seconds["total"] = time.perf_counter() - start
    return PipelineOutput(
        meshes=meshes, failures=failures, latents=new.float().cpu(), image_embeds=image_embeds.float().cpu(),
        condition_route="stored", seconds=seconds, peak_rss_bytes=peak_rss_bytes(),
    )
