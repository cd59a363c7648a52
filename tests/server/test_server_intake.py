"""A corpus of hostile uploads, each refused with the right 4xx; metadata never survives intake."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import numpy as np
import pytest
from partcrafter_server.intake import clean_upload, unpack_pixels
from partcrafter_server.settings import Settings
from PIL import Image, PngImagePlugin
from server_test_support import Client, ServerProcess, png_bytes


def _pil(fmt: str, size=(64, 64), **kw) -> bytes:
    buf = io.BytesIO()
    im = Image.new("RGB", size, (200, 30, 30))
    im.paste((20, 20, 220), (size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4))  # an object
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data) & 0xFFFFFFFF)


def _png_bomb(side: int) -> bytes:
    """A real decompression bomb: side x side grey pixels of zeros in a few hundred KB."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _png_claiming(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b"")


def _jpeg_claiming(w: int, h: int) -> bytes:
    data = bytearray(_pil("JPEG"))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", h, w)
    return bytes(data)


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("evil.html", "<script>alert(1)</script>")
    return buf.getvalue()


def _corrupt_idat() -> bytes:
    data = bytearray(png_bytes((64, 64), seed=3))
    i = data.find(b"IDAT") + 10
    data[i : i + 20] = b"\xff" * 20
    return bytes(data)


