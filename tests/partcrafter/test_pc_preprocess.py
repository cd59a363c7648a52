"""Preprocessing against conformance preprocess/: pixel_values and prepared images bit-exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load_file

from partcrafter_blender.inference.errors import InputImageError
from partcrafter_blender.inference.partcrafter.preprocess import (
    FeatureExtractorConfig,
    center_crop,
    condition_image,
    pixel_values,
    prepare_image,
    resize_shortest_edge,
)


@pytest.fixture(scope="module")
def fe_config(conformance: Path) -> FeatureExtractorConfig:
    return FeatureExtractorConfig.from_file(conformance / "configs" / "feature_extractor_dinov2" / "preprocessor_config.json")


def _load(conformance: Path, name: str) -> tuple[dict, dict, np.ndarray]:
    spec = json.loads((conformance / "preprocess" / "cases.json").read_text())["cases"][name]
    pixels = np.asarray(Image.open(conformance / "preprocess" / spec["input_png"]))
    return spec, load_file(str(conformance / "preprocess" / spec["file"])), pixels


def test_preprocess_case_is_bit_exact(conformance: Path, fe_config, preprocess_case: str) -> None:
    spec, t, pixels = _load(conformance, preprocess_case)
    if "input_size_wh" in spec:
        assert pixels.shape[1::-1] == tuple(spec["input_size_wh"])
    if "pixel_values" in t:  # RGB input fed as is (no background removal)
        assert pixels.shape[2] == 3
        resized = resize_shortest_edge(pixels, fe_config)
        assert np.array_equal(resized, t["debug.resized_uint8"])
        assert np.array_equal(center_crop(resized, 224, 224), t["debug.center_cropped_uint8"])
        got = pixel_values(pixels, fe_config)
        assert got.dtype == np.float32 and np.array_equal(got, t["pixel_values"])
        # the engine's entry point takes RGBA; fully opaque means "unchanged"
        rgba = np.dstack([pixels, np.full(pixels.shape[:2], 255, np.uint8)])
        cond = condition_image(rgba)
        assert cond.route == "opaque" and np.array_equal(pixel_values(cond.rgb, fe_config), t["pixel_values"])
    elif "prepared_uint8" in t:  # valid alpha: the official prepare_image path
        assert pixels.shape[2] == 4
        prepared = prepare_image(pixels)
        assert prepared.shape[1::-1] == tuple(spec["prepared_size_wh"])
        assert np.array_equal(prepared, t["prepared_uint8"])
        assert np.array_equal(pixel_values(prepared, fe_config), t["pixel_values_prepared"])
        cond = condition_image(pixels)
        assert cond.route == "alpha" and np.array_equal(cond.rgb, t["prepared_uint8"])
    else:
        raise AssertionError(f"new preprocess case {preprocess_case!r}: teach this test how to run it")


def test_background_remover_hook_feeds_prepare_image(conformance: Path) -> None:
    """An opaque photo plus a caller's cut-out gives the same result as the cut-out file."""
    _, t, rgba_file = _load(conformance, "robot_np3_rgba")
    rgb = np.asarray(Image.open(conformance / "preprocess" / "inputs" / "robot_np3.png").convert("RGB"))
    opaque = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    calls = []

    def remover(pixels: np.ndarray) -> np.ndarray:  # the rule that built robot_np3_rgba.png
        calls.append(pixels.shape)
        alpha = np.where(pixels.min(axis=2) < 235, 255, 0).astype(np.uint8)
        return np.dstack([pixels, alpha])

    cond = condition_image(opaque, remove_background=remover)
    assert calls == [rgb.shape] and cond.route == "cutout"
    assert np.array_equal(cond.rgb, t["prepared_uint8"])
    # the hook is not called when the image already has an alpha
    assert condition_image(rgba_file, remove_background=remover).route == "alpha" and len(calls) == 1


def test_remover_that_keeps_everything_leaves_the_image_unchanged() -> None:
    rgba = np.full((40, 30, 4), 200, np.uint8)
    rgba[..., 3] = 255
    cond = condition_image(rgba, remove_background=lambda rgb: np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]))
    assert cond.route == "opaque" and np.array_equal(cond.rgb, rgba[..., :3])


def test_prepare_pads_to_a_square_with_white() -> None:
    rgba = np.zeros((100, 120, 4), np.uint8)
    rgba[10:30, 20:70] = (10, 20, 30, 255)  # 50 wide, 20 high
    out = prepare_image(rgba)
    pad = int(50 * 0.1)
    assert out.shape == (50 + 2 * pad, 50 + 2 * pad, 3)
    top = pad + (50 - 20) // 2
    assert np.array_equal(out[top, pad], [10, 20, 30]) and np.array_equal(out[top - 1, pad], [255, 255, 255])
    assert (out[:top] == 255).all() and (out[:, :pad] == 255).all()


def test_half_transparent_pixels_are_composited_and_truncated() -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[1:3, 1:3] = (0, 100, 200, 128)
    px = prepare_image(rgba, padding_ratio=0.0)[0, 0].astype(int)
    a = np.float32(128) / np.float32(255)
    expected = [int((np.float32(c) / np.float32(255) * a + (np.float32(1) - a)) * np.float32(255)) for c in (0, 100, 200)]
    assert px.tolist() == expected


def test_bad_inputs_get_clear_errors() -> None:
    with pytest.raises(InputImageError, match="fully transparent"):
        condition_image(np.zeros((10, 10, 4), np.uint8))
    with pytest.raises(InputImageError, match="RGBA uint8"):
        condition_image(np.zeros((10, 10, 3), np.uint8))
    strip = np.full((10, 200, 4), 255, np.uint8)
    with pytest.raises(InputImageError, match="too elongated"):
        condition_image(strip)
    nothing = np.full((20, 20, 4), 255, np.uint8)
    with pytest.raises(InputImageError, match="no object"):
        condition_image(nothing, remove_background=lambda rgb: np.zeros((20, 20, 4), np.uint8))


def test_config_refuses_what_it_cannot_reproduce() -> None:
    with pytest.raises(ValueError, match="do_center_crop"):
        FeatureExtractorConfig.from_dict({"do_center_crop": False})
    with pytest.raises(ValueError, match="shortest_edge"):
        FeatureExtractorConfig.from_dict({"size": {"height": 224, "width": 224}})


def test_package_and_preprocessing_import_without_torch() -> None:
    """The extension imports these without the GPU extras; torch must stay out of them."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    code = (
        "import sys; import partcrafter_blender.inference.partcrafter, "
        "partcrafter_blender.inference.partcrafter.preprocess; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
