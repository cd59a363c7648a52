"""Encrypted blobs: envelope encryption, master-key rotation, crypto-shredding.

Every blob (an input image, a result GLB) is sealed with AES-256-GCM under its own
random data key; the data key is stored in SQLite wrapped (AES-GCM) by the current
master key. Only ciphertext is ever written to disk, temp files included. Erasing a
blob deletes its wrapped key first (the file becomes noise), then the file.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .store import Database

_MAGIC = b"PCB1"
_NONCE = 12
_TAG = 16  # AES-GCM's tag, after the ciphertext

log = logging.getLogger("partcrafter_server.blobs")


class BlobError(Exception):
    pass


class BlobDamaged(BlobError):
    """The file is there and its key too, but it does not decrypt: a flipped byte, a truncation."""


@dataclass(frozen=True)
class BlobRef:
    blob_id: str
    job_id: str
    kind: str
    master_id: str
    wrapped: bytes
    size: int


class KeyRing:
    """Master keys on disk (0600), one file per key id; `CURRENT` names the active one."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        if not (folder / "CURRENT").is_file():
            self._activate(self._create())

    def _create(self) -> str:
        key_id = secrets.token_hex(8)
        path = self.folder / f"master-{key_id}.key"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(AESGCM.generate_key(bit_length=256))
        return key_id

    def _activate(self, key_id: str) -> None:
        tmp = self.folder / "CURRENT.tmp"
        tmp.write_text(key_id)
        os.replace(tmp, self.folder / "CURRENT")

    @property
    def current_id(self) -> str:
        return (self.folder / "CURRENT").read_text().strip()

    def key(self, key_id: str) -> AESGCM:
        path = self.folder / f"master-{key_id}.key"
        if not path.is_file():
            raise BlobError(f"master key {key_id} is missing from the key ring")
        return AESGCM(path.read_bytes())

    def ids(self) -> list[str]:
        return sorted(p.stem.removeprefix("master-") for p in self.folder.glob("master-*.key"))

    def wrap(self, blob_id: str, data_key: bytes) -> tuple[str, bytes]:
        key_id = self.current_id
        nonce = os.urandom(_NONCE)
        return key_id, nonce + self.key(key_id).encrypt(nonce, data_key, blob_id.encode())

    def unwrap(self, blob_id: str, key_id: str, wrapped: bytes) -> bytes:
        return self.key(key_id).decrypt(wrapped[:_NONCE], wrapped[_NONCE:], blob_id.encode())

    def rotate(self, db: Database) -> tuple[str, int]:
        """New master key; every data key rewrapped under it; old master keys destroyed.

        The new key becomes current first, so blobs written meanwhile already use it;
        an old key file is only deleted once no wrapped key refers to it.
        """
        old_ids = self.ids()
        new_id = self._create()
        self._activate(new_id)
        new_key = self.key(new_id)
        total = 0
        for _ in range(3):  # a write racing the first pass may still carry an old id
            with db.write() as con:
                rows = con.execute("SELECT blob_id, master_id, wrapped FROM blob_keys WHERE master_id != ?", (new_id,)).fetchall()
                for blob_id, master_id, wrapped in rows:
                    data_key = self.unwrap(blob_id, master_id, wrapped)
                    nonce = os.urandom(_NONCE)
                    con.execute(
                        "UPDATE blob_keys SET master_id=?, wrapped=? WHERE blob_id=?",
                        (new_id, nonce + new_key.encrypt(nonce, data_key, blob_id.encode()), blob_id),
                    )
            total += len(rows)
            if not rows:
                break
        db.checkpoint()
        still_used = {r["master_id"] for r in db.all("SELECT DISTINCT master_id FROM blob_keys")}
        for key_id in old_ids:
            if key_id not in still_used:
                (self.folder / f"master-{key_id}.key").unlink(missing_ok=True)
        return new_id, total


