"""Request and response bodies (the `Job` shape is docs/api.md's)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from partcrafter_blender.inference import MAX_PARTS

from ..clock import iso

JobStatus = Literal["queued", "running", "succeeded", "failed", "canceled", "expired"]


class JobParams(BaseModel):
    """The `params` form field. Upper bounds of steps/guidance are settings, checked on submit."""

    model_config = ConfigDict(extra="forbid")

    num_parts: int | None = Field(None, ge=1, le=MAX_PARTS, description="Parts to make, or null for Auto.")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    steps: int = Field(50, ge=1, le=1000)
    guidance: float = Field(7.0, ge=0.0, le=100.0)
    engine: str | None = Field(None, max_length=64, description="Engine name; null for the server's default.")
    quality: Literal["draft", "standard", "high"] = "standard"


class PartOut(BaseModel):
    index: int
    name: str
    status: Literal["ok", "failed"]
    vertices: int
    faces: int
    reason: str | None = None


class ErrorOut(BaseModel):
    code: str
    message: str


class Links(BaseModel):
    self: str
    result: str
    cancel: str


class JobOut(BaseModel):
    id: str
    status: JobStatus
    stage: str
    progress: float
    queue_position: int | None
    engine: str
    params: dict[str, Any]
    policy_version: str
    parts: list[PartOut]
    error: ErrorOut | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    input_deleted_at: str | None
    result_expires_at: str | None
    timings: dict[str, float]
    links: Links


class KeyOut(BaseModel):
    id_hint: str
    created_at: str


class AuditEventOut(BaseModel):
    at: str
    event: str
    job_id: str | None
    policy_version: str | None


class MeOut(BaseModel):
    key: KeyOut
    jobs: list[JobOut]
    audit_events: list[AuditEventOut]
    stored_bytes: int


class DeletedOut(BaseModel):
    deleted_jobs: int


class PolicyOut(BaseModel):
    policy_version: str
    policy_url: str
    input_retention: str
    result_retention_days: float
    max_retention_days: float
    encryption: str
    analytics: str


class HealthOut(BaseModel):
    status: str


def job_out(job: dict[str, Any], queue_position: int | None) -> JobOut:
    jid = job["id"]
    error = ErrorOut(code=job["error_code"], message=job["error_message"] or "") if job["error_code"] else None
    return JobOut(
        id=jid,
        status=job["status"],
        stage=job["stage"],
        progress=float(job["progress"]),
        queue_position=queue_position,
        engine=job["engine"],
        params=job["params"],
        policy_version=job["policy_version"],
        parts=[PartOut(**p) for p in job["parts"]],
        error=error,
        created_at=iso(job["created_at"]) or "",
        started_at=iso(job["started_at"]),
        finished_at=iso(job["finished_at"]),
        input_deleted_at=iso(job["input_deleted_at"]),
        result_expires_at=iso(job["result_expires_at"]),
        timings=job["timings"],
        links=Links(self=f"/v1/jobs/{jid}", result=f"/v1/jobs/{jid}/result", cancel=f"/v1/jobs/{jid}/cancel"),
    )
