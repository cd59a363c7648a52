"""Jobs, keys and blob keys in SQLite (WAL), one connection per live thread, closed when its thread ends.

`secure_delete` is on so that erased rows (wrapped data keys above all) are
overwritten in the database file instead of lingering in free pages, and every
erasure ends with a truncating checkpoint (`checkpoint`) so their old page images
leave the WAL too. The database, WAL and SHM files are the owner's alone (0600).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterator

from partcrafter_blender.api_v1 import JobStatus

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY, secret_hash BLOB NOT NULL, created_at REAL NOT NULL,
    age_confirmed_at REAL NOT NULL, revoked_at REAL
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL, owner TEXT NOT NULL, status TEXT NOT NULL,
    stage TEXT NOT NULL DEFAULT 'queued', progress REAL NOT NULL DEFAULT 0,
    engine TEXT NOT NULL, params TEXT NOT NULL, policy_version TEXT NOT NULL,
    parts TEXT NOT NULL DEFAULT '[]', error_code TEXT, error_message TEXT,
    created_at REAL NOT NULL, started_at REAL, finished_at REAL,
    input_blob TEXT, input_deleted_at REAL,
    result_blob TEXT, result_size INTEGER, result_etag TEXT, result_expires_at REAL,
    purge_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, cancel_requested INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT, lease_expires_at REAL, timings TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs(owner);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, seq);
CREATE TABLE IF NOT EXISTS blob_keys (
    blob_id TEXT PRIMARY KEY, job_id TEXT NOT NULL, kind TEXT NOT NULL,
    master_id TEXT NOT NULL, wrapped BLOB NOT NULL, created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS blob_keys_job ON blob_keys(job_id);
CREATE TABLE IF NOT EXISTS idempotency (
    owner TEXT NOT NULL, idem_key TEXT NOT NULL, request_hash TEXT NOT NULL,
    job_id TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (owner, idem_key)
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY, at REAL NOT NULL, event TEXT NOT NULL, key_id TEXT, job_id TEXT,
    policy_version TEXT, prev_hash TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS holders (
    key_id TEXT PRIMARY KEY, label TEXT, contact TEXT, restricted_at REAL, objected_at REAL, last_used_at REAL,
    audit_pseudonym TEXT UNIQUE NOT NULL, audit_key BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""

# Columns added after the first release: existing databases get them on open.
ADDED_COLUMNS = {"jobs": {"result_retention_s": "REAL"}}  # a shorter result retention the client asked for


@dataclass(frozen=True)
class Job:
    """One row of the jobs table, decoded (its JSON columns parsed, its status an enum)."""

    seq: int
    id: str
    owner: str
    status: JobStatus
    stage: str
    progress: float
    engine: str
    params: dict[str, Any]
    policy_version: str
    parts: list[dict[str, Any]]
    error_code: str | None
    error_message: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    input_blob: str | None
    input_deleted_at: float | None
    result_blob: str | None
    result_size: int | None
    result_etag: str | None
    result_expires_at: float | None
    purge_at: float
    attempts: int
    cancel_requested: bool
    lease_owner: str | None
    lease_expires_at: float | None
    timings: dict[str, float]
    result_retention_s: float | None  # a shorter result retention the client asked for (ADDED_COLUMNS)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        values = {f.name: row[f.name] for f in fields(cls)}
        values.update(
            status=JobStatus(row["status"]),
            params=json.loads(row["params"]),
            parts=json.loads(row["parts"]),
            timings=json.loads(row["timings"]),
            cancel_requested=bool(row["cancel_requested"]),
        )
        return cls(**values)

    @property
    def blob_ids(self) -> list[str]:
        """The blobs the job still holds (input, result)."""
        return [b for b in (self.input_blob, self.result_blob) if b]


def add_missing_columns(con: sqlite3.Connection) -> None:
    for table, columns in ADDED_COLUMNS.items():
        have = {row[1] for row in con.execute(f"PRAGMA table_info({table})")}
        for name, decl in columns.items():
            if name not in have:
                con.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")


class ThreadConnection:
    """One thread's connection, closed as soon as the thread ends and its thread-local values are dropped.
    A dropped sqlite3 connection is not enough: its statement cache refers back to it, so it (and its database
    and WAL descriptors) would wait for the cyclic garbage collector, while request threads come and go."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self.con = con
        weakref.finalize(self, con.close)


