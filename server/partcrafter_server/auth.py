"""API keys: created by an admin (holder confirmed 13 or older), shown once, stored as a hash.

A key reads `pcs_<id>_<secret>`. The id locates the row; the secret is compared as
SHA-256 digests with `hmac.compare_digest` (constant time). Secrets are 256 random
bits, so a plain hash is not brute-forceable and no slow KDF is needed per request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from . import audit
from .store import Database

_KEY_RE = re.compile(r"^pcs_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_DUMMY_HASH = hashlib.sha256(b"no such key").digest()


@dataclass(frozen=True)
class Owner:
    key_id: str
    created_at: float

    @property
    def id_hint(self) -> str:
        return f"pcs_{self.key_id[:4]}…"


class AgeNotConfirmed(Exception):
    pass


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def create_key(
    db: Database, now: float, holder_is_13_or_older: bool, label: str | None = None, contact: str | None = None
) -> tuple[str, str]:
    """Returns (key id, full key). The full key exists only in this return value."""
    if not holder_is_13_or_older:
        raise AgeNotConfirmed("API keys are only issued to people aged 13 or older; confirm the holder's age.")
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    with db.write() as con:
        con.execute(
            "INSERT INTO api_keys(id, secret_hash, created_at, age_confirmed_at) VALUES (?,?,?,?)",
            (key_id, _hash(secret), now, now),
        )
        audit.append(db, con, now, "key.created", key_id=key_id)  # makes the holder's row
        con.execute("UPDATE holders SET label=?, contact=? WHERE key_id=?", (label or None, contact or None, key_id))
    return key_id, f"pcs_{key_id}_{secret}"


def list_keys(db: Database) -> list[dict]:
    """Every key for the operator: id, label, dates. Never a secret or its hash."""
    return db.all(
        "SELECT k.id, h.label, k.created_at, h.last_used_at, k.revoked_at FROM api_keys k"
        " LEFT JOIN holders h ON h.key_id = k.id ORDER BY k.created_at"
    )


def revoke_key(db: Database, key_id: str, now: float) -> bool:
    with db.write() as con:
        n = con.execute("UPDATE api_keys SET revoked_at=? WHERE id=? AND revoked_at IS NULL", (now, key_id)).rowcount
        if n:
            audit.append(db, con, now, "key.revoked", key_id=key_id)
    return bool(n)


def authenticate(db: Database, presented: str | None) -> Owner | None:
    if not presented:
        return None
    m = _KEY_RE.match(presented)
    row = db.one("SELECT id, secret_hash, created_at, revoked_at FROM api_keys WHERE id=?", (m.group(1),)) if m else None
    expected = row["secret_hash"] if row else _DUMMY_HASH
    ok = hmac.compare_digest(_hash(m.group(2) if m else presented), expected)
    if not (ok and row and row["revoked_at"] is None):
        return None
    return Owner(key_id=row["id"], created_at=row["created_at"])
