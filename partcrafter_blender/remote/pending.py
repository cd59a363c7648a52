"""Jobs submitted to a server and not yet imported, kept in a small JSON file in the
extension's user directory so that they survive a Blender restart."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

PENDING_FILE = "pending_jobs.json"


@dataclass(frozen=True)
class PendingJob:
    job_id: str
    server: str  # base URL
    host: str
    policy_version: str
    image_name: str = "image"
    image_sha256: str = ""
    upload_sha256: str = ""
    num_parts: int | None = None
    seed: int = 0
    steps: int = 50
    guidance: float = 7.0
    quality: str = "standard"
    engine: str = ""
    submitted_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


class PendingJobs:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory) / PENDING_FILE

    def list(self) -> list[PendingJob]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError):
            return []  # unreadable file: show nothing rather than fail the panel
        known = {f.name for f in fields(PendingJob)}
        items = raw.get("jobs") if isinstance(raw, dict) else None
        jobs = []
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict):
                continue  # a hand-edited or foreign entry is not a job
            try:
                jobs.append(PendingJob(**{k: v for k, v in item.items() if k in known}))
            except TypeError:
                continue
        return jobs

    def get(self, server: str, job_id: str) -> PendingJob | None:
        return next((j for j in self.list() if j.server == server and j.job_id == job_id), None)

    def add(self, job: PendingJob) -> None:
        jobs = [j for j in self.list() if not (j.server == job.server and j.job_id == job.job_id)]
        jobs.append(job)
        self._write(jobs)

    def remove(self, server: str, job_id: str) -> None:
        jobs = self.list()
        kept = [j for j in jobs if not (j.server == server and j.job_id == job_id)]
        if len(kept) != len(jobs):
            self._write(kept)

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
