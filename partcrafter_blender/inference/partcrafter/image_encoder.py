"""The DINOv2 image encoder: transformers' Dinov2Model, loaded strictly from a folder.

Checkpoints store the transformers 4.x attention names (attention.attention.query, ...,
attention.output.dense); transformers 5.x names the same tensors attention.{q,k,v,o}_proj
in memory (conformance keys/). We match both spellings through one canonical name so a
checkpoint loads under either major version, and refuse anything that does not match
one to one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import EngineUnavailable

# transformers 5.x in-memory name -> 4.x / checkpoint name (the canonical one).
_V5_TO_LEGACY = (
    (re.compile(r"\.attention\.q_proj\."), ".attention.attention.query."),
    (re.compile(r"\.attention\.k_proj\."), ".attention.attention.key."),
    (re.compile(r"\.attention\.v_proj\."), ".attention.attention.value."),
    (re.compile(r"\.attention\.o_proj\."), ".attention.output.dense."),
)


def canonical_name(key: str) -> str:
    for pattern, legacy in _V5_TO_LEGACY:
        key = pattern.sub(legacy, key)
    return key


def build_image_encoder(config: Mapping[str, Any], device: torch.device | str | None = None) -> torch.nn.Module:
    """A Dinov2Model with the given config.json dict (random weights; use device='meta' for a shape check)."""
    from transformers import Dinov2Config, Dinov2Model

    cfg = Dinov2Config.from_dict(dict(config))
    with torch.device(device or "cpu"):
        return Dinov2Model(cfg).eval()


def load_state_dict_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Load `state` into `module` matching names through `canonical_name`; every tensor must match.

    Raises EngineUnavailable naming the missing, unexpected and mis-shaped keys.
    """
    own = {canonical_name(k): k for k in module.state_dict()}
    given = {canonical_name(k): k for k in state}
    missing = sorted(own[c] for c in own.keys() - given.keys())
    unexpected = sorted(given[c] for c in given.keys() - own.keys())
    own_state = module.state_dict()
    misshaped = sorted(
        f"{given[c]} {list(state[given[c]].shape)} (expected {list(own_state[own[c]].shape)})"
        for c in own.keys() & given.keys()
        if tuple(state[given[c]].shape) != tuple(own_state[own[c]].shape)
    )
    if missing or unexpected or misshaped:
        lines = [f"The {what} weights do not match the model:"]
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshaped)):
            if items:
                shown = ", ".join(items[:8]) + (f" and {len(items) - 8} more" if len(items) > 8 else "")
                lines.append(f"{len(items)} {label}: {shown}")
        raise EngineUnavailable(" ".join(lines))
    module.load_state_dict({own[c]: state[given[c]] for c in own}, strict=True)


def load_image_encoder(
    folder: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> torch.nn.Module:
    """Dinov2Model from `folder`/config.json and `folder`/model.safetensors, in eval mode."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config_path, weights_path = folder / "config.json", folder / "model.safetensors"
    for path in (config_path, weights_path):
        if not path.is_file():
            raise EngineUnavailable(f"The image encoder file is missing: {path}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EngineUnavailable(f"Cannot read the image encoder config {config_path}: {exc}") from exc
    model = build_image_encoder(config)
    load_state_dict_strict(model, load_file(str(weights_path)), f"image encoder ({weights_path})")
    return model.to(device=device, dtype=dtype)


@torch.no_grad()
def encode_image(model: torch.nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """[B, 3, 224, 224] -> last_hidden_state [B, 1 + patches, hidden] (CLS first, after the final LayerNorm)."""
    param = next(model.parameters())
    return model(pixel_values=pixel_values.to(device=param.device, dtype=param.dtype)).last_hidden_state
