"""Seed variants with the relief engine, through run_engine (what the extension, the worker
and the server run): K seeds, K different splits, one progress bar, one cancel."""

from __future__ import annotations

import numpy as np
import pytest

from partcrafter_blender.inference import CancelToken, GenerationRequest, run_engine
from partcrafter_blender.inference.errors import Cancelled
from partcrafter_blender.inference.images import decode_image, read_image_file
from partcrafter_blender.inference.relief.engine import ReliefEngine
from relief_support import IMAGES

CHAIR = IMAGES / "np4_4d6e4d3dd9194633ac86285ada1017ad.png"


@pytest.fixture(scope="module")
def chair() -> np.ndarray:
    if not CHAIR.is_file():
        pytest.skip("../shared/images is not checked out beside the repository")
    return decode_image(read_image_file(str(CHAIR))).rgba


def _request(rgba: np.ndarray, **kwargs) -> GenerationRequest:
    return GenerationRequest(image=rgba, num_parts=4, quality="draft", **kwargs)


def test_k_seeds_give_k_different_splits_in_one_result(chair):
    events = []
    result = run_engine(ReliefEngine(), _request(chair, seed=11, variants=4), events.append)
    assert result.variant_seeds == [11, 12, 13, 14]
    variants = result.variants()
    assert [seed for seed, _parts in variants] == [11, 12, 13, 14]
    assert all(len(parts) == 4 for _seed, parts in variants)
    splits = {tuple(len(p.faces) for p in parts) for _seed, parts in variants}
    assert len(splits) == 4
    assert [v["seed"] for v in result.metadata["variants"]] == [11, 12, 13, 14]
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0) and fractions[0] == 0.0
    assert "Variant 4 of 4 (seed 14)" in events[-1].message


def test_a_variant_is_the_single_run_with_its_seed(figure):
    batch = run_engine(ReliefEngine(), _request(figure.rgba, seed=3, variants=2))
    single = run_engine(ReliefEngine(), _request(figure.rgba, seed=4))
    second = batch.variants()[1][1]
    assert [len(p.faces) for p in second] == [len(p.faces) for p in single.parts]
    for a, b in zip(second, single.parts, strict=True):
        np.testing.assert_array_equal(a.vertices, b.vertices)


def test_seed_zero_keeps_the_classic_split(figure):
    from partcrafter_blender.inference.relief.segmentation import cue_weights

    assert cue_weights(0) == (1.0, 1.0, 1.0, 1.0) and cue_weights(1) != cue_weights(2)


def test_one_cancel_stops_all_the_variants(figure):
    token = CancelToken()
    seen = []

    def progress(event):
        seen.append(event.message)
        if event.message.startswith("Variant 2"):
            token.cancel()

    with pytest.raises(Cancelled):
        run_engine(ReliefEngine(), _request(figure.rgba, variants=4), progress, token)
    assert not any(m.startswith("Variant 3") for m in seen)
