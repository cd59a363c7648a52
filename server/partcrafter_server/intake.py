"""Upload validation and data minimisation, before anything is stored.

Order matters: byte limit, then format by content (magic bytes, never the name or
the declared type), then dimensions from the header (no pixel is decoded for an
oversized image), then structure (no bytes after the image's end: polyglots), then
the shared decoder, then a fresh container holding nothing but pixels. Only that is kept.

The container (`PCPX`, size, channels, zlib level-1 pixels) rather than a PNG: it
cannot carry metadata by construction, and it packs and unpacks several times
faster than PNG, which matters on the request path and again in the worker.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from partcrafter_blender.inference.errors import InputImageError
from partcrafter_blender.inference.foreground import require_foreground
from partcrafter_blender.inference.images import (
    decode_image,
    has_meaningful_alpha,
    sniff_format,
)

from .problems import ProblemError
from .settings import Settings

_FOREIGN = {
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"BM": "BMP",
    b"%PDF": "PDF",
    b"PK\x03\x04": "ZIP",
    b"\x00\x00\x01\x00": "ICO",
}
_TRAILER_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06", b"%PDF", b"<html", b"<script", b"<?php", b"<svg", b"<?xml")


_SAID_WITH_A_VOWEL = {"ICO", "SVG"}  # "an ICO file", "an SVG file"; "a GIF", "a TIFF", "a BMP"...

_PIXELS_MAGIC = b"PCPX"


@dataclass(frozen=True)
class CleanImage:
    pixels: bytes  # `pack_pixels` output: the only form of the image the server keeps
    width: int
    height: int
    source_format: str


def _refuse_type(data: bytes) -> ProblemError:
    head = data[:512].lstrip().lower()
    kind = next((name for magic, name in _FOREIGN.items() if data.startswith(magic)), None)
    if kind is None and (head.startswith(b"<svg") or head.startswith(b"<?xml") or b"<svg" in head):
        kind = "SVG"
    what = f"{'an' if kind in _SAID_WITH_A_VOWEL else 'a'} {kind} file" if kind else "not a recognised image"
    return ProblemError(415, "unsupported_media_type", f"The upload is {what}. Send a PNG, JPEG or WEBP image.")


def _header_size(data: bytes, fmt: str) -> tuple[int, int]:
    if fmt == "PNG":
        if len(data) < 33 or data[12:16] != b"IHDR":
            raise ProblemError(422, "invalid_image", "The PNG is damaged: its header is missing or truncated.")
        return struct.unpack(">II", data[16:24])
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as im:  # lazy: reads the header only
            return im.size
    except Image.DecompressionBombError as exc:
        raise ProblemError(413, "too_large", "The image has too many pixels to decode safely.") from exc
    except (OSError, SyntaxError, ValueError, struct.error) as exc:
        raise ProblemError(422, "invalid_image", f"The {fmt} image is damaged or truncated and cannot be read.") from exc


def _check_structure(data: bytes, fmt: str) -> None:
    """Refuse bytes after the image's end: the signature of a polyglot file."""
    if fmt == "PNG":
        offset = 8
        while True:
            if offset + 12 > len(data):
                raise ProblemError(422, "invalid_image", "The PNG is truncated (it has no end chunk).")
            length, ctype = struct.unpack(">I4s", data[offset : offset + 8])
            offset += 12 + length
            if ctype == b"IEND":
                break
        if offset != len(data):
            raise ProblemError(422, "invalid_image", "The PNG has extra data after its end; refusing a possible polyglot file.")
    elif fmt == "WEBP":
        declared = struct.unpack("<I", data[4:8])[0] + 8
        if declared != len(data):
            raise ProblemError(422, "invalid_image", "The WEBP's size does not match its header (truncated or extra data).")
    else:  # JPEG: cameras append harmless trailers, so only foreign containers are refused
        end = data.rfind(b"\xff\xd9")
        if end < 0:
            raise ProblemError(422, "invalid_image", "The JPEG is truncated (it has no end marker).")
        trailer = data[end + 2 :].lower()
        if any(sig.lower() in trailer for sig in _TRAILER_SIGNATURES):
            raise ProblemError(
                422, "invalid_image", "The JPEG carries another file after its end; refusing a possible polyglot file."
            )


def clean_upload(data: bytes, settings: Settings) -> CleanImage:
    """Validate an upload and return its minimised re-encoding; raises ProblemError."""
    if not data:
        raise ProblemError(422, "invalid_image", "The image is empty (0 bytes).")
    if len(data) > settings.max_upload_bytes:
        raise ProblemError(413, "too_large", f"The image is {len(data):,} bytes; the limit is {settings.max_upload_bytes:,}.")
    fmt = sniff_format(data)
    if fmt is None:
        raise _refuse_type(data)
    w, h = _header_size(data, fmt)
    if w > settings.max_side or h > settings.max_side or w * h > settings.max_pixels:
        raise ProblemError(
            413,
            "too_large",
            f"The image is {w}x{h} pixels; the limit is {settings.max_pixels:,} pixels and {settings.max_side} per side.",
        )
    if w < settings.min_side or h < settings.min_side:
        raise ProblemError(422, "invalid_image", f"The image is {w}x{h} pixels; at least {settings.min_side} per side is needed.")
    _check_structure(data, fmt)
    try:
        loaded = decode_image(data, name="image", max_pixels=settings.max_pixels)
        require_foreground(loaded.rgba)  # the engines' own test: refused here, never stored
    except InputImageError as exc:
        raise ProblemError(422, "invalid_image", str(exc).replace("'image' ", "The image ")) from exc
    return CleanImage(pixels=pack_pixels(loaded.rgba), width=loaded.rgba.shape[1], height=loaded.rgba.shape[0], source_format=fmt)


def pack_pixels(rgba: np.ndarray) -> bytes:
    """Pixels alone (RGB when fully opaque): no EXIF, GPS, ICC, text chunks or trailing data survive."""
    arr = np.ascontiguousarray(rgba if has_meaningful_alpha(rgba) else rgba[..., :3])
    h, w, c = arr.shape
    return _PIXELS_MAGIC + struct.pack("<IIB", w, h, c) + zlib.compress(arr.tobytes(), 1)


def unpack_pixels(data: bytes) -> np.ndarray:
    """The RGBA array `pack_pixels` stored."""
    if not data.startswith(_PIXELS_MAGIC):
        raise ValueError("not a pixel container")
    w, h, c = struct.unpack("<IIB", data[4:13])
    arr = np.frombuffer(zlib.decompress(data[13:]), dtype=np.uint8).reshape(h, w, c)
    if c == 4:
        return arr.copy()
    out = np.empty((h, w, 4), np.uint8)
    out[..., :3] = arr
    out[..., 3] = 255
    return out
