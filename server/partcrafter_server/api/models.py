"""Request and response bodies (the `Job` shape is docs/api.md's)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from partcrafter_blender.api_v1 import JobStatus
from partcrafter_blender.inference.params import ParamSpec, param_default, param_specs, param_type

from ..clock import iso
from ..holders import CONTACT_MAX, LABEL_MAX
from ..store import Job



def _param_field(name: str, spec: ParamSpec) -> tuple[Any, Any]:
    """One pydantic field from the parameter's definition (inference/params.py)."""
    default = param_default(name)
    description = f"{spec.description}; null for {spec.none_means}." if spec.none_means else f"{spec.description}."
    if spec.choices:
        return Literal[tuple(c[0] for c in spec.choices)], Field(default, description=description)  # type: ignore[return-value]
    kind: Any = param_type(name)
    return (kind | None if spec.none_means else kind), Field(default, ge=spec.minimum, le=spec.maximum, description=description)


# The `params` form field: every generation parameter plus the engine. A server may lower
# the upper bounds of steps and guidance further (settings, checked on submit).
JobParams: type[BaseModel] = create_model(
    "JobParams",
    __config__=ConfigDict(extra="forbid"),
    engine=(str | None, Field(None, max_length=64, description="Engine name; null for the server's default.")),
    **{name: _param_field(name, spec) for name, spec in param_specs().items()},  # type: ignore[call-overload]
)


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

    # Strict, as the schema reads: a flag is true or false (not 0, "yes" or null); leave it out to keep it.
    model_config = ConfigDict(extra="forbid", strict=True)

    label: str | None = Field(None, max_length=LABEL_MAX, description="The key's label (null clears it).")
    contact: str | None = Field(None, max_length=CONTACT_MAX, description="A contact for the operator (null clears it).")
    processing_restricted: bool = Field(None, description="Restrict processing (true) or lift the restriction (false).")  # type: ignore[assignment]
    analytics_objection: bool = Field(None, description="Object to being counted in /metrics (true) or withdraw (false).")  # type: ignore[assignment]


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


def job_out(job: Job, queue_position: int | None) -> JobOut:
    jid = job.id
    error = ErrorOut(code=job.error_code, message=job.error_message or "") if job.error_code else None
    return JobOut(
        id=jid,
        status=job.status,
        stage=job.stage,
        progress=float(job.progress),
        queue_position=queue_position,
        engine=job.engine,
        params=job.params,
        policy_version=job.policy_version,
        parts=[PartOut(**p) for p in job.parts],
        error=error,
        created_at=iso(job.created_at) or "",
        started_at=iso(job.started_at),
        finished_at=iso(job.finished_at),
        input_deleted_at=iso(job.input_deleted_at),
        result_expires_at=iso(job.result_expires_at),
        result_retention_minutes=round(job.result_retention_s / 60) if job.result_retention_s else None,
        timings=job.timings,
        links=Links(self=f"/v1/jobs/{jid}", result=f"/v1/jobs/{jid}/result", cancel=f"/v1/jobs/{jid}/cancel"),
    )
