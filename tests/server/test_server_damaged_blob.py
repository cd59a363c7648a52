"""A result blob damaged on disk (a flipped byte, a truncation, a deleted file): its download says so, the export delivers the rest."""

from __future__ import annotations

import io
import json
import sqlite3
import zipfile
from pathlib import Path

import pytest
from server_test_support import Client, ServerProcess, png_bytes

from partcrafter_blender.inference.glb import read_glb
from partcrafter_blender.remote.client import ServerClient
from partcrafter_blender.remote.errors import ResultExpired


def _result_path(server: ServerProcess, job_id: str) -> Path:
    with sqlite3.connect(server.data_dir / "partcrafter.sqlite3") as con:
        (blob_id,) = con.execute("SELECT blob_id FROM blob_keys WHERE job_id=? AND kind='result'", (job_id,)).fetchone()
    return server.data_dir / "blobs" / blob_id[:2] / blob_id


def _flip_one_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # inside the ciphertext: the file still looks sealed
    path.write_bytes(bytes(raw))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _delete(path: Path) -> None:
    path.unlink()  # the file is gone, its key is still recorded


@pytest.mark.parametrize("damage", [_flip_one_byte, _truncate, _delete], ids=["flipped_byte", "truncated", "file_deleted"])
def test_damaged_result_is_named_and_the_export_keeps_the_rest(server: ServerProcess, damage) -> None:
    c = Client(server, server.new_key())
    try:
        good = c.wait(c.submit(png_bytes(seed=11), {"num_parts": 2}).json()["id"])
        hurt = c.wait(c.submit(png_bytes(seed=12), {"num_parts": 3}).json()["id"])
        assert good["status"] == hurt["status"] == "succeeded"
        log_start = server.log_path.stat().st_size
        damage(_result_path(server, hurt["id"]))

        r = c.http.get(f"/v1/jobs/{hurt['id']}/result")
        assert r.status_code == 410 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "result_damaged" and "damaged" in r.json()["detail"]
        assert c.http.get(f"/v1/jobs/{good['id']}/result").status_code == 200
        with ServerClient(server.url, c.key or "") as extension, pytest.raises(ResultExpired, match="damaged"):
            extension.result(hurt["id"])  # the extension names the fault, not retention

        export = c.http.get("/v1/me/export")
        assert export.status_code == 200 and export.headers["content-type"] == "application/zip"
        z = zipfile.ZipFile(io.BytesIO(export.content))
        assert sorted(z.namelist()) == sorted(["metadata.json", f"results/{good['id']}.glb"])
        assert len(read_glb(z.read(f"results/{good['id']}.glb"))) == 2
        meta = json.loads(z.read("metadata.json"))
        assert {j["id"] for j in meta["jobs"]} == {good["id"], hurt["id"]}
        (missing,) = meta["unavailable_results"]
        assert missing["job_id"] == hurt["id"] and missing["code"] == "result_damaged" and missing["detail"]

        with open(server.log_path, errors="replace") as f:  # said once per read, with no traceback or content
            f.seek(log_start)
            logged = f.read()
        assert logged.count("is damaged on disk") == 3  # download, extension download, export
        assert "Traceback" not in logged and "InvalidTag" not in logged
    finally:
        c.close()
