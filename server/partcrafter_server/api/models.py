"""Request and response bodies (the `Job` shape is docs/api.md's)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from partcrafter_blender.inference import MAX_PARTS

from ..clock import iso
from ..holders import CONTACT_MAX, LABEL_MAX

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
    result_retention_minutes: int | None = Field(description="The shorter result retention asked for; null: the server's.")
    timings: dict[str, float]
    links: Links


class KeyOut(BaseModel):
    id_hint: str
    created_at: str
    label: str | None = Field(None, description="What the key is called; the holder may correct it (PATCH /v1/me).")
    contact: str | None = Field(None, description="How the operator reaches the holder; the holder may correct it.")
    last_used_at: str | None = None


class AuditEventOut(BaseModel):
    at: str
    event: str
    job_id: str | None
    policy_version: str | None


class MeOut(BaseModel):
    key: KeyOut
    processing_restricted: bool = Field(description="True while the holder restricts processing: no job accepted or started.")
    analytics_objection: bool = Field(description="True while the holder's requests are left out of /metrics.")
    jobs: list[JobOut]
    audit_events: list[AuditEventOut]
    stored_bytes: int


class MeUpdate(BaseModel):
    """PATCH /v1/me: correction, restriction, objection. Fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    label: str | None = Field(None, max_length=LABEL_MAX, description="The key's label (null clears it).")
    contact: str | None = Field(None, max_length=CONTACT_MAX, description="A contact for the operator (null clears it).")
    processing_restricted: bool | None = Field(None, description="Restrict processing (true) or lift the restriction (false).")
    analytics_objection: bool | None = Field(None, description="Object to being counted in /metrics (true) or withdraw (false).")


class DeletedOut(BaseModel):
    deleted_jobs: int


class PolicyOut(BaseModel):
    policy_version: str
    policy_url: str
    input_retention: str
    result_retention_days: float
    result_retention_minutes_min: int = Field(description="Shortest result retention a job may ask for.")
    result_retention_minutes_max: int = Field(description="Longest one: the server's result_retention_days.")
    max_retention_days: float
    audit_retention_days: float = Field(description="Days an audit log entry lives (at most 30).")
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
        result_retention_minutes=round(job["result_retention_s"] / 60) if job.get("result_retention_s") else None,
        timings=job["timings"],
        links=Links(self=f"/v1/jobs/{jid}", result=f"/v1/jobs/{jid}/result", cancel=f"/v1/jobs/{jid}/cancel"),
    )