class Database:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))  # created private, whatever the umask
        self._local = threading.local()
        self._write_lock = threading.RLock()  # one writer per process; SQLite serialises processes
        with self._write_lock:
            self.conn().executescript(SCHEMA)  # idempotent; executescript manages its own transaction
            add_missing_columns(self.conn())
        self.make_private()

    def make_private(self) -> None:
        """0600 for the database and its WAL and SHM (SQLite gives those the database's mode)."""
        for suffix in ("", "-wal", "-shm"):
            try:
                os.chmod(f"{self.path}{suffix}", 0o600)
            except FileNotFoundError:
                pass

    def conn(self) -> sqlite3.Connection:
        held = getattr(self._local, "held", None)
        if held is None:
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute("PRAGMA secure_delete=ON")
            con.execute("PRAGMA foreign_keys=ON")
            held = self._local.held = ThreadConnection(con)
        return held.con

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE so concurrent writers queue instead of failing)."""
        with self._write_lock:
            con = self.conn()
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def one(self, sql: str, args: tuple = ()) -> dict[str, Any] | None:
        row = self.conn().execute(sql, args).fetchone()
        return dict(row) if row else None

    def all(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn().execute(sql, args).fetchall()]

    def scalar(self, sql: str, args: tuple = ()) -> Any:
        row = self.conn().execute(sql, args).fetchone()
        return row[0] if row else None

    def checkpoint(self) -> None:
        """Fold the WAL into the database and truncate it, so erased pages leave the WAL too.
        Another process reading at that instant (a CLI command) can keep it busy for a moment: retried."""
        with self._write_lock:
            for _ in range(20):
                if not self.conn().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
                    return
                time.sleep(0.05)

    # --- meta --------------------------------------------------------------------
    def get_meta(self, name: str) -> str | None:
        return self.scalar("SELECT value FROM meta WHERE name=?", (name,))

    def set_meta(self, con: sqlite3.Connection, name: str, value: str) -> None:
        con.execute(
            "INSERT INTO meta(name, value) VALUES(?, ?) ON CONFLICT(name) DO UPDATE SET value=excluded.value", (name, value)
        )

    # --- jobs --------------------------------------------------------------------
    def job(self, job_id: str, owner: str | None = None) -> Job | None:
        if owner is None:
            row = self.one("SELECT * FROM jobs WHERE id=?", (job_id,))
        else:
            row = self.one("SELECT * FROM jobs WHERE id=? AND owner=?", (job_id, owner))
        return Job.from_row(row) if row else None

    def jobs_of(self, owner: str) -> list[Job]:
        return [Job.from_row(r) for r in self.all("SELECT * FROM jobs WHERE owner=? ORDER BY seq", (owner,))]

    def queue_position(self, seq: int) -> int:
        return int(self.scalar("SELECT COUNT(*) FROM jobs WHERE status='queued' AND seq<=?", (seq,)))

    def queued_count(self) -> int:
        return int(self.scalar("SELECT COUNT(*) FROM jobs WHERE status='queued'"))

    def running_count(self) -> int:
        return int(self.scalar("SELECT COUNT(*) FROM jobs WHERE status='running'"))

    def recent_run_seconds(self, limit: int) -> list[float]:
        """How long the most recently finished jobs ran (canceled ones stopped early, so they are left out)."""
        rows = self.all(
            "SELECT finished_at - started_at AS s FROM jobs WHERE status IN ('succeeded','failed')"
            " AND started_at IS NOT NULL AND finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT ?",
            (limit,),
        )
        return [max(0.0, float(r["s"])) for r in rows]

    def active_count(self, owner: str) -> int:
        return int(self.scalar("SELECT COUNT(*) FROM jobs WHERE owner=? AND status IN ('queued','running')", (owner,)))

    def status_counts(self) -> dict[str, int]:
        return {r["status"]: r["n"] for r in self.all("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")}

