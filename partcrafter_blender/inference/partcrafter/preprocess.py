"""From the user's RGBA pixels to DINOv2 pixel_values, bit-exact with the official path.

Two official routes exist (conformance README, preprocess/ and quirk 18):
* no alpha: the RGB image goes straight to the feature extractor;
* a valid alpha: `prepare_image` composites over white, crops to the foreground, pads to
  a square with a 10 % margin, and truncates to uint8.
`condition_image` picks the route for the engine contract's RGBA array. A photo without
alpha can be cut out by an optional background-removal callable supplied by the caller.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from PIL import Image

from ..errors import InputImageError
from ..images import has_meaningful_alpha  # one project-wide rule for "this alpha masks something"

# Takes RGB uint8 (H, W, 3), returns RGBA uint8 (H, W, 4) with the foreground in alpha.
BackgroundRemover = Callable[[np.ndarray], np.ndarray]

MAX_ASPECT = 8  # opaque inputs longer than 8:1 are refused (see condition_image)


@dataclass(frozen=True)
class FeatureExtractorConfig:
    """The values of feature_extractor_dinov2/preprocessor_config.json that matter."""

    shortest_edge: int = 256
    crop_height: int = 224
    crop_width: int = 224
    resample: int = 3  # PIL bicubic
    rescale_factor: float = 1.0 / 255.0
    image_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    image_std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> FeatureExtractorConfig:
        for flag in ("do_resize", "do_center_crop", "do_rescale", "do_normalize", "do_convert_rgb"):
            if not cfg.get(flag, True):
                raise ValueError(f"feature extractor config: {flag}=false is not supported")
        size = cfg.get("size", {"shortest_edge": 256})
        if set(size) != {"shortest_edge"}:
            raise ValueError(f"feature extractor config: only size.shortest_edge is supported, got {size}")
        crop = cfg.get("crop_size", {"height": 224, "width": 224})
        return cls(
            shortest_edge=int(size["shortest_edge"]),
            crop_height=int(crop["height"]),
            crop_width=int(crop["width"]),
            resample=int(cfg.get("resample", 3)),
            rescale_factor=float(cfg.get("rescale_factor", 1.0 / 255.0)),
            image_mean=tuple(float(v) for v in cfg.get("image_mean", cls.image_mean)),
            image_std=tuple(float(v) for v in cfg.get("image_std", cls.image_std)),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> FeatureExtractorConfig:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def resize_shortest_edge(rgb: np.ndarray, cfg: FeatureExtractorConfig) -> np.ndarray:
    """Short side -> shortest_edge, long side -> int(edge * long / short), PIL resampling on uint8."""
    h, w = rgb.shape[:2]
    short, long = (h, w) if h <= w else (w, h)
    new_long = int(cfg.shortest_edge * long / short)
    new_h, new_w = (cfg.shortest_edge, new_long) if h <= w else (new_long, cfg.shortest_edge)
    return np.asarray(Image.fromarray(rgb, "RGB").resize((new_w, new_h), resample=Image.Resampling(cfg.resample)))


def center_crop(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    if h < height or w < width:
        raise ValueError(f"image {w}x{h} is smaller than the crop {width}x{height}")
    top, left = (h - height) // 2, (w - width) // 2
    return rgb[top : top + height, left : left + width]


def pixel_values(rgb: np.ndarray, cfg: FeatureExtractorConfig | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> float32 (1, 3, crop_h, crop_w), as the official feature extractor."""
    cfg = cfg or FeatureExtractorConfig()
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError("pixel_values expects an RGB uint8 array of shape (H, W, 3)")
    cropped = center_crop(resize_shortest_edge(rgb, cfg), cfg.crop_height, cfg.crop_width)
    x = (cropped.astype(np.float64) * cfg.rescale_factor).astype(np.float32)
    x = (x - np.asarray(cfg.image_mean, dtype=np.float32)) / np.asarray(cfg.image_std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def prepare_image(
    rgba: np.ndarray, bg_color: tuple[float, float, float] = (1.0, 1.0, 1.0), padding_ratio: float = 0.1
) -> np.ndarray:
    """The official prepare step for an image with a valid alpha (quirk 18). Returns RGB uint8."""
    alpha = rgba[..., 3]
    ys, xs = np.nonzero(alpha > 0)
    if ys.size == 0:
        raise InputImageError("The image is fully transparent: there is no foreground to reconstruct.")
    rgb = rgba[..., :3].astype(np.float32) / np.float32(255.0)
    a = (alpha.astype(np.float32) / np.float32(255.0))[..., None]
    bg = np.asarray(bg_color, dtype=np.float32)
    comp = rgb * a + bg * (np.float32(1.0) - a)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    comp = comp[y0:y1, x0:x1]
    h, w = comp.shape[:2]
    long_pad = int(max(h, w) * padding_ratio)
    short_pad = long_pad + abs(h - w) // 2
    pad_y, pad_x = (long_pad, short_pad) if h >= w else (short_pad, long_pad)
    comp = np.pad(comp, ((pad_y, pad_y), (pad_x, pad_x), (0, 0)), constant_values=float(bg[0]))
    return (comp * np.float32(255.0)).astype(np.uint8)  # truncation, as the official code


@dataclass(frozen=True)
class ConditionImage:
    """The RGB uint8 image fed to the feature extractor, and how it was obtained."""

    rgb: np.ndarray
    route: str  # "alpha" (prepared from the input's alpha), "cutout" (background remover), "opaque" (as is)


def condition_image(rgba: np.ndarray, remove_background: BackgroundRemover | None = None) -> ConditionImage:
    """Choose the official route for the engine contract's RGBA uint8 image.

    Meaningful alpha -> prepare_image (the official --rmbg path, which keeps a valid alpha).
    Fully opaque -> the RGB unchanged (the official path without --rmbg), unless the caller
    passes a background remover, whose cut-out then goes through prepare_image.
    """
    if not (isinstance(rgba, np.ndarray) and rgba.dtype == np.uint8 and rgba.ndim == 3 and rgba.shape[2] == 4):
        raise InputImageError("The image must be RGBA uint8 pixels of shape (H, W, 4).")
    if has_meaningful_alpha(rgba):
        return ConditionImage(prepare_image(rgba), "alpha")
    rgb = np.ascontiguousarray(rgba[..., :3])
    h, w = rgb.shape[:2]
    if max(h, w) > MAX_ASPECT * min(h, w):
        # The short side is resized to 256 px, so an extreme strip would become huge and useless.
        raise InputImageError(f"The image is too elongated ({w}x{h}); crop it to at most {MAX_ASPECT}:1.")
    if remove_background is None:
        return ConditionImage(rgb, "opaque")
    cut = remove_background(rgb)
    if not (isinstance(cut, np.ndarray) and cut.dtype == np.uint8 and cut.shape == rgba.shape):
        raise ValueError("the background remover must return RGBA uint8 of the input's size")
    if not has_meaningful_alpha(cut):
        return ConditionImage(rgb, "opaque")  # the remover kept everything: nothing to crop
    if not cut[..., 3].any():
        raise InputImageError("Background removal found no object in the image.")
    return ConditionImage(prepare_image(cut), "cutout")