GOOD_PNG = png_bytes((64, 64), seed=2)
HOSTILE = [
    ("zero_bytes", b"", "image/png", 422, "invalid_image"),
    ("plain_text", b"hello, not an image", "image/png", 415, "unsupported_media_type"),
    (
        "svg",
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>x()</script></svg>',
        "image/svg+xml",
        415,
        "unsupported_media_type",
    ),
    ("svg_xml", b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "image/png", 415, "unsupported_media_type"),
    ("gif", _pil("GIF"), "image/gif", 415, "unsupported_media_type"),
    ("gif_named_png", _pil("GIF"), "image/png", 415, "unsupported_media_type"),
    ("tiff", _pil("TIFF"), "image/tiff", 415, "unsupported_media_type"),
    ("bmp", _pil("BMP"), "image/bmp", 415, "unsupported_media_type"),
    ("pdf", b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n", "image/png", 415, "unsupported_media_type"),
    ("html", b"<!doctype html><html><body>hi</body></html>", "image/png", 415, "unsupported_media_type"),
    ("zip", _zip(), "image/png", 415, "unsupported_media_type"),
    ("png_header_only", GOOD_PNG[:20], "image/png", 422, "invalid_image"),
    ("png_truncated", GOOD_PNG[: len(GOOD_PNG) // 2], "image/png", 422, "invalid_image"),
    ("png_corrupt_idat", _corrupt_idat(), "image/png", 422, "invalid_image"),
    ("jpeg_truncated", _pil("JPEG")[:300], "image/jpeg", 422, "invalid_image"),
    ("webp_truncated", _pil("WEBP")[:40], "image/webp", 422, "invalid_image"),
    ("png_bomb_8k", _png_bomb(8000), "image/png", 413, "too_large"),
    ("png_claims_huge", _png_claiming(100_000, 100_000), "image/png", 413, "too_large"),
    ("png_claims_wide", _png_claiming(9000, 10), "image/png", 413, "too_large"),
    ("jpeg_claims_huge", _jpeg_claiming(60_000, 60_000), "image/jpeg", 413, "too_large"),
    ("png_tiny", _png_claiming(4, 4), "image/png", 422, "invalid_image"),
    ("polyglot_png_zip", GOOD_PNG + _zip(), "image/png", 422, "invalid_image"),
    ("polyglot_jpeg_zip", _pil("JPEG") + _zip(), "image/jpeg", 422, "invalid_image"),
    ("polyglot_jpeg_html", _pil("JPEG") + b"<html><script>alert(1)</script></html>", "image/jpeg", 422, "invalid_image"),
    ("webp_trailing", _pil("WEBP") + b"trailing", "image/webp", 422, "invalid_image"),
]


@pytest.mark.parametrize("name,data,ctype,status,code", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_upload_refused(client: Client, name: str, data: bytes, ctype: str, status: int, code: str) -> None:
    r = client.submit(data, filename=f"{name}.png", content_type=ctype)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert "Traceback" not in r.text


def test_oversized_upload_and_server_still_healthy(client: Client, server: ServerProcess) -> None:
    big = GOOD_PNG + b"\x00" * (21 * 1024 * 1024)
    r = client.submit(big)
    assert r.status_code == 413 and r.json()["code"] == "too_large"
    assert server.healthy()
    metrics = client.http.get("/metrics").text
    assert 'partcrafter_uploads_refused_total{code="unsupported_media_type"}' in metrics


def test_content_decides_not_the_declared_type(client: Client) -> None:
    for data in (_pil("JPEG"), _pil("WEBP")):
        r = client.submit(data, filename="image.gif", content_type="image/gif")
        assert r.status_code == 202, r.text
        assert client.wait(r.json()["id"])["status"] == "succeeded"


def test_metadata_is_stripped_and_image_reencoded() -> None:
    settings = Settings(data_dir="unused")
    arr = np.zeros((40, 50, 3), np.uint8)
    arr[10:30, 10:40] = (10, 200, 90)
    exif = Image.Exif()
    exif[0x010F] = "SpyCam Maker"  # Make
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0)}  # GPS IFD
    icc = b"ICCPROFILE-SECRET" * 8
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", exif=exif, icc_profile=icc, quality=95)
    jpeg = buf.getvalue()
    assert b"SpyCam" in jpeg and b"ICCPROFILE-SECRET" in jpeg

    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Jane Doe, 12 Secret Road")
    info.add_itxt("GPS", "51.5N 0.1W")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", pnginfo=info, icc_profile=icc, exif=exif)
    png = buf.getvalue()

    for original in (jpeg, png):
        clean = clean_upload(original, settings)
        body = zlib.decompress(clean.pixels[13:])
        assert clean.pixels.startswith(b"PCPX") and len(body) == 50 * 40 * 3  # pixels and nothing else
        for secret in (b"SpyCam", b"ICCPROFILE", b"Jane Doe", b"51.5N", b"Exif"):
            assert secret not in clean.pixels and secret not in body
        assert (clean.width, clean.height) == (50, 40)
        pixels = unpack_pixels(clean.pixels)
        assert pixels.shape == (40, 50, 4) and (pixels[..., 3] == 255).all()
        assert np.abs(pixels[..., :3].astype(int) - arr.astype(int)).mean() < 4  # same picture (JPEG is lossy)


def test_transparency_survives_intake() -> None:
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[8:24, 8:24] = (200, 10, 10, 255)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    clean = clean_upload(buf.getvalue(), Settings(data_dir="unused"))
    assert np.array_equal(unpack_pixels(clean.pixels), rgba)


def _encoded(arr: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


EMPTY = [
    ("transparent_png", _encoded(np.zeros((64, 64, 4), np.uint8), "PNG")),
    ("white_png", _encoded(np.full((64, 64, 3), 255, np.uint8), "PNG")),
    ("grey_jpeg", _encoded(np.full((64, 64, 3), 128, np.uint8), "JPEG")),
    ("speck_png", _encoded(np.pad(np.full((4, 4, 4), 255, np.uint8), ((30, 30), (30, 30), (0, 0))), "PNG")),
]


@pytest.mark.parametrize("name,data", EMPTY, ids=[e[0] for e in EMPTY])
def test_image_without_an_object_is_refused_at_intake_and_nothing_stored(
    client: Client, server: ServerProcess, name: str, data: bytes
) -> None:
    jobs_before = len(client.http.get("/v1/me").json()["jobs"])
    files_before = sorted(p.name for p in (server.data_dir / "blobs").glob("*/*"))
    r = client.submit(data, filename=f"{name}.png")
    assert (r.status_code, r.json()["code"]) == (422, "invalid_image"), r.text
    # the engines' own words: the same shared function decided
    from partcrafter_blender.inference import GenerationRequest, InputImageError, create_engine
    from partcrafter_blender.inference.images import decode_image

    rgba = decode_image(data, name="image").rgba
    for engine in ("relief", "partcrafter"):  # partcrafter refuses before it looks for weights
        with pytest.raises(InputImageError) as engine_said:
            create_engine(engine).generate(GenerationRequest(image=rgba, image_name="image", num_parts=2))
        assert r.json()["detail"] == str(engine_said.value), engine
    assert len(client.http.get("/v1/me").json()["jobs"]) == jobs_before
    assert sorted(p.name for p in (server.data_dir / "blobs").glob("*/*")) == files_before