class BlobStore:
    def __init__(self, folder: Path, keyring: KeyRing, db: Database) -> None:
        self.folder = folder
        self.keyring = keyring
        self.db = db
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)

    def path(self, blob_id: str) -> Path:
        return self.folder / blob_id[:2] / blob_id

    def write(self, job_id: str, kind: str, plaintext: bytes) -> BlobRef:
        """Seal and write the file; the caller records the key (`record`) in its transaction."""
        blob_id, data_key, path = self.reserve()
        seal_to_file(path, blob_id, data_key, plaintext)
        return self.adopt(job_id, kind, blob_id, data_key, len(plaintext))

    def reserve(self) -> tuple[str, bytes, Path]:
        """A fresh blob id, data key and path, for a worker that seals the file itself."""
        blob_id = secrets.token_hex(16)
        path = self.path(blob_id)
        path.parent.mkdir(exist_ok=True)
        return blob_id, AESGCM.generate_key(bit_length=256), path

    def adopt(self, job_id: str, kind: str, blob_id: str, data_key: bytes, size: int) -> BlobRef:
        """Wrap the data key of a sealed file under the master key."""
        master_id, wrapped = self.keyring.wrap(blob_id, data_key)
        return BlobRef(blob_id, job_id, kind, master_id, wrapped, size)

    def record(self, con: sqlite3.Connection, ref: BlobRef, now: float) -> None:
        con.execute(
            "INSERT INTO blob_keys(blob_id, job_id, kind, master_id, wrapped, created_at) VALUES (?,?,?,?,?,?)",
            (ref.blob_id, ref.job_id, ref.kind, ref.master_id, ref.wrapped, now),
        )

    def read(self, blob_id: str) -> bytes:
        try:
            raw, data_key = self.read_sealed(blob_id)
            return unseal(blob_id, data_key, raw)
        except BlobDamaged as exc:
            log.error("blob %s is damaged on disk (%s); it cannot be recovered", blob_id, exc)
            raise

    def read_sealed(self, blob_id: str) -> tuple[bytes, bytes]:
        """The file's ciphertext and its data key, for a remote worker that opens it in memory itself."""
        row = self.db.one("SELECT master_id, wrapped FROM blob_keys WHERE blob_id=?", (blob_id,))
        if row is None:
            raise BlobError("blob key was destroyed")
        data_key = self.keyring.unwrap(blob_id, row["master_id"], row["wrapped"])
        try:
            return self.path(blob_id).read_bytes(), data_key
        except FileNotFoundError:  # its key is kept, so it was lost, not erased: a file is erased after its key
            raise BlobDamaged("file is missing") from None

    def forget_keys(self, con: sqlite3.Connection, blob_ids: list[str]) -> None:
        """Step one of crypto-shredding, inside the caller's transaction."""
        con.executemany("DELETE FROM blob_keys WHERE blob_id=?", [(b,) for b in blob_ids])

    def unlink(self, blob_ids: list[str]) -> None:
        """Step two, after the key deletion committed."""
        for blob_id in blob_ids:
            self.path(blob_id).unlink(missing_ok=True)
            self.path(blob_id).with_suffix(".part").unlink(missing_ok=True)  # a write cut short

    def files(self) -> list[Path]:
        return [p for p in self.folder.glob("*/*") if p.is_file()]


def seal(blob_id: str, data_key: bytes, plaintext: bytes) -> bytes:
    """The sealed form of a blob: magic, nonce, AES-GCM ciphertext bound to the blob id."""
    nonce = os.urandom(_NONCE)
    return _MAGIC + nonce + AESGCM(data_key).encrypt(nonce, plaintext, blob_id.encode())


def unseal(blob_id: str, data_key: bytes, raw: bytes) -> bytes:
    if not raw.startswith(_MAGIC):
        raise BlobDamaged("not sealed")
    if len(raw) < len(_MAGIC) + _NONCE + _TAG:
        raise BlobDamaged("truncated")
    nonce, sealed = raw[len(_MAGIC) : len(_MAGIC) + _NONCE], raw[len(_MAGIC) + _NONCE :]
    try:
        return AESGCM(data_key).decrypt(nonce, sealed, blob_id.encode())
    except InvalidTag:  # the tag authenticates every byte: a flip or a cut anywhere ends here
        raise BlobDamaged("authentication failed") from None


def seal_to_file(path: Path, blob_id: str, data_key: bytes, plaintext: bytes) -> None:
    """Encrypt in memory, write only ciphertext (temp name, then rename). Workers call this too."""
    write_sealed(path, seal(blob_id, data_key, plaintext))


def write_sealed(path: Path, sealed: bytes) -> None:
    """Write an already sealed blob (temp name, then rename); anything else is refused."""
    if not sealed.startswith(_MAGIC):
        raise BlobError("refusing to store a blob that is not sealed")
    tmp = path.with_suffix(".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(sealed)
        os.replace(tmp, path)
    except BaseException:  # a full disk or a crash of this call: no orphan .part stays behind
        tmp.unlink(missing_ok=True)
        raise
