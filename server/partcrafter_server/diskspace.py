"""The free-space floor: refuse new work before the data folder's disk is full, not after."""

from __future__ import annotations

import errno
import shutil

from .problems import ProblemError
from .settings import Settings

MB = 1024 * 1024


def shortage(settings: Settings) -> str | None:
    """Why the data folder cannot take new jobs now (None: it can)."""
    free = shutil.disk_usage(settings.data_dir).free
    floor = settings.min_free_disk_mb * MB
    if free < floor:
        return (
            f"The server's disk has {free / MB:.0f} MB free, under its floor of {settings.min_free_disk_mb} MB "
            "(min_free_disk_mb); new jobs wait until the operator frees space."
        )
    return None


def insufficient_storage(detail: str) -> ProblemError:
    return ProblemError(507, "insufficient_storage", detail)


def is_disk_full(exc: BaseException) -> bool:
    """A write that failed for want of space: ENOSPC from a file, or SQLite's 'database or disk is full'."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "database or disk is full" in str(exc)
