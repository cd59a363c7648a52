"""Image decoding: formats by content, limits before decoding, every mode to RGBA."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from partcrafter_blender.inference.errors import InputImageError
from partcrafter_blender.inference.images import decode_image, encode_png, has_meaningful_alpha, load_image


def _png(mode: str, size=(8, 6), **info) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG", **info)
    return buf.getvalue()


def _png_header_only(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "I;16", "1"])
def test_every_mode_becomes_rgba(mode):
    img = decode_image(_png(mode))
    assert img.rgba.shape == (6, 8, 4) and img.rgba.dtype == np.uint8
    assert img.format == "PNG"


def test_sixteen_bit_keeps_brightness():
    arr = np.full((4, 4), 65535, np.uint16)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    assert decode_image(buf.getvalue()).rgba[..., :3].min() == 255


def test_cmyk_jpeg_decodes():
    buf = io.BytesIO()
    Image.new("CMYK", (5, 5), (0, 255, 255, 0)).save(buf, format="JPEG")
    rgba = decode_image(buf.getvalue()).rgba
    assert rgba[2, 2, 0] > 200 and rgba[2, 2, 1] < 60


def test_palette_transparency_kept():
    im = Image.new("P", (4, 4), 0)
    im.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    im.putpixel((0, 0), 1)
    buf = io.BytesIO()
    im.save(buf, format="PNG", transparency=0)
    rgba = decode_image(buf.getvalue()).rgba
    assert rgba[0, 0, 3] == 255 and rgba[1, 1, 3] == 0


def test_exif_orientation_applied():
    im = Image.new("RGB", (10, 4), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif)
    assert decode_image(buf.getvalue()).rgba.shape[:2] == (10, 4)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"hello, I am text", "not a PNG, JPEG or WEBP"),
        (b"GIF89a" + b"\0" * 20, "not a PNG, JPEG or WEBP"),
        (_png_header_only(20000, 20000), "more than the limit"),
        (_png("RGB", (64, 64))[:60], "damaged or truncated"),
    ],
)
def test_bad_bytes_give_clear_errors(data, message):
    with pytest.raises(InputImageError, match=message):
        decode_image(data, name="upload")


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(InputImageError, match="not found"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputImageError, match="empty"):
        load_image(tmp_path / "empty.png")


def test_png_reencode_drops_metadata_and_keeps_pixels():
    rgba = np.zeros((3, 3, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[1, 1] = [10, 20, 30, 255]
    out = encode_png(rgba)
    with Image.open(io.BytesIO(out)) as im:
        assert im.mode == "RGB" and not im.info.get("exif")
    np.testing.assert_array_equal(decode_image(out).rgba, rgba)
    assert not has_meaningful_alpha(rgba)
