"""/v1/jobs: submit, poll, cancel, erase, download."""

from __future__ import annotations

import gzip
import hashlib
import json
import sqlite3
from typing import Any

from fastapi import APIRouter, Depends, Header, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from partcrafter_blender.inference import create_engine, engine_names
from partcrafter_blender.inference.params import param_specs

from .. import diskspace, holders
from ..auth import Owner
from ..blobs import BlobDamaged
from ..context import ServerContext
from ..dispatch import Dispatcher
from ..engine_messages import unavailable_reason
from ..intake import clean_upload
from ..limits import retry_after
from ..problems import RESULT_DAMAGED, RESULT_EXPIRED, ProblemError, responses
from ..settings import Settings
from ..store import Job
from .deps import get_ctx, get_dispatcher, get_owner
from .models import JobOut, JobParams, job_out
from .multipart import read_form

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobId = Path(..., min_length=1, max_length=64, description="A job id from POST /v1/jobs.")
_IDEM_PATTERN = r"^[\x21-\x7e]{1,128}$"  # 1-128 visible ASCII characters
_COMMON = (400, 401, 404, 408, 429)

# What a schema cannot state about the image's content; the server answers 422 invalid_image for it.
_IMAGE_RULES = (
    "Each side from the server's min_side to max_side pixels "
    f"({Settings.model_fields['min_side'].default} and {Settings.model_fields['max_side'].default} by default), "
    "decodable, complete and with nothing appended."
)

_UPLOAD_SCHEMA = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["image", "params", "policy_version"],
                "additionalProperties": False,  # any other field is refused (400) and named, never silently dropped
                "properties": {
                    "image": {"type": "string", "format": "binary", "description": f"PNG, JPEG or WEBP. {_IMAGE_RULES}"},
                    "params": {  # sent as a JSON text (see `encoding`)
                        **JobParams.model_json_schema(),
                        "description": f"JSON object: {', '.join(param_specs())} and engine.",
                    },
                    "policy_version": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 64,
                        "description": "Privacy policy version the user consented to (see GET /v1/policy).",
                    },
                    "result_retention_minutes": {
                        "type": "string",
                        "pattern": "^[0-9]{1,9}$",
                        "description": "Keep the result this many minutes instead of the server's retention: only "
                        "shorter, within GET /v1/policy's result_retention_minutes_min/max.",
                    },
                },
            },
            "encoding": {"params": {"contentType": "application/json"}},
        }
    },
}


def _view(ctx: ServerContext, job: Job) -> JobOut:
    position = max(1, ctx.db.queue_position(job.seq)) if job.status == "queued" else None
    return job_out(job, position)


def _owned(ctx: ServerContext, owner: Owner, job_id: str) -> Job:
    job = ctx.db.job(job_id, owner.key_id)
    if job is None:  # someone else's job looks exactly like no job
        raise ProblemError(404, "not_found", "No such job for this key.")
    return job


def _poll_headers(ctx: ServerContext, view: JobOut) -> dict[str, str]:
    if view.status == "queued":
        return retry_after(ctx.pace.queued_wait(view.queue_position or 1))
    if view.status == "running":
        return retry_after(1)
    return {}


def _why_not(ctx: ServerContext, name: str) -> str | None:
    """Why the engine cannot run on this server now (None: it can), checked once per server."""
    if name not in ctx.engine_checks:
        try:
            available = create_engine(name).availability()
            ctx.engine_checks[name] = None if available.ok else unavailable_reason(available)
        except Exception as exc:  # import errors, missing weights: the engine is simply not offered
            ctx.engine_checks[name] = str(exc) or type(exc).__name__
    return ctx.engine_checks[name]


def _check_engine(ctx: ServerContext, name: str) -> None:
    if name not in ctx.settings.allowed_engines or name not in engine_names():
        runnable = [e for e in ctx.settings.allowed_engines if e in engine_names() and _why_not(ctx, e) is None]
        offered = ", ".join(runnable) or "no engine at the moment"
        raise ProblemError(422, "invalid_parameters", f"Unknown engine '{name[:64]}'. This server offers: {offered}.")
    why = _why_not(ctx, name)
    if why is not None:
        raise ProblemError(422, "invalid_parameters", f"The engine '{name}' cannot run on this server: {why}.")


def _parse_params(ctx: ServerContext, raw: bytes | None) -> dict[str, Any]:
    try:
        data = json.loads(raw.decode("utf-8")) if raw else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProblemError(400, "bad_request", "The 'params' field is not valid JSON.") from exc
    if not isinstance(data, dict):
        raise ProblemError(400, "bad_request", "The 'params' field must be a JSON object.")
    try:
        params = JobParams.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "params"
        raise ProblemError(422, "invalid_parameters", f"Invalid parameter '{where}': {first['msg']}.") from exc
    s = ctx.settings
    if params.steps > s.max_steps:
        raise ProblemError(422, "invalid_parameters", f"steps must be at most {s.max_steps} on this server.")
    if params.guidance > s.max_guidance:
        raise ProblemError(422, "invalid_parameters", f"guidance must be at most {s.max_guidance:g} on this server.")
    out = params.model_dump()
    out["engine"] = params.engine or s.default_engine
    return out


