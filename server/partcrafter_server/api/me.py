"""/v1/me: access, portability and erasure of everything the server holds about the caller."""

from __future__ import annotations

import io
import json
import zipfile

from fastapi import APIRouter, Depends, Response

from .. import audit
from ..auth import Owner
from ..blobs import BlobError
from ..clock import iso
from ..context import ServerContext
from ..dispatch import Dispatcher
from ..problems import responses
from .deps import get_ctx, get_dispatcher, get_owner
from .models import AuditEventOut, DeletedOut, KeyOut, MeOut, job_out

router = APIRouter(prefix="/v1/me", tags=["privacy"])


def _me(ctx: ServerContext, owner: Owner) -> MeOut:
    jobs = ctx.db.jobs_of(owner.key_id)
    stored = 0
    for job in jobs:
        for blob_id in (job.input_blob, job.result_blob):
            if blob_id:
                path = ctx.blobs.path(blob_id)
                stored += path.stat().st_size if path.exists() else 0
    events = [
        AuditEventOut(at=iso(e["at"]) or "", event=e["event"], job_id=e["job_id"], policy_version=e["policy_version"])
        for e in audit.events_of(ctx.db, owner.key_id)
    ]
    return MeOut(
        key=KeyOut(id_hint=owner.id_hint, created_at=iso(owner.created_at) or ""),
        jobs=[job_out(j, max(1, ctx.db.queue_position(j.seq)) if j.status == "queued" else None) for j in jobs],
        audit_events=events,
        stored_bytes=stored,
    )


@router.get("", response_model=MeOut, responses=responses(400, 401, 408, 429), summary="Everything held about the caller")
def get_me(owner: Owner = Depends(get_owner), ctx: ServerContext = Depends(get_ctx)) -> MeOut:
    return _me(ctx, owner)


@router.get(
    "/export",
    response_class=Response,
    responses={
        200: {
            "description": "metadata.json and results/<job id>.glb",
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        },
        **responses(400, 401, 408, 429),
    },
    summary="A portable archive of everything held about the caller",
)
def export_me(owner: Owner = Depends(get_owner), ctx: ServerContext = Depends(get_ctx)) -> Response:
    now = ctx.clock()
    with ctx.db.write() as con:
        audit.append(ctx.db, con, now, "me.exported", owner.key_id)
    me = _me(ctx, owner)
    buf = io.BytesIO()  # built in memory: the archive holds meshes, so it never touches disk
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        meta = {"exported_at": iso(now), "policy_version": ctx.settings.policy_version, **me.model_dump()}
        z.writestr("metadata.json", json.dumps(meta, indent=2))
        for job in ctx.db.jobs_of(owner.key_id):
            if job.status == "succeeded" and job.result_blob:
                try:
                    z.writestr(f"results/{job.id}.glb", ctx.blobs.read(job.result_blob))
                except BlobError:
                    continue  # erased by retention between the listing and the read
    return Response(
        buf.getvalue(),
        media_type="application/zip",
        headers={"Content-Disposition": 'attachment; filename="partcrafter-export.zip"', "Cache-Control": "private, no-store"},
    )


@router.delete(
    "", response_model=DeletedOut, responses=responses(400, 401, 408, 429), summary="Erase everything held about the caller"
)
def delete_me(
    owner: Owner = Depends(get_owner), ctx: ServerContext = Depends(get_ctx), dispatcher: Dispatcher = Depends(get_dispatcher)
) -> DeletedOut:
    deleted = 0
    for job in ctx.db.jobs_of(owner.key_id):
        if ctx.service.delete(owner.key_id, job.id, event="job.erased") is not None:
            deleted += 1
            if job.status == "running":
                dispatcher.cancel(job.id)
    with ctx.db.write() as con:
        audit.append(ctx.db, con, ctx.clock(), "me.erased", owner.key_id)
    return DeletedOut(deleted_jobs=deleted)
