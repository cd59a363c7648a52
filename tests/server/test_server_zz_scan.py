"""Runs last (file name): no plaintext image or mesh bytes on disk, no keys or file names in logs.

Covers every server process the session started: data folders (database, WAL,
blobs, key ring) and each server's private TMPDIR.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest
from server_test_engines import MARKER
from server_test_support import ISSUED_KEYS, STARTED, UPLOAD_NAME

PLAINTEXT = {
    "PNG": re.compile(re.escape(b"\x89PNG\r\n\x1a\n")),
    "PNG header chunk": re.compile(re.escape(b"\x00\x00\x00\rIHDR")),
    "JPEG": re.compile(rb"\xff\xd8\xff[\xe0-\xef]..(?:JFIF|Exif)", re.S),
    "WEBP": re.compile(rb"RIFF....WEBPVP8", re.S),
    "pixel container": re.compile(rb"PCPX.{8}[\x03\x04]x", re.S),
    "GLB": re.compile(re.escape(b"glTF\x02\x00\x00\x00")),
    "mesh vertices": re.compile(re.escape(struct.pack("<ff", MARKER, MARKER))),
}


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def test_no_plaintext_image_or_mesh_bytes_on_disk() -> None:
    if not STARTED:
        pytest.skip("no server ran in this session (run the whole tests/server folder)")
    scanned = 0
    for srv in STARTED:
        for path in _files(srv.data_dir) + _files(srv.tmp_dir):
            data = path.read_bytes()
            scanned += len(data)
            for what, pattern in PLAINTEXT.items():
                assert not pattern.search(data), f"plaintext {what} found in {path}"
            assert UPLOAD_NAME.encode() not in data, f"the upload's file name was stored in {path}"
    assert scanned > 0


def test_logs_hold_no_keys_or_file_names() -> None:
    for srv in STARTED:
        if not srv.log_path.exists():
            continue
        log = srv.log_path.read_text(errors="replace")
        assert UPLOAD_NAME not in log and "polyglot_png_zip" not in log
        for key in ISSUED_KEYS:
            assert key not in log and key.split("_", 2)[2] not in log
        assert not re.search(r'\d+\.\d+\.\d+\.\d+:\d+ - "', log)  # no uvicorn access lines with client addresses
        assert "/v1/jobs/job_" not in log  # paths with ids never logged, only route templates


def test_scanner_recognises_plaintext() -> None:
    """The scan would fail if plaintext were there: each pattern matches a real file of its kind."""
    import io

    from PIL import Image
    from server_test_engines import box

    from partcrafter_blender.inference.glb import write_glb

    samples = {}
    for fmt in ("PNG", "JPEG", "WEBP"):
        buf = io.BytesIO()
        Image.new("RGB", (32, 32), (1, 2, 3)).save(buf, format=fmt)
        samples[fmt] = buf.getvalue()
    glb = write_glb([box(0), box(1)])
    import numpy as np
    from partcrafter_server.intake import pack_pixels

    assert PLAINTEXT["pixel container"].search(pack_pixels(np.zeros((20, 20, 4), np.uint8)))
    assert PLAINTEXT["PNG"].search(samples["PNG"]) and PLAINTEXT["PNG header chunk"].search(samples["PNG"])
    assert PLAINTEXT["JPEG"].search(samples["JPEG"]) and PLAINTEXT["WEBP"].search(samples["WEBP"])
    assert PLAINTEXT["GLB"].search(glb) and PLAINTEXT["mesh vertices"].search(glb)