def _parse_retention(ctx: ServerContext, raw: bytes | None) -> float | None:
    """The per-job result retention in seconds, or None for the server's own."""
    if raw is None or not raw.strip():
        return None
    shortest, longest = ctx.settings.result_retention_minutes_range
    text = raw.decode("ascii", "replace").strip()
    if not text.isdigit() or not shortest <= int(text) <= longest:
        raise ProblemError(
            422,
            "invalid_parameters",
            f"result_retention_minutes must be a whole number from {shortest} to {longest} "
            "(a job may keep its result shorter than the server does, never longer).",
        )
    return int(text) * 60.0


@router.post(
    "",
    status_code=202,
    response_model=JobOut,
    openapi_extra={"requestBody": _UPLOAD_SCHEMA},
    responses={
        **responses(*_COMMON, 409, 413, 415, 422, 428, 503, 507),
        422: {**responses(422)[422], "description": f"Invalid parameters, or an image the server cannot take. {_IMAGE_RULES}"},
    },
    summary="Submit an image for generation",
)
async def submit_job(
    request: Request,
    response: Response,
    owner: Owner = Depends(get_owner),
    ctx: ServerContext = Depends(get_ctx),
    dispatcher: Dispatcher = Depends(get_dispatcher),
    idempotency_key: str | None = Header(None, alias="Idempotency-Key", pattern=_IDEM_PATTERN),
) -> JobOut:
    s = ctx.settings
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > s.max_upload_bytes + 65536:
        raise ProblemError(413, "too_large", f"The upload is larger than the limit of {s.max_upload_bytes:,} bytes.")
    too_large = ProblemError(413, "too_large", f"The image is larger than the limit of {s.max_upload_bytes:,} bytes.")
    form = await read_form(
        request,
        {"image": s.max_upload_bytes, "params": 8192, "policy_version": 64, "result_retention_minutes": 16},
        {"image": too_large},
    )

    consented = form.get("policy_version", b"").decode("utf-8", "replace").strip()
    if not consented:
        raise ProblemError(428, "consent_required", "Send the privacy policy version the user consented to (policy_version).")
    if consented != s.policy_version:
        raise ProblemError(
            409,
            "policy_outdated",
            f"The privacy policy changed; ask the user to consent to version {s.policy_version}.",
            current_version=s.policy_version,
        )
    params = _parse_params(ctx, form.get("params"))
    retention_s = _parse_retention(ctx, form.get("result_retention_minutes"))
    if "image" not in form:
        raise ProblemError(400, "bad_request", "The 'image' file is missing.")
    image = form["image"]

    idem = None
    if idempotency_key is not None:
        asked = json.dumps([params, consented, retention_s], sort_keys=True).encode()
        digest = hashlib.sha256(image + asked).hexdigest()
        idem = (idempotency_key, digest)
        earlier = await run_in_threadpool(ctx.service.find_idempotent, owner.key_id, idempotency_key)
        if earlier is not None:
            return await _replay(ctx, owner, earlier, digest, response)

    if await run_in_threadpool(lambda: holders.holder(ctx.db, owner.key_id).restricted):
        raise ProblemError(
            409,
            "processing_restricted",
            "You restricted processing for this key, so no new job is accepted. Lift the restriction "
            "(PATCH /v1/me with processing_restricted false) to submit again.",
        )
    await run_in_threadpool(_check_engine, ctx, params["engine"])  # first use may import the engine
    wait = ctx.submit_limiter.take(owner.key_id)
    if wait:
        raise ProblemError(429, "rate_limited", "Too many submissions for this key; wait before sending more.", retry_after(wait))
    if await run_in_threadpool(ctx.db.active_count, owner.key_id) >= s.max_active_jobs_per_key:
        raise ProblemError(
            429,
            "rate_limited",
            f"This key already has {s.max_active_jobs_per_key} unfinished jobs; wait for one to end.",
            retry_after(5),
        )
    if await run_in_threadpool(ctx.db.queued_count) >= s.max_queue:
        raise ProblemError(503, "queue_full", "The server's queue is full; try again shortly.", retry_after(30))
    short = await run_in_threadpool(diskspace.shortage, s)
    if short:
        raise diskspace.insufficient_storage(short)

    try:
        clean = await run_in_threadpool(clean_upload, image, s)
    except ProblemError as exc:
        ctx.metrics.inc("partcrafter_uploads_refused_total", labels={"code": exc.code}, owner=owner.key_id)
        raise
    del image, form
    try:
        job = await run_in_threadpool(ctx.service.submit, owner.key_id, clean.pixels, params, consented, idem, retention_s)
    except sqlite3.IntegrityError:  # the same Idempotency-Key raced in twice: answer with the winner
        earlier = await run_in_threadpool(ctx.service.find_idempotent, owner.key_id, idempotency_key or "")
        if earlier is None:
            raise
        return await _replay(ctx, owner, earlier, idem[1] if idem else "", response)
    except (OSError, sqlite3.OperationalError) as exc:  # the disk filled between the floor check and the write
        if not diskspace.is_disk_full(exc):
            raise
        raise diskspace.insufficient_storage("The server's disk is full; nothing of this upload was kept. Try again later.") from None
    dispatcher.wake()
    view = await run_in_threadpool(_view, ctx, job)
    response.headers["Location"] = view.links.self
    return view


