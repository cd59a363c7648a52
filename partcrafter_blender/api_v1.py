"""The vocabulary of the server API v1 (docs/api.md) that the server and its client share.

No bpy and no HTTP library: the server (partcrafter_server) imports it as well as the
extension's client (remote/client.py).
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """A job's life: queued -> running -> one of the finished states."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"


# A job in one of these states never changes state again (only its deletion is left).
FINISHED_STATES: frozenset[JobStatus] = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.EXPIRED}
)
