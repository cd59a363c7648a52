"""Append-only, hash-chained audit log: ids, event, time, policy version; never content.

Each entry's hash covers the previous entry's hash, so editing, inserting or removing
an entry in the middle breaks every later hash. Entries older than the retention
limit are pruned from the front; the hash of the last pruned entry becomes the
chain's anchor, and the latest hash is mirrored in `meta` to detect a cut tail.

Entries never name a key holder or a job in clear. The owner column holds the
holder's random pseudonym and the job column the job id sealed (AES-GCM) under the
holder's own audit key; both live in the `holders` row. Erasure deletes that row, so
the holder's old entries stay in the chain (it still verifies) but nothing links them
to the holder or to their jobs any more.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import sqlite3
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .store import Database

GENESIS = "0" * 64


def _entry_hash(prev: str, seq: int, at: float, event: str, key_id: str | None, job_id: str | None, policy: str | None) -> str:
    body = json.dumps([seq, round(at, 6), event, key_id, job_id, policy], separators=(",", ":"))
    return hashlib.sha256(f"{prev}|{body}".encode()).hexdigest()


def append(
    db: Database,
    con: sqlite3.Connection,
    at: float,
    event: str,
    key_id: str | None = None,
    job_id: str | None = None,
    policy_version: str | None = None,
) -> None:
    """Append inside the caller's write transaction (so the event commits with its change)."""
    if key_id is not None:
        pseudonym, audit_key = holder_identity(con, key_id)
        key_id, job_id = pseudonym, _seal(audit_key, job_id) if job_id else None
    last = con.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    if last:
        seq, prev = last[0] + 1, last[1]
    else:
        seq = int(db.get_meta("audit_anchor_seq") or 0) + 1
        prev = db.get_meta("audit_anchor") or GENESIS
    h = _entry_hash(prev, seq, at, event, key_id, job_id, policy_version)
    con.execute(
        "INSERT INTO audit(seq, at, event, key_id, job_id, policy_version, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?)",
        (seq, round(at, 6), event, key_id, job_id, policy_version, prev, h),
    )
    db.set_meta(con, "audit_head", f"{seq}:{h}")


@dataclass(frozen=True)
class Verdict:
    ok: bool
    entries: int
    problem: str = ""


def verify(db: Database) -> Verdict:
    prev = db.get_meta("audit_anchor") or GENESIS
    expected_seq = int(db.get_meta("audit_anchor_seq") or 0) + 1
    rows = db.all("SELECT * FROM audit ORDER BY seq")
    for r in rows:
        if r["seq"] != expected_seq:
            return Verdict(False, len(rows), f"entry {expected_seq} is missing (found {r['seq']})")
        if r["prev_hash"] != prev:
            return Verdict(False, len(rows), f"entry {r['seq']} does not follow its predecessor")
        h = _entry_hash(prev, r["seq"], r["at"], r["event"], r["key_id"], r["job_id"], r["policy_version"])
        if h != r["hash"]:
            return Verdict(False, len(rows), f"entry {r['seq']} was altered")
        prev, expected_seq = h, expected_seq + 1
    head = db.get_meta("audit_head")
    if head and rows and head != f"{rows[-1]['seq']}:{rows[-1]['hash']}":
        return Verdict(False, len(rows), "entries were removed from the end of the log")
    if head and not rows and not head.endswith(prev):
        return Verdict(False, 0, "entries were removed from the end of the log")
    return Verdict(True, len(rows))


def prune(db: Database, con: sqlite3.Connection, before: float) -> int:
    """Drop entries older than `before` from the front, moving the anchor forward."""
    rows = con.execute("SELECT seq, hash FROM audit WHERE at < ? ORDER BY seq", (before,)).fetchall()
    if not rows:
        return 0
    # only a contiguous prefix may go, so the chain stays verifiable
    first = con.execute("SELECT MIN(seq) FROM audit").fetchone()[0]
    prefix = [r for i, r in enumerate(rows) if r[0] == first + i]
    if not prefix:
        return 0
    last_seq, last_hash = prefix[-1]
    con.execute("DELETE FROM audit WHERE seq <= ?", (last_seq,))
    db.set_meta(con, "audit_anchor", last_hash)
    db.set_meta(con, "audit_anchor_seq", str(last_seq))
    return len(prefix)


def events_of(db: Database, key_id: str) -> list[dict]:
    """The holder's own entries, job ids unsealed; none once the holder was erased."""
    row = db.one("SELECT audit_pseudonym, audit_key FROM holders WHERE key_id=?", (key_id,))
    if row is None:
        return []
    events = db.all(
        "SELECT seq, at, event, job_id, policy_version FROM audit WHERE key_id=? ORDER BY seq", (row["audit_pseudonym"],)
    )
    for e in events:
        e["job_id"] = _unseal(row["audit_key"], e["job_id"]) if e["job_id"] else None
    return events


def holder_identity(con: sqlite3.Connection, key_id: str) -> tuple[str, bytes]:
    """The holder's audit pseudonym and key, made on their first entry."""
    con.execute(
        "INSERT OR IGNORE INTO holders(key_id, audit_pseudonym, audit_key) VALUES (?,?,?)",
        (key_id, "h_" + secrets.token_hex(12), AESGCM.generate_key(bit_length=256)),
    )
    pseudonym, audit_key = con.execute("SELECT audit_pseudonym, audit_key FROM holders WHERE key_id=?", (key_id,)).fetchone()
    return pseudonym, audit_key


def _seal(audit_key: bytes, job_id: str) -> str:
    nonce = os.urandom(12)
    return "sealed:" + base64.urlsafe_b64encode(nonce + AESGCM(audit_key).encrypt(nonce, job_id.encode(), None)).decode()


def _unseal(audit_key: bytes, sealed: str) -> str | None:
    try:
        raw = base64.urlsafe_b64decode(sealed.removeprefix("sealed:"))
        return AESGCM(audit_key).decrypt(raw[:12], raw[12:], None).decode()
    except (ValueError, InvalidTag):
        return None
