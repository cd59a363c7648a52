"""Jobs submitted to a server and not yet imported, kept in a small JSON file in the
extension's user directory so that they survive a Blender restart."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from ..inference.params import GenerationParams

PENDING_FILE = "pending_jobs.json"


@dataclass(frozen=True, kw_only=True)
class PendingJob(GenerationParams):
    """A submitted job: where, under which policy, and the parameters it was sent with."""

    job_id: str
    server: str  # base URL
    host: str
    policy_version: str
    image_name: str = "image"
    image_sha256: str = ""
    upload_sha256: str = ""
    engine: str = ""
    submitted_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


class PendingJobs:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory) / PENDING_FILE
        self.notice = ""  # set when an unreadable list was set aside (see _set_aside)

    def list(self) -> list[PendingJob]:
        return self._read()[0]

    def _read(self) -> tuple[list[PendingJob], bool]:
        """The jobs, and whether the file exists but cannot be parsed (it is then set
        aside before the next write instead of being overwritten)."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return [], False
        except ValueError:  # not JSON, or not UTF-8
            return [], True
        except OSError:
            return [], False  # unreadable now (permissions, a lock): show nothing rather than fail the panel
        items = raw.get("jobs") if isinstance(raw, dict) else None
        if not isinstance(items, list):
            return [], True
        known = {f.name for f in fields(PendingJob)}
        jobs = []
        for item in items:
            if not isinstance(item, dict):
                continue  # a hand-edited or foreign entry is not a job
            try:
                jobs.append(PendingJob(**{k: v for k, v in item.items() if k in known}))
            except (TypeError, ValueError):  # missing fields, or parameters out of their limits
                continue
        return jobs, False

    def get(self, server: str, job_id: str) -> PendingJob | None:
        return next((j for j in self.list() if j.server == server and j.job_id == job_id), None)

    def add(self, job: PendingJob) -> None:
        jobs, corrupt = self._read()
        if corrupt:
            self._set_aside()
        jobs = [j for j in jobs if not (j.server == job.server and j.job_id == job.job_id)]
        jobs.append(job)
        self._write(jobs)

    def remove(self, server: str, job_id: str) -> None:
        jobs = self.list()  # a corrupt file lists no job, so nothing is written over it
        kept = [j for j in jobs if not (j.server == server and j.job_id == job_id)]
        if len(kept) != len(jobs):
            self._write(kept)

    def _set_aside(self) -> Path:
        """Keep an unparseable list as `<name>.corrupt-<timestamp>` (its jobs may still be
        recovered by hand) and say so once: after the rename it is no longer in the way."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        backup = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while backup.exists():
            n += 1
            backup = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        os.replace(self.path, backup)
        self.notice = (
            f"PartCrafter: the list of unfinished server jobs could not be read; it was kept as {backup} "
            "and a new list was started."
        )
        print(self.notice, file=sys.stderr, flush=True)
        return backup

    def _write(self, jobs: list[PendingJob]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps({"jobs": [asdict(j) for j in jobs]}, indent=1)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".pending-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)  # atomic: a crash leaves the old list or the new one
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
