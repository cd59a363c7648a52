"""The plaintext scanner itself (the scan runs when the session ends: conftest.py)."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pytest

import numpy as np
from PIL import Image
from partcrafter_server.intake import pack_pixels
from plaintext_scan import PLAINTEXT, scan_disk, scan_logs
from server_test_support import UPLOAD_NAME
from server_test_engines import box

from partcrafter_blender.inference.glb import write_glb


def test_scanner_recognises_plaintext() -> None:
    """The scan would fail if plaintext were there: each pattern matches a real file of its kind."""
    samples = {}
    for fmt in ("PNG", "JPEG", "WEBP"):
        buf = io.BytesIO()
        Image.new("RGB", (32, 32), (1, 2, 3)).save(buf, format=fmt)
        samples[fmt] = buf.getvalue()
    glb = write_glb([box(0), box(1)])
    assert PLAINTEXT["pixel container"].search(pack_pixels(np.zeros((20, 20, 4), np.uint8)))
    assert PLAINTEXT["PNG"].search(samples["PNG"]) and PLAINTEXT["PNG header chunk"].search(samples["PNG"])
    assert PLAINTEXT["JPEG"].search(samples["JPEG"]) and PLAINTEXT["WEBP"].search(samples["WEBP"])
    assert PLAINTEXT["GLB"].search(glb) and PLAINTEXT["mesh vertices"].search(glb)


def test_scan_fails_on_a_planted_image_or_file_name(tmp_path: Path) -> None:
    data, tmp = tmp_path / "data", tmp_path / "tmp"
    (data / "blobs").mkdir(parents=True)
    tmp.mkdir()
    server = SimpleNamespace(data_dir=data, tmp_dir=tmp, log_path=tmp_path / "server.log")
    (data / "blobs" / "clean.bin").write_bytes(b"ciphertext only")
    scan_disk([server])
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    (tmp / "leftover.bin").write_bytes(b"noise" + buf.getvalue())
    with pytest.raises(AssertionError, match="plaintext PNG found in .*leftover.bin"):
        scan_disk([server])
    server.log_path.write_text(f"saved {UPLOAD_NAME}\n")
    with pytest.raises(AssertionError):
        scan_logs([server])


def test_scan_covers_a_ray_clusters_folders(tmp_path: Path) -> None:
    """The Ray suite registers the cluster's temp, spill and TMPDIR folders: plaintext there fails too."""
    data, tmp, spill = tmp_path / "data", tmp_path / "tmp", tmp_path / "ray" / "spill"
    for folder in (data, tmp, spill):
        folder.mkdir(parents=True)
    server = SimpleNamespace(data_dir=data, tmp_dir=tmp, log_path=tmp_path / "server.log")
    (data / "sealed.bin").write_bytes(b"ciphertext only")
    scan_disk([server], [spill])
    (spill / "ray_spilled_object").write_bytes(b"header" + write_glb([box(0)]))
    with pytest.raises(AssertionError, match="plaintext GLB found in .*ray_spilled_object"):
        scan_disk([server], [spill])
