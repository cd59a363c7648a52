"""Relief regeneration: the selected parts' region is split again with a new seed; the
other parts' pixels, and so their meshes, are untouched."""

from __future__ import annotations

import numpy as np
import pytest

from partcrafter_blender.inference import GenerationRequest, InputImageError
from partcrafter_blender.inference.images import load_image
from partcrafter_blender.inference.partstate import RegenerationDataError, load_state
from partcrafter_blender.inference.relief.engine import ReliefEngine

from relief_support import IMAGES


@pytest.fixture(scope="module")
def table():
    path = next(p for p in sorted(IMAGES.glob("np5_*.png")))
    return load_image(path)


def _request(image, seed, num_parts=5, **options):
    return GenerationRequest(image=image.rgba, num_parts=num_parts, seed=seed, quality="draft", options=options)


def test_regenerated_region_is_split_again_and_the_rest_kept(table, tmp_path):
    engine = ReliefEngine()
    first = engine.generate(_request(table, 0, state_dir=str(tmp_path)))
    state = (first.metadata["state_file"], first.metadata["state_sha256"])
    labels = load_state(*state)[0]["labels"]
    chosen = [0, 2]
    splits = []
    for seed in (1, 2, 3):
        again = engine.generate(_request(table, seed, None, state_dir=str(tmp_path), regenerate_from=state[0],
                                         regenerate_sha256=state[1], regenerate_parts=chosen))
        assert [p.name for p in again.parts] == ["part_01", "part_03"] and again.metadata["regenerated_parts"] == chosen
        new = load_state(again.metadata["state_file"], again.metadata["state_sha256"])[0]["labels"]
        kept = ~np.isin(labels, chosen)
        assert np.array_equal(new[kept], labels[kept])  # every other part's pixels, unchanged
        assert set(np.unique(new[~kept])) == set(chosen)  # the region, split into the selected parts again
        splits.append(new[~kept].tobytes())
    assert len(set(splits)) > 1, "new seeds give new splits"
    more = engine.generate(_request(table, 4, 3, regenerate_from=state[0], regenerate_sha256=state[1],
                                    regenerate_parts=chosen))
    assert [p.name for p in more.parts] == ["part_01", "part_03", "part_06"]  # a new count adds part 6
    with pytest.raises(InputImageError, match="2 or more parts, not 1"):
        engine.generate(_request(table, 4, 1, regenerate_from=state[0], regenerate_sha256=state[1],
                                 regenerate_parts=chosen))


def test_wrong_image_or_part_is_refused(table, tmp_path):
    engine = ReliefEngine()
    first = engine.generate(_request(table, 0, state_dir=str(tmp_path)))
    state = dict(regenerate_from=first.metadata["state_file"], regenerate_sha256=first.metadata["state_sha256"])
    with pytest.raises(InputImageError, match="part 9 does not exist"):
        engine.generate(_request(table, 1, **state, regenerate_parts=[8]))
    other = GenerationRequest(image=np.ascontiguousarray(table.rgba[::-1]), num_parts=2, options={**state, "regenerate_parts": [0]})
    with pytest.raises(InputImageError, match="needs the image the result was made from"):
        engine.generate(other)
    with pytest.raises(RegenerationDataError, match="has changed"):
        engine.generate(_request(table, 1, regenerate_from=state["regenerate_from"], regenerate_sha256="0" * 64,
                                 regenerate_parts=[0]))
