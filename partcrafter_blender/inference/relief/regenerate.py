"""Regenerate some parts of a relief result: re-segment the region the selected parts
cover, with a new seed, into as many parts as were selected or more.

The sidecar (inference/partstate.py) holds the image and the result's part labels at
the working resolution. Matting is deterministic, so the object, its frame and every
other part's pixels stay as they were; the seed varies the superpixel grid the
region's segmentation starts from, so a new seed gives a new split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..errors import InputImageError
from ..partstate import RegenerationDataError, load_state
from .matting import Matte
from .segmentation import segment

SUPERPIXEL_JITTER = 0.35  # the seed picks the region's superpixel count within +-35 %


def stored_labels(path: str, sha256: str) -> tuple[np.ndarray, np.ndarray]:
    """(image, labels) of a relief result's sidecar."""
    arrays, meta = load_state(path, sha256)
    if meta.get("engine") != "relief" or "labels" not in arrays:
        raise RegenerationDataError("This regeneration data was not made by the relief engine.")
    return arrays["image"], arrays["labels"]


def resegment(
    matte: Matte, labels: np.ndarray, indices: Sequence[int], seed: int, superpixels: int, check: Callable[[], None],
    count: int | None = None,
) -> tuple[np.ndarray, list[int]]:
    """`labels` with the pixels of parts `indices` split afresh into `count` parts (default:
    as many as `indices`), and the part numbers they got: `indices` first (the biggest new
    piece takes the smallest), then new numbers after the result's last part."""
    existing = int(labels.max()) + 1
    chosen = sorted(set(int(i) for i in indices))
    if not chosen:
        raise InputImageError("Choose at least one part to regenerate.")
    if chosen[0] < 0 or chosen[-1] >= existing:
        raise InputImageError(f"This result has parts 1 to {existing}; part {chosen[-1] + 1} does not exist.")
    wanted = count or len(chosen)
    if wanted < len(chosen):
        raise InputImageError(f"{len(chosen)} parts are selected; they can be split into {len(chosen)} or more parts, not {wanted}.")
    if labels.shape != matte.mask.shape:
        raise RegenerationDataError("The stored part labels do not fit this image any more; generate the result again.")
    region = np.isin(labels, chosen)
    rng = np.random.default_rng(seed)
    share = region.sum() / max(int((labels >= 0).sum()), 1)
    spread = 1.0 + SUPERPIXEL_JITTER * (2.0 * rng.random() - 1.0)
    count_in_region = max(2 * wanted, int(round(superpixels * share * spread)))
    split = segment(matte.lab, region, wanted, count_in_region, check)
    if split.count < len(chosen):
        raise InputImageError(f"The selected parts' region cannot be split into {len(chosen)} parts; select fewer parts.")
    numbers = chosen + list(range(existing, existing + split.count - len(chosen)))
    out = labels.copy()
    out[region] = np.asarray(numbers, dtype=np.int32)[np.maximum(split.labels[region], 0)]
    return out, numbers
