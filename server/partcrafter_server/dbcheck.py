"""Is the data folder sound? The start-up refusal of a damaged database, and `partcrafter-server check`.

SQLite silently ignores a write-ahead log whose header is not valid and deletes it when the last
connection closes, with every transaction since the last checkpoint. So the log's header is read
here, before any connection opens, and a damaged one stops the server instead.
"""

from __future__ import annotations

import sqlite3
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from .retention import ORPHAN_GRACE_S

_WAL_MAGICS = {0x377F0682: "<", 0x377F0683: ">"}  # the magic's last bit: checksum words little / big-endian
_WAL_VERSION = 3007000
_WAL_HEADER = 32


def wal_problem(db_path: Path) -> str | None:
    """Why the database's write-ahead log is not one SQLite could replay (None: absent, empty or valid)."""
    wal = Path(f"{db_path}-wal")
    try:
        with wal.open("rb") as log:  # the header only: a log can be hundreds of megabytes
            header = log.read(_WAL_HEADER)
    except FileNotFoundError:
        return None
    if not header:
        return None
    if len(header) < _WAL_HEADER:
        return "its header is cut short"
    magic, version = struct.unpack(">II", header[:8])
    if magic not in _WAL_MAGICS or version != _WAL_VERSION:
        return "it is not a SQLite write-ahead log"
    words = struct.unpack(f"{_WAL_MAGICS[magic]}6I", header[:24])
    if _checksum(words) != struct.unpack(">II", header[24:32]):
        return "its header checksum does not match"
    return None


def _checksum(words: tuple[int, ...]) -> tuple[int, int]:
    """SQLite's WAL checksum (file format, section 4.1) over pairs of 32-bit words."""
    s0 = s1 = 0
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def database_problems(db_path: Path, full: bool) -> list[str]:
    """What SQLite finds wrong with the database: `quick_check` at start-up, `integrity_check` when `full`."""
    if not db_path.exists():
        return []  # a first start creates it
    con = sqlite3.connect(db_path, timeout=30)
    try:
        rows = con.execute("PRAGMA integrity_check" if full else "PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:  # page 1 or the schema itself is unreadable
        return [str(exc)]
    finally:
        con.close()
    found = [row[0] for row in rows]
    return [] if found == ["ok"] else found


def startup_problem(db_path: Path) -> str | None:
    """One line for the operator when the server must not start on this database (None: it may)."""
    wal = wal_problem(db_path)
    if wal:
        return (
            f"The database's write-ahead log {db_path}-wal is damaged ({wal}); the server did not start and changed nothing. "
            f"Copy the data folder somewhere safe, then move {db_path.name}-wal aside (changes since the last checkpoint "
            "are lost) or restore the data folder from a backup, and run `partcrafter-server check` (docs/server.md, Damaged database)."
        )
    problems = database_problems(db_path, full=False)
    if problems:
        return (
            f"The database {db_path} is damaged ({problems[0]}); the server did not start and changed nothing. "
            f"Copy the data folder somewhere safe, then restore {db_path.name} from a backup or rebuild it with "
            f"`sqlite3 {db_path.name}.broken .dump | sqlite3 {db_path.name}`, and run `partcrafter-server check` "
            "(docs/server.md, Damaged database)."
        )
    return None


@dataclass
class CheckReport:
    """What `partcrafter-server check` found. `damaged`: something is lost; orphans are only noise."""

    wal: str | None = None
    database: list[str] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)  # blobs whose key is kept but whose file is gone
    orphan_files: int = 0  # files without a key: undecryptable, the sweeper removes them

    @property
    def damaged(self) -> bool:
        return bool(self.wal or self.database or self.missing_files)


def check(db_path: Path, blob_folder: Path) -> CheckReport:
    """The whole data folder: log header, every database page and index, and blob files against their keys."""
    report = CheckReport(wal=wal_problem(db_path))
    if report.wal:
        return report  # opening the database now would let SQLite drop the log
    report.database = database_problems(db_path, full=True)
    if report.database or not db_path.exists():
        return report
    con = sqlite3.connect(db_path, timeout=30)
    try:
        keys = {row[0] for row in con.execute("SELECT blob_id FROM blob_keys")}
    finally:
        con.close()
    files = {p.name: p for p in blob_folder.glob("*/*") if p.is_file()}
    # a file is written before its key is recorded, and erased after its key: a key without a file is always a loss
    report.missing_files = sorted(keys - files.keys())
    now = time.time()
    report.orphan_files = sum(
        1 for name, p in files.items() if name not in keys and now - p.stat().st_mtime > ORPHAN_GRACE_S
    )
    return report
