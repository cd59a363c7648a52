"""Decode a user's image safely into RGBA uint8 pixels.

Shared by the CLI, the operators, the server and every engine, so that "what is a
valid input" is decided in one place: formats are recognised by content (PNG, JPEG,
WEBP), the pixel count is checked from the header before any decoding (no
decompression bombs), EXIF orientation is applied, and every mode (palette, 16-bit,
CMYK, greyscale) ends up as RGBA.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputImageError

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP")
DEFAULT_MAX_PIXELS = 64_000_000  # 8000 x 8000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class LoadedImage:
    rgba: np.ndarray  # (H, W, 4) uint8
    sha256: str  # of the original bytes
    name: str  # file stem, or the caller's name
    format: str  # "PNG" | "JPEG" | "WEBP"


def sniff_format(data: bytes) -> str | None:
    """Recognise the allowed formats from their magic bytes."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def read_image_file(path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    p = Path(path)
    if not p.exists():
        raise InputImageError(f"Image file not found: {p}")
    if p.is_dir():
        raise InputImageError(f"Expected an image file but got a folder: {p}")
    size = p.stat().st_size
    if size == 0:
        raise InputImageError(f"The image file is empty (0 bytes): {p}")
    if size > max_bytes:
        raise InputImageError(f"The image file is too large ({size} bytes; the limit is {max_bytes}): {p}")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise InputImageError(f"Cannot read the image file {p}: {exc.strerror or exc}") from exc


def decode_image(
    data: bytes,
    name: str = "image",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    label: str | None = None,
) -> LoadedImage:
    """Decode bytes to RGBA. Raises InputImageError with a clear message on any problem;
    messages call the input `label` (e.g. its file name), else `name`."""
    from PIL import Image, ImageOps

    shown = label or name

    if not data:
        raise InputImageError(f"'{shown}' is empty (0 bytes).")
    fmt = sniff_format(data)
    if fmt is None:
        raise InputImageError(f"'{shown}' is not a PNG, JPEG or WEBP image.")
    try:
        # The format plugin directly, not Image.open: its size check must be ours (clear
        # message, configurable limit) and must happen before any pixel is decoded.
        with _PLUGINS[fmt]()(io.BytesIO(data)) as im:
            w, h = im.size
            if w < 1 or h < 1:
                raise InputImageError(f"'{shown}' has no pixels.")
            if w * h > max_pixels:
                raise InputImageError(
                    f"'{shown}' is {w}x{h} pixels, more than the limit of {max_pixels:,} pixels. Downscale it first."
                )
            im.load()
            im = ImageOps.exif_transpose(im)
            rgba = _to_rgba(im)
    except InputImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise InputImageError(f"'{shown}' is too large to decode safely.") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputImageError(f"'{shown}' is damaged or truncated and cannot be decoded ({exc}).") from exc
    return LoadedImage(rgba=rgba, sha256=hashlib.sha256(data).hexdigest(), name=name, format=fmt)


def _png_plugin():
    from PIL import PngImagePlugin

    return PngImagePlugin.PngImageFile


def _jpeg_plugin():
    from PIL import JpegImagePlugin

    return JpegImagePlugin.JpegImageFile


def _webp_plugin():
    from PIL import WebPImagePlugin

    return WebPImagePlugin.WebPImageFile


_PLUGINS = {"PNG": _png_plugin, "JPEG": _jpeg_plugin, "WEBP": _webp_plugin}


def load_image(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    p = Path(path)
    return decode_image(read_image_file(p), name=p.stem, max_pixels=max_pixels, label=p.name)


def _to_rgba(im) -> np.ndarray:
    """Any PIL mode to RGBA uint8, keeping transparency (palette tRNS included)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0
        grey = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        out = np.empty(grey.shape + (4,), np.uint8)
        out[..., :3] = grey[..., None]
        out[..., 3] = 255
        return out
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    elif im.mode == "CMYK":
        im = im.convert("RGB")
    if im.mode != "RGBA":
        im = im.convert("RGBA")
    return np.array(im, dtype=np.uint8)


def encode_png(rgba: np.ndarray) -> bytes:
    """Re-encode pixels as a metadata-free PNG (RGB when fully opaque)."""
    from PIL import Image

    arr = rgba if has_meaningful_alpha(rgba) else rgba[..., :3]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    return buf.getvalue()


def has_meaningful_alpha(rgba: np.ndarray) -> bool:
    """True when the alpha channel actually masks something."""
    a = rgba[..., 3]
    return bool(a.min() < 250)
