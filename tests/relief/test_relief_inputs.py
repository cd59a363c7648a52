"""Awkward inputs, through the real decoder: a clear error or a correct result, never a crash."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from relief_support import check_meshes, run

from partcrafter_blender.inference.errors import InputImageError
from partcrafter_blender.inference.images import decode_image


def encoded(im: Image.Image, fmt: str = "PNG", **save) -> np.ndarray:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **save)
    return decode_image(buf.getvalue(), name="input").rgba


def test_relief_fully_transparent_is_a_clear_error():
    rgba = encoded(Image.new("RGBA", (64, 64), (255, 0, 0, 0)))
    with pytest.raises(InputImageError, match="transparent"):
        run(rgba, 2)


def test_relief_single_colour_is_a_clear_error():
    rgba = encoded(Image.new("RGB", (128, 96), (90, 140, 200)))
    with pytest.raises(InputImageError, match="No object"):
        run(rgba, None)


def test_relief_one_pixel_is_a_clear_error():
    rgba = encoded(Image.new("RGB", (1, 1), (0, 0, 0)))
    with pytest.raises(InputImageError, match="1x1"):
        run(rgba, 1)


def test_relief_speck_is_too_little_foreground():
    img = Image.new("RGB", (800, 800), (255, 255, 255))
    img.paste((0, 0, 0), (400, 400, 406, 406))
    with pytest.raises(InputImageError, match="too small"):
        run(encoded(img), 2)


def test_relief_sixteen_bit_png():
    arr = np.full((120, 160), 60000, np.uint16)
    arr[30:90, 40:120] = 8000
    rgba = encoded(Image.fromarray(arr))
    check_meshes(run(rgba, 2), 2)


def test_relief_cmyk_jpeg():
    im = Image.new("CMYK", (160, 120), (0, 0, 0, 0))
    im.paste((200, 20, 0, 30), (30, 20, 130, 100))
    check_meshes(run(encoded(im, "JPEG", quality=90), 3), 3)


def test_relief_palette_png_with_transparency():
    im = Image.new("P", (100, 100), 0)
    im.putpalette([0, 0, 0, 220, 30, 30, 30, 30, 220] + [0] * (256 * 3 - 9))
    im.paste(1, (20, 20, 80, 50))
    im.paste(2, (20, 50, 80, 80))
    im.info["transparency"] = 0
    rgba = encoded(im, transparency=0)
    result = run(rgba, 2)
    check_meshes(result, 2)
    assert {tuple(round(c, 1) for c in p.color[:3]) for p in result.parts} == {(0.9, 0.1, 0.1), (0.1, 0.1, 0.9)}


def test_relief_rgba_with_alpha_uses_alpha():
    """A white object on a transparent background: alpha, not colour, decides."""
    arr = np.zeros((100, 140, 4), np.uint8)
    arr[20:80, 30:110] = (255, 255, 255, 255)
    result = run(encoded(Image.fromarray(arr)), 1)
    check_meshes(result, 1)
    assert result.metadata["matting"] == "alpha"


def test_relief_webp_and_exif_rotation():
    tall = Image.new("RGB", (80, 200), (255, 255, 255))
    tall.paste((20, 20, 160), (20, 20, 60, 180))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored tall, displayed rotated 90 degrees: wide
    rgba = encoded(tall, "WEBP", quality=95, exif=exif.tobytes())
    assert rgba.shape[1] > rgba.shape[0]
    result = run(rgba, 1)
    v = result.parts[0].vertices
    assert np.ptp(v[:, 0]) > 2 * np.ptp(v[:, 1])
