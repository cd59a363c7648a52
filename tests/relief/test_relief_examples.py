"""Every example image: exact part count, closed meshes, silhouettes that match the object."""

from __future__ import annotations

import numpy as np
import pytest
from relief_support import (
    EXAMPLES,
    check_meshes,
    downsample_mask,
    expected_parts,
    interpenetration,
    iou,
    part_silhouettes,
    run,
)

from partcrafter_blender.inference.images import load_image

pytestmark = pytest.mark.skipif(not EXAMPLES, reason="../shared/images is not checked out beside the repository")


def reference_mask(rgba: np.ndarray) -> np.ndarray:
    """Independent of the engine: renders on white -> anything not near-white; a scene
    whose border is not white -> the whole frame (the engine must keep it all)."""
    rgb = rgba[..., :3].astype(np.int16)
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    if (255 - border).max(axis=1).mean() > 8:
        return np.ones(rgba.shape[:2], bool)
    return (255 - rgb).max(axis=2) > 16


def test_relief_auto_counts_near_the_truth():
    """Auto reads the count from visible structure; on most examples it lands near the
    true part count (a preview engine cannot be exact on all of them)."""
    close, report = 0, []
    for path in EXAMPLES:
        result = run(load_image(path).rgba, None)
        auto = result.metadata["auto_parts"]
        truth = expected_parts(path)
        assert auto["count"] == len(result.parts)
        assert auto["reason"].startswith(f"{auto['count']} part")
        close += abs(auto["count"] - truth) <= max(2, 0.4 * truth)
        report.append(f"{path.name[:8]}: {auto['count']} for {truth}")
    assert close >= 0.7 * len(EXAMPLES), report


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name[:12])
def test_relief_example_image(path):
    rgba = load_image(path).rgba
    count = expected_parts(path)
    result = run(rgba, count)
    check_meshes(result, count)
    assert result.engine == "relief"

    silhouettes = part_silhouettes(result, rgba.shape[:2])
    union = silhouettes.any(axis=0)
    reference = downsample_mask(reference_mask(rgba), union.shape)
    assert iou(union, reference) >= 0.90

    # Parts tile the silhouette: their projections barely overlap, so they cannot
    # interpenetrate in depth either.
    assert interpenetration(silhouettes) <= 0.002
