"""The textured relief preview: the cropped input image and UVs from the front projection."""

from __future__ import annotations

import numpy as np
from relief_support import run

from partcrafter_blender.inference import GenerationRequest, run_engine
from partcrafter_blender.inference.relief import texture as relief_texture
from partcrafter_blender.inference.relief.engine import ReliefEngine


def _front(part) -> np.ndarray:
    return part.vertices[:, 2] > 0


def _sample(texture: np.ndarray, uvs: np.ndarray) -> np.ndarray:
    """Nearest texel of each UV (glTF convention: v = 0 is the top row)."""
    h, w = texture.shape[:2]
    cols = np.clip((uvs[:, 0] * w).astype(int), 0, w - 1)
    rows = np.clip((uvs[:, 1] * h).astype(int), 0, h - 1)
    return texture[rows, cols, :3].astype(int)


def test_uvs_are_the_front_projection_onto_the_cropped_image(figure):
    result = run(figure.rgba, len(figure.blocks))
    x0, y0, width, height = result.metadata["texture_crop"]
    tf = result.metadata["image_to_frame"]
    # Inside the object the texture is the input image under the crop, pixel for pixel
    # (small enough: no resize); only the background around it is painted over.
    crop = figure.rgba[y0 : y0 + height, x0 : x0 + width]
    inside = _eroded(figure.mask, 3)[y0 : y0 + height, x0 : x0 + width]
    assert result.texture.shape == crop.shape
    np.testing.assert_array_equal(result.texture[inside, :3], crop[inside, :3])
    for part in result.parts:
        assert part.uvs is not None and part.uvs.shape == (len(part.vertices), 2)
        assert part.uvs.min() >= 0.0 and part.uvs.max() <= 1.0
        # A vertex's image pixel, from the engine's own image -> frame mapping...
        x = tf["cx"] + part.vertices[:, 0] / tf["scale"]
        y = tf["cy"] - part.vertices[:, 1] / tf["scale"]
        # ...is its UV times the texture's size, offset by the crop (front and back alike).
        np.testing.assert_allclose(part.uvs[:, 0] * width + x0, x, atol=0.05)
        np.testing.assert_allclose(part.uvs[:, 1] * height + y0, y, atol=0.05)


def _eroded(mask: np.ndarray, steps: int) -> np.ndarray:
    for _ in range(steps):
        padded = np.pad(mask, 1)
        mask = mask & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask


def test_no_vertex_shows_the_background(figure):
    """The outline sits on the object's edge: its vertices (walls included) must show the
    object's colours, not the white background (the texture bleeds them outwards)."""
    result = run(figure.rgba, len(figure.blocks))
    for part in result.parts:
        seen = _sample(result.texture, part.uvs)
        assert not (seen > 230).all(axis=1).any(), part.name


def test_each_part_shows_the_picture_of_its_own_block(figure):
    """Sampled at its front vertices, the texture shows each part's block colour: the
    picture lands where it came from (a flipped or shifted V would show another block)."""
    result = run(figure.rgba, len(figure.blocks))
    for part in result.parts:
        seen = np.median(_sample(result.texture, part.uvs[_front(part)]), axis=0)
        assert np.abs(seen - np.array(part.color[:3]) * 255).max() <= 12, part.name


def test_a_large_picture_is_embedded_at_most_max_side(figure, monkeypatch):
    monkeypatch.setattr(relief_texture, "MAX_TEXTURE_SIDE", 64)
    result = run(figure.rgba, len(figure.blocks))
    assert max(result.texture.shape[:2]) == 64
    for part in result.parts:  # UVs are normalised: the smaller picture still lines up
        seen = np.median(_sample(result.texture, part.uvs[_front(part)]), axis=0)
        assert np.abs(seen - np.array(part.color[:3]) * 255).max() <= 16, part.name


def test_seed_variants_share_one_texture(figure):
    request = GenerationRequest(image=figure.rgba, num_parts=len(figure.blocks), quality="draft", seed=5, variants=2)
    result = run_engine(ReliefEngine(), request)
    single = ReliefEngine().generate(GenerationRequest(image=figure.rgba, num_parts=len(figure.blocks), quality="draft"))
    np.testing.assert_array_equal(result.texture, single.texture)  # the crop does not depend on the seed
    assert {p.variant for p in result.parts} == {0, 1}
    assert all(p.uvs is not None for p in result.parts)
