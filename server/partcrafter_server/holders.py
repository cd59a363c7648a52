"""What the server holds about a key holder besides their jobs, and the holder's choices.

One `holders` row per key: the label and contact the operator or the holder gave, the
time the key was last used, the holder's restriction of processing and objection to the
aggregate analytics, and the pseudonym and key of their audit entries (audit.py).
Erasure deletes the row with everything in it: the key stays valid, the holder starts
afresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from partcrafter_blender.api_v1 import JobStatus

from . import audit
from .store import Database

if TYPE_CHECKING:
    from .jobs import JobService

LAST_USED_GRANULARITY_S = 60.0  # `last used` is coarse: no write on every request
LABEL_MAX = 100
CONTACT_MAX = 200


@dataclass(frozen=True)
class Holder:
    label: str | None = None
    contact: str | None = None
    restricted_at: float | None = None
    objected_at: float | None = None
    last_used_at: float | None = None

    @property
    def restricted(self) -> bool:
        return self.restricted_at is not None

    @property
    def objects(self) -> bool:
        return self.objected_at is not None


def holder(db: Database, key_id: str) -> Holder:
    row = db.one("SELECT label, contact, restricted_at, objected_at, last_used_at FROM holders WHERE key_id=?", (key_id,))
    return Holder(**row) if row else Holder()


def objects_to_analytics(db: Database, key_id: str) -> bool:
    return db.scalar("SELECT objected_at FROM holders WHERE key_id=?", (key_id,)) is not None


def update(
    db: Database,
    key_id: str,
    now: float,
    *,
    details: dict[str, str | None] | None = None,
    restricted: bool | None = None,
    objects: bool | None = None,
) -> Holder:
    """Correct label/contact, restrict or lift, object or withdraw; each change audited."""
    with db.write() as con:
        audit.holder_identity(con, key_id)  # the row exists from here on
        before = holder(db, key_id)
        for name, value in (details or {}).items():
            if name not in ("label", "contact"):
                raise ValueError(name)
            if value != getattr(before, name):
                con.execute(f"UPDATE holders SET {name}=? WHERE key_id=?", (value, key_id))
                audit.append(db, con, now, f"me.{name}_corrected", key_id)
        if restricted is not None and restricted != before.restricted:
            con.execute("UPDATE holders SET restricted_at=? WHERE key_id=?", (now if restricted else None, key_id))
            audit.append(db, con, now, "me.restricted" if restricted else "me.restriction_lifted", key_id)
        if objects is not None and objects != before.objects:
            con.execute("UPDATE holders SET objected_at=? WHERE key_id=?", (now if objects else None, key_id))
            audit.append(db, con, now, "me.objected" if objects else "me.objection_withdrawn", key_id)
    return holder(db, key_id)


def note_use(db: Database, key_id: str, now: float) -> None:
    """Record that the key was used (at most once a minute)."""
    last = db.scalar("SELECT last_used_at FROM holders WHERE key_id=?", (key_id,))
    if last is not None and now - last < LAST_USED_GRANULARITY_S:
        return
    with db.write() as con:
        audit.holder_identity(con, key_id)
        con.execute("UPDATE holders SET last_used_at=? WHERE key_id=?", (now, key_id))


def erase(service: JobService, key_id: str) -> tuple[int, list[str]]:
    """Erase every job and everything held about the holder; returns (jobs erased, ids that were running).

    The holder's row goes last, in the transaction of the (anonymous) `me.erased` entry:
    from then on nothing links the holder's audit entries to them or to their jobs.
    """
    db = service.db
    erased, running = 0, []
    for job in db.jobs_of(key_id):
        if service.delete(key_id, job.id, event="job.erased") is not None:
            erased += 1
            if job.status == JobStatus.RUNNING:
                running.append(job.id)
    with db.write() as con:
        con.execute("DELETE FROM holders WHERE key_id=?", (key_id,))
        audit.append(db, con, service.clock(), "me.erased")
    db.checkpoint()  # the erased row's old page images leave the WAL now
    return erased, running
