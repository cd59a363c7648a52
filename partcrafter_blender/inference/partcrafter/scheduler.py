"""Rectified-flow sampler schedule and Euler step (quirk 10 of the conformance README).

sigma runs from 1 (pure noise) down to 0; the model predicts a velocity v and each step
does x <- x + (sigma_i - sigma_{i+1}) * v.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from .config import config_values


class RectifiedFlowScheduler:
    def __init__(
        self, num_train_timesteps: int = 1000, shift: float = 1.0, use_dynamic_shifting: bool = False
    ) -> None:
        if use_dynamic_shifting:
            raise ValueError("scheduler config: use_dynamic_shifting is not supported (the published model does not use it)")
        if float(shift) != 1.0:
            raise ValueError("scheduler config: only shift 1 is supported (the published model's value)")
        self.num_train_timesteps = int(num_train_timesteps)
        self.timesteps = torch.empty(0)
        self.sigmas = torch.empty(0)
        self._step_index: int | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RectifiedFlowScheduler:
        return cls(**config_values(config, ("num_train_timesteps", "shift", "use_dynamic_shifting"), "scheduler"))

    def set_timesteps(self, num_inference_steps: int, device: torch.device | str = "cpu") -> None:
        n = int(num_inference_steps)
        if n < 1:
            raise ValueError("num_inference_steps must be at least 1")
        # 1 - i/n in float64, then float32, with a final 0 appended.
        sigmas = (1.0 - np.arange(n, dtype=np.float64) / n).astype(np.float32)
        self.sigmas = torch.from_numpy(np.append(sigmas, np.float32(0.0))).to(device)
        self.timesteps = self.sigmas[:-1] * np.float32(self.num_train_timesteps)
        self._step_index = None

    def index_for_timestep(self, timestep: torch.Tensor | float) -> int:
        t = torch.as_tensor(timestep, dtype=self.timesteps.dtype, device=self.timesteps.device)
        hits = (self.timesteps == t).nonzero().flatten()
        if hits.numel() == 0:
            raise ValueError(f"timestep {float(t)} is not in the schedule")
        return int(hits[0])

    def step(self, model_output: torch.Tensor, timestep: torch.Tensor | float, sample: torch.Tensor) -> torch.Tensor:
        """One Euler step. The first call looks its index up from the timestep value; later calls advance."""
        if self.sigmas.numel() == 0:
            raise RuntimeError("call set_timesteps before step")
        if self._step_index is None:
            self._step_index = self.index_for_timestep(timestep)
        i = self._step_index
        if i >= len(self.timesteps):
            raise RuntimeError("step called more often than the schedule has steps")
        dt = (self.sigmas[i] - self.sigmas[i + 1]).to(sample.device)
        prev = sample.float() + dt * model_output.float()
        self._step_index = i + 1
        return prev.to(sample.dtype)
