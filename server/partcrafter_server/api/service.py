"""Unversioned service routes and the consent dialog's policy facts."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse

from .. import diskspace
from ..context import ServerContext
from ..problems import ProblemError, responses
from .deps import get_ctx
from .models import HealthOut, PolicyOut

router = APIRouter()


@router.get(
    "/v1/policy", response_model=PolicyOut, tags=["privacy"], summary="Policy version and the retention actually configured"
)
async def get_policy(ctx: ServerContext = Depends(get_ctx)) -> PolicyOut:
    s = ctx.settings
    shortest, longest = s.result_retention_minutes_range
    return PolicyOut(
        policy_version=s.policy_version,
        policy_url=s.policy_url,
        input_retention="deleted when its job ends",
        result_retention_days=s.result_retention_days,
        result_retention_minutes_min=shortest,
        result_retention_minutes_max=longest,
        max_retention_days=s.max_retention_days,
        audit_retention_days=s.audit_retention_days,
        encryption="TLS in transit; AES-256-GCM at rest with a key per file, erased by destroying the key",
        analytics="aggregate counters only (no key ids, addresses or file names); a key holder may object to being counted",
    )


@router.get("/healthz", response_model=HealthOut, tags=["service"])
async def healthz(ctx: ServerContext = Depends(get_ctx)) -> HealthOut:
    ctx.db.scalar("SELECT 1")
    return HealthOut(status="ok")


@router.get(
    "/readyz",
    response_model=HealthOut,
    tags=["service"],
    responses=responses(503),
    summary="Ready for new jobs (liveness is /healthz): the database answers and the disk is above its floor",
)
async def readyz(ctx: ServerContext = Depends(get_ctx)) -> HealthOut:
    ctx.db.scalar("SELECT 1")
    short = diskspace.shortage(ctx.settings)
    if short:  # 503, as readiness probes expect; the code says why
        raise ProblemError(503, "insufficient_storage", short)
    return HealthOut(status="ready")


@router.get("/metrics", response_class=PlainTextResponse, tags=["service"], responses={200: {"content": {"text/plain": {}}}})
async def metrics(ctx: ServerContext = Depends(get_ctx)) -> PlainTextResponse:
    return PlainTextResponse(ctx.metrics.render(), media_type="text/plain; version=0.0.4")
