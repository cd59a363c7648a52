"""The privacy scan every server test session ends with (conftest.py's session fixture):
no plaintext image or mesh bytes on disk, no keys or file names in the logs.

It covers every server process the session started: data folders (database, WAL, blobs,
key ring), each server's private TMPDIR, and its log; and the Ray cluster's folders when
the Ray suite ran (session logs, object spill folder, the replicas' TMPDIR).
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Any, Iterable

from server_test_engines import MARKER
from server_test_support import ISSUED_KEYS, UPLOAD_NAME

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


def scan_disk(servers: Iterable[Any], extra_folders: Iterable[Path] = ()) -> None:
    """Each server's `data_dir` and `tmp_dir`, and `extra_folders` (a Ray cluster's), every file in full."""
    scanned = 0
    folders = [d for srv in servers for d in (srv.data_dir, srv.tmp_dir)] + list(extra_folders)
    for path in (p for folder in folders for p in _files(folder)):  # listed folder by folder, read at once
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # removed since the listing (SQLite's -shm when a connection closes): holds nothing
            continue
        scanned += len(data)
        for what, pattern in PLAINTEXT.items():
            assert not pattern.search(data), f"plaintext {what} found in {path}"
        assert UPLOAD_NAME.encode() not in data, f"the upload's file name was stored in {path}"
        for key in ISSUED_KEYS:
            assert key.split("_", 2)[2].encode() not in data, f"an API key was written to {path}"
    assert scanned > 0, "the servers of this session left no files to scan"


def scan_logs(servers: Iterable[Any]) -> None:
    """Each server's `log_path`."""
    for srv in servers:
        if not srv.log_path.exists():
            continue
        log = srv.log_path.read_text(errors="replace")
        assert UPLOAD_NAME not in log and "polyglot_png_zip" not in log
        for key in ISSUED_KEYS:
            assert key not in log and key.split("_", 2)[2] not in log
        assert not re.search(r'\d+\.\d+\.\d+\.\d+:\d+ - "', log)  # no uvicorn access lines with client addresses
        assert "/v1/jobs/job_" not in log  # paths with ids never logged, only route templates
