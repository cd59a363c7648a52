"""Encryption at rest, master-key rotation, crypto-shredding and the hash-chained audit log."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from partcrafter_server import audit
from partcrafter_server.blobs import BlobError, BlobStore, KeyRing
from partcrafter_server.store import Database
from server_test_support import Client, ServerProcess

from partcrafter_blender.inference.glb import read_glb, read_glb_texture


def _blob_ids(server: ServerProcess, job_id: str) -> list[tuple[str, str, str]]:
    with sqlite3.connect(server.data_dir / "partcrafter.sqlite3") as con:
        return con.execute("SELECT blob_id, kind, master_id FROM blob_keys WHERE job_id=?", (job_id,)).fetchall()


def _blob_path(server: ServerProcess, blob_id: str) -> Path:
    return server.data_dir / "blobs" / blob_id[:2] / blob_id


def test_blobs_are_sealed_with_their_own_keys(client: Client, server: ServerProcess, sample_png: bytes) -> None:
    done = client.wait(client.submit(sample_png, {"num_parts": 2}).json()["id"])
    slow = client.submit(sample_png, {"engine": "slow", "steps": 100}).json()
    ((result_blob, kind, _),) = _blob_ids(server, done["id"])
    ((input_blob, input_kind, _),) = _blob_ids(server, slow["id"])  # still queued/running: its input exists
    assert (kind, input_kind) == ("result", "input")
    for blob_id in (result_blob, input_blob):
        raw = _blob_path(server, blob_id).read_bytes()
        assert raw.startswith(b"PCB1") and b"glTF" not in raw and b"PNG" not in raw and b"IHDR" not in raw
    with sqlite3.connect(server.data_dir / "partcrafter.sqlite3") as con:
        wrapped = [w for (w,) in con.execute("SELECT wrapped FROM blob_keys WHERE blob_id IN (?, ?)", (result_blob, input_blob))]
    assert len(set(wrapped)) == 2 and all(len(w) == 12 + 32 + 16 for w in wrapped)  # nonce + key + tag
    client.http.delete(f"/v1/jobs/{slow['id']}")


def test_delete_shreds_key_then_file(client: Client, server: ServerProcess, sample_png: bytes) -> None:
    done = client.wait(client.submit(sample_png).json()["id"])
    ((blob_id, _, _),) = _blob_ids(server, done["id"])
    sealed = _blob_path(server, blob_id).read_bytes()
    assert client.http.delete(f"/v1/jobs/{done['id']}").status_code == 204
    assert _blob_ids(server, done["id"]) == [] and not _blob_path(server, blob_id).exists()
    # even a copy of the file made beforehand is useless: its key no longer exists anywhere
    db = Database(server.data_dir / "partcrafter.sqlite3")
    blobs = BlobStore(server.data_dir / "blobs", KeyRing(server.data_dir / "keys"), db)
    _blob_path(server, blob_id).write_bytes(sealed)
    try:
        with pytest.raises(BlobError):
            blobs.read(blob_id)
    finally:
        _blob_path(server, blob_id).unlink()


def test_the_relief_picture_lives_only_inside_the_sealed_result_blob(
    client: Client, server: ServerProcess, sample_png: bytes
) -> None:
    """The textured relief result carries the picture: inside the job's one sealed result
    blob, so the result's retention, deletion and erasure rules cover it too."""
    done = client.wait(client.submit(sample_png, {"engine": "relief", "num_parts": 2}).json()["id"])
    assert done["status"] == "succeeded", done
    ((blob_id, kind, _),) = _blob_ids(server, done["id"])
    assert kind == "result"
    raw = _blob_path(server, blob_id).read_bytes()
    assert b"PNG" not in raw and b"IHDR" not in raw  # the embedded image is encrypted with the rest
    downloaded = client.http.get(done["links"]["result"]).content
    assert read_glb_texture(downloaded) is not None
    assert client.http.delete(f"/v1/jobs/{done['id']}").status_code == 204
    assert _blob_ids(server, done["id"]) == [] and not _blob_path(server, blob_id).exists()


def test_master_key_rotation_while_serving(client: Client, server: ServerProcess, sample_png: bytes) -> None:
    done = client.wait(client.submit(sample_png, {"num_parts": 4}).json()["id"])
    before = {p.name for p in (server.data_dir / "keys").glob("master-*.key")}
    server.cli("rotate-master-key")
    after = {p.name for p in (server.data_dir / "keys").glob("master-*.key")}
    assert len(after) == 1 and not (after & before)  # old master keys destroyed
    ((_, _, master_id),) = _blob_ids(server, done["id"])
    assert f"master-{master_id}.key" in after
    res = client.http.get(done["links"]["result"], headers={"Accept-Encoding": "identity"})
    assert res.status_code == 200 and len(read_glb(res.content)) == 4
    fresh = client.wait(client.submit(sample_png).json()["id"])
    assert fresh["status"] == "succeeded"


def test_audit_chain_verifies_and_detects_tampering(
    client: Client, server: ServerProcess, sample_png: bytes, tmp_path: Path
) -> None:
    client.wait(client.submit(sample_png).json()["id"])
    ok = server.cli("audit", "verify")
    assert "intact" in ok.stdout
    with sqlite3.connect(server.data_dir / "partcrafter.sqlite3") as con:
        cols = {r[1] for r in con.execute("PRAGMA table_info(audit)")}
        with pytest.raises(sqlite3.IntegrityError):
            con.execute("UPDATE audit SET event='nothing' WHERE seq=(SELECT MAX(seq) FROM audit)")
    assert cols == {"seq", "at", "event", "key_id", "job_id", "policy_version", "prev_hash", "hash"}  # no content columns

    for tamper in ("edit", "drop_middle", "drop_tail"):
        copy = tmp_path / tamper
        shutil.copytree(server.data_dir, copy, ignore=shutil.ignore_patterns("blobs"))
        with sqlite3.connect(copy / "partcrafter.sqlite3") as con:
            if tamper == "edit":
                con.execute("DROP TRIGGER audit_no_update")
                con.execute("UPDATE audit SET job_id='job_forged' WHERE seq=(SELECT MIN(seq)+1 FROM audit)")
            elif tamper == "drop_middle":
                con.execute("DELETE FROM audit WHERE seq=(SELECT MIN(seq)+2 FROM audit)")
            else:
                con.execute("DELETE FROM audit WHERE seq=(SELECT MAX(seq) FROM audit)")
        out = server.cli("audit", "verify", "--data-dir", str(copy), check=False)
        assert out.returncode == 1 and "TAMPERED" in out.stderr, tamper


def test_audit_prune_keeps_chain_verifiable(tmp_path: Path) -> None:
    db = Database(tmp_path / "a.sqlite3")
    for i in range(6):
        with db.write() as con:
            audit.append(db, con, 1000.0 + i, "job.created", "key", f"job_{i}", "2025-01-13")
    with db.write() as con:
        assert audit.prune(db, con, before=1003.0) == 3
    assert audit.verify(db).ok and audit.verify(db).entries == 3
    with db.write() as con:
        audit.append(db, con, 2000.0, "job.created", "key", "job_x", "2025-01-13")
    assert audit.verify(db).ok