async def _replay(ctx: ServerContext, owner: Owner, earlier: dict[str, Any], digest: str, response: Response) -> JobOut:
    if earlier["request_hash"] != digest:
        raise ProblemError(422, "invalid_parameters", "This Idempotency-Key was already used for a different request.")
    view = await run_in_threadpool(lambda: _view(ctx, _owned(ctx, owner, earlier["job_id"])))
    response.headers["Location"] = view.links.self
    return view


@router.get("/{job_id}", response_model=JobOut, responses=responses(*_COMMON), summary="Job status")
async def get_job(
    response: Response, job_id: str = JobId, owner: Owner = Depends(get_owner), ctx: ServerContext = Depends(get_ctx)
) -> JobOut:
    view = await run_in_threadpool(lambda: _view(ctx, _owned(ctx, owner, job_id)))
    response.headers.update(_poll_headers(ctx, view))
    return view


@router.post("/{job_id}/cancel", status_code=202, response_model=JobOut, responses=responses(*_COMMON), summary="Cancel a job")
def cancel_job(
    job_id: str = JobId,
    owner: Owner = Depends(get_owner),
    ctx: ServerContext = Depends(get_ctx),
    dispatcher: Dispatcher = Depends(get_dispatcher),
) -> JobOut:
    job, tell_worker = ctx.service.request_cancel(owner.key_id, job_id)
    if job is None:
        raise ProblemError(404, "not_found", "No such job for this key.")
    if tell_worker:
        dispatcher.cancel(job_id)
    return _view(ctx, job)


@router.delete("/{job_id}", status_code=204, responses=responses(*_COMMON), summary="Erase a job and everything about it now")
def delete_job(
    job_id: str = JobId,
    owner: Owner = Depends(get_owner),
    ctx: ServerContext = Depends(get_ctx),
    dispatcher: Dispatcher = Depends(get_dispatcher),
) -> Response:
    job = ctx.service.delete(owner.key_id, job_id)
    if job is None:
        raise ProblemError(404, "not_found", "No such job for this key.")
    if job.status == "running":
        dispatcher.cancel(job_id)
    return Response(status_code=204)


@router.get(
    "/{job_id}/result",
    responses={
        200: {
            "description": "One GLB, one named node per part.",
            "content": {"model/gltf-binary": {"schema": {"type": "string", "format": "binary"}}},
        },
        304: {"description": "Not modified (ETag matched)."},
        **responses(*_COMMON, 409, 410),
    },
    response_class=Response,
    summary="Download the result",
)
def get_result(
    request: Request, job_id: str = JobId, owner: Owner = Depends(get_owner), ctx: ServerContext = Depends(get_ctx)
) -> Response:
    job = _owned(ctx, owner, job_id)
    if job.status == "expired":
        raise ProblemError(410, "expired", RESULT_EXPIRED)
    if job.status != "succeeded":
        view = _view(ctx, job)
        detail = (
            "The job has not finished yet."
            if job.status in ("queued", "running")
            else f"The job {job.status}; it has no result."
        )
        raise ProblemError(409, "not_ready", detail, _poll_headers(ctx, view))
    wants_gzip = _accepts_gzip(request.headers.get("accept-encoding", ""))
    etag = f'"{job.result_etag}{"-gzip" if wants_gzip else ""}"'
    headers = {"ETag": etag, "Vary": "Accept-Encoding", "Cache-Control": "private, no-store"}
    match = request.headers.get("if-none-match", "")
    if etag in [t.strip() for t in match.split(",")] or match.strip() == "*":
        return Response(status_code=304, headers=headers)
    try:
        body = ctx.service.read_result(job)
    except BlobDamaged:  # logged by the blob store, without content
        raise ProblemError(410, "result_damaged", RESULT_DAMAGED) from None
    if wants_gzip:
        body = gzip.compress(body, compresslevel=1)  # level 1: float meshes barely compress; speed wins
        headers["Content-Encoding"] = "gzip"
    headers["Content-Disposition"] = f'attachment; filename="{job_id}.glb"'
    return Response(body, media_type="model/gltf-binary", headers=headers)


def _accepts_gzip(header: str) -> bool:
    for item in header.split(","):
        token, _, q = item.strip().partition(";")
        if token.strip().lower() == "gzip":
            q = q.strip()
            try:
                return not (q.startswith("q=") and float(q[2:] or 0) == 0)
            except ValueError:
                return False
    return False
