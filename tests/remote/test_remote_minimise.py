"""Minimisation: what leaves the machine carries pixels only, at most 1024 px long."""

from __future__ import annotations

import hashlib
import io
import struct

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from partcrafter_blender.remote.minimise import MAX_UPLOAD_SIDE, minimise_image_bytes, minimise_pixels


def png_chunks(data: bytes) -> list[bytes]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    pos, names = 8, []
    while pos < len(data):
        length, name = struct.unpack(">I4s", data[pos : pos + 8])
        names.append(name)
        pos += 12 + length
    return names


def jpeg_with_gps(width: int = 1600, height: int = 900, orientation: int = 6) -> bytes:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    arr[: height // 2, : width // 3] = (255, 0, 0)  # top-left marker to check orientation
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "SecretCam"  # Make
    exif[0x0131] = "Secret Software 1.0"
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (48.0, 51.0, 29.0)
    gps[3] = "E"
    gps[4] = (2.0, 17.0, 40.0)
    buf = io.BytesIO()
    icc = b"\x00" * 128  # any ICC payload; it must not survive either
    Image.fromarray(arr).save(buf, format="JPEG", exif=exif.tobytes(), icc_profile=icc, comment=b"secret comment")
    return buf.getvalue()


def test_gps_exif_in_none_out() -> None:
    src = jpeg_with_gps()
    with Image.open(io.BytesIO(src)) as im:  # the input really carries GPS
        assert im.getexif().get_ifd(0x8825)[2] == (48.0, 51.0, 29.0)
    up = minimise_image_bytes(src, "photo")
    assert set(png_chunks(up.png)) <= {b"IHDR", b"IDAT", b"IEND"}
    for needle in (b"Exif", b"SecretCam", b"Secret Software", b"secret comment", b"GPS"):
        assert needle not in up.png
    with Image.open(io.BytesIO(up.png)) as out:
        assert out.format == "PNG"
        assert not out.getexif()
        assert not out.info.get("icc_profile") and "exif" not in out.info and not out.text
    assert up.sha256 == hashlib.sha256(up.png).hexdigest() and up.size == len(up.png)


def test_orientation_applied_and_downscaled() -> None:
    up = minimise_image_bytes(jpeg_with_gps(1600, 900, orientation=6), "photo")
    # Orientation 6 = rotate 90° clockwise on display: portrait, long side capped.
    assert (up.width, up.height) == (576, 1024)
    with Image.open(io.BytesIO(up.png)) as out:
        px = np.asarray(out.convert("RGB"))
    # After a 90° clockwise turn the red top-left block sits at the top right.
    assert tuple(px[5, -5]) == pytest.approx((255, 0, 0), abs=40)


def test_png_text_chunks_and_alpha_kept_as_pixels_only() -> None:
    rgba = np.zeros((1700, 1200, 4), np.uint8)
    rgba[300:1400, 200:1000] = (10, 200, 30, 255)  # opaque subject on transparent ground
    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Jane Secret")
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>secret location</x:xmpmeta>")
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG", pnginfo=info, dpi=(300, 300))
    up = minimise_image_bytes(buf.getvalue(), "art")
    assert max(up.width, up.height) == MAX_UPLOAD_SIDE and (up.width, up.height) == (723, 1024)
    assert set(png_chunks(up.png)) <= {b"IHDR", b"IDAT", b"IEND"}
    assert b"Jane" not in up.png and b"xmpmeta" not in up.png
    with Image.open(io.BytesIO(up.png)) as out:
        arr = np.asarray(out)
    assert out.mode == "RGBA"
    assert arr[0, 0, 3] == 0 and arr[512, 361, 3] == 255
    # Premultiplied resampling: no dark fringe where colour meets transparency.
    edge = arr[(arr[..., 3] > 40) & (arr[..., 3] < 220)]
    assert len(edge) and edge[:, 1].min() > 150


def test_small_images_are_not_upscaled_and_encoding_is_deterministic() -> None:
    rgba = np.full((64, 48, 4), 255, np.uint8)
    a, b = minimise_pixels(rgba), minimise_pixels(rgba.copy())
    assert (a.width, a.height) == (48, 64)
    assert a.sha256 == b.sha256  # the consent dialog and the upload hash the same bytes
