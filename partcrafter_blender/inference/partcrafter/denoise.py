"""The sampling loop: rectified-flow Euler steps with classifier-free guidance.

Follows the official pipeline (conformance README, pipeline/ and quirks 9, 16): the
noise is drawn once as [N, num_tokens, C] from a CPU generator, both guidance halves
see the same latents, the unconditional condition is all zeros and comes first.
Latents stay float32 between steps whatever dtype the transformer runs in.

Seed variants batch several objects (the same image, one seed each) through the DiT at
once with the num_parts tensor path: each object keeps its own part grouping, and each
row gets the part-embedding row it would get in a run of its own (quirk 3: under
guidance the conditional half uses rows N..2N-1), so a batch gives each object the
latents of its separate run (tests/partcrafter/test_pc_variants.py).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..contract import CancelToken
from ..errors import Cancelled
from .dit import PartCrafterDiT
from .scheduler import RectifiedFlowScheduler

# trace(step_index, tensors): tensors holds timestep, latents_in, noise_pred_raw,
# noise_pred_guided and latents_out for that step (for conformance checks and debugging).
StepTrace = Callable[[int, dict[str, torch.Tensor]], None]
# constrain(latents, sigma) -> latents: fixes some rows to where the flow must be at sigma.
Constrain = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def initial_noise(num_parts: int, num_tokens: int, channels: int, seed: int) -> torch.Tensor:
    """float32 noise on the CPU, identical to the official pipeline's draw for the same seed."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn([num_parts, num_tokens, channels], generator=generator, dtype=torch.float32)


def batch_part_rows(num_parts: int, objects: int, guided: bool) -> torch.Tensor:
    """Part-embedding rows of a batch of `objects` objects of `num_parts` parts each, laid out
    [uncond of every object, cond of every object] under guidance: what each gets alone."""
    rows = torch.arange(num_parts)
    halves = (rows, rows + num_parts) if guided else (rows,)
    return torch.cat([half for half in halves for _ in range(objects)])


def _stop_requested(should_stop: Callable[[], bool] | None, cancel: CancelToken | None) -> bool:
    return bool((cancel is not None and cancel.cancelled) or (should_stop is not None and should_stop()))


@torch.inference_mode()
def denoise(
    transformer: PartCrafterDiT,
    scheduler: RectifiedFlowScheduler,
    image_embeds: torch.Tensor,
    *,
    num_tokens: int,
    num_steps: int,
    guidance_scale: float,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    cancel: CancelToken | None = None,
    trace: StepTrace | None = None,
    constrain: Constrain | None = None,
    variant_seeds: Sequence[int] = (),
) -> torch.Tensor:
    """image_embeds [N, L, D] (one row per part) -> final latents [N, num_tokens, C], float32.

    `variant_seeds`: denoise one object per seed in one batch (`seed` is then unused);
    the result is [K * N, num_tokens, C], object after object.
    `progress(done, total)` is called after every step; `should_stop()` / `cancel` are checked
    before every step and raise Cancelled. `constrain(latents, sigma)`, when given, may set
    rows of the latents before every step and after the last one (inpainting, see inpaint.py).
    """
    device = image_embeds.device
    dtype = transformer.proj_in.weight.dtype
    n = image_embeds.shape[0]
    seeds = list(variant_seeds) or [seed]
    objects = len(seeds)
    guided = guidance_scale > 1.0
    embeds = image_embeds.repeat(objects, 1, 1) if objects > 1 else image_embeds
    context = torch.cat([torch.zeros_like(embeds), embeds]) if guided else embeds
    # Several objects go through the num_parts tensor path, each with its single-run part rows.
    sizes: int | torch.Tensor = n
    rows = None
    if objects > 1:
        sizes = torch.full((objects * (2 if guided else 1),), n)
        rows = batch_part_rows(n, objects, guided)
    # The condition is the same at every step: its cross-attention keys/values are computed once.
    # The unconditional half is all zeros: its cross-attention reduces exactly to the output bias.
    condition = transformer.prepare_condition(context.to(dtype), num_parts=sizes,
                                              zero_rows=objects * n if guided else 0)

    noise = [initial_noise(n, num_tokens, transformer.config.in_channels, s) for s in seeds]
    latents = torch.cat(noise).to(device)
    scheduler.set_timesteps(num_steps, device=device)
    total = len(scheduler.timesteps)
    for i, t in enumerate(scheduler.timesteps):
        if _stop_requested(should_stop, cancel):
            raise Cancelled()
        if constrain is not None:
            latents = constrain(latents, scheduler.sigmas[i])
        model_in = torch.cat([latents, latents]) if guided else latents
        raw = transformer(model_in.to(dtype), t, None, num_parts=sizes, condition=condition, part_rows=rows).float()
        if guided:
            uncond, cond = raw.chunk(2)
            velocity = uncond + guidance_scale * (cond - uncond)
        else:
            velocity = raw
        latents_out = scheduler.step(velocity, t, latents)
        if trace is not None:
            trace(i, {"timestep": t.expand(model_in.shape[0]), "latents_in": latents, "noise_pred_raw": raw,
                      "noise_pred_guided": velocity, "latents_out": latents_out})
        latents = latents_out
        if progress is not None:
            progress(i + 1, total)
    if constrain is not None:
        latents = constrain(latents, scheduler.sigmas[-1])
    return latents
