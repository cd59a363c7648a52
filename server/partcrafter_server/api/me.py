"""/v1/me: access, correction, restriction, objection, portability and erasure of
everything the server holds about the caller."""

from __future__ import annotations

import io
import json
import zipfile

from fastapi import APIRouter, Depends, Response

from .. import audit, holders
from ..auth import Owner
from ..blobs import BlobDamaged, BlobError
from ..clock import iso
from ..context import ServerContext
from ..dispatch import Dispatcher
from ..problems import RESULT_DAMAGED, RESULT_EXPIRED, responses
from .deps import get_ctx, get_dispatcher, get_owner
from .models import AuditEventOut, DeletedOut, KeyOut, MeOut, MeUpdate, job_out

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
    held = holders.holder(ctx.db, owner.key_id)
    return MeOut(
        key=KeyOut(
            id_hint=owner.id_hint,
            created_at=iso(owner.created_at) or "",
            label=held.label,
            contact=held.contact,
            last_used_at=iso(held.last_used_at),
        ),
        processing_restricted=held.restricted,
        analytics_objection=held.objects,
        jobs=[job_out(j, max(1, ctx.db.queue_position(j.seq)) if j.status == "queued" else None) for j in jobs],
        audit_events=events,
        stored_bytes=stored,
    )


@router.get("", response_model=MeOut, responses=responses(400, 401, 408, 429), summary="Everything held about the caller")
def get_me(owner: Owner = Depends(get_owner), ctx: ServerContext = Depends(get_ctx)) -> MeOut:
    return _me(ctx, owner)


@router.patch(
    "",
    response_model=MeOut,
    responses=responses(400, 401, 408, 429),
    summary="Correct the key's label or contact; restrict processing; object to the analytics",
)
def update_me(
    changes: MeUpdate,
    owner: Owner = Depends(get_owner),
    ctx: ServerContext = Depends(get_ctx),
    dispatcher: Dispatcher = Depends(get_dispatcher),
) -> MeOut:
    given = changes.model_dump(exclude_unset=True)
    details = {k: (v.strip() or None) if isinstance(v, str) else v for k, v in given.items() if k in ("label", "contact")}
    held = holders.update(
        ctx.db,
        owner.key_id,
        ctx.clock(),
        details=details,
        restricted=given.get("processing_restricted"),
        objects=given.get("analytics_objection"),
    )
    if given.get("processing_restricted") is False and not held.restricted:
        dispatcher.wake()  # its queued jobs may start now
    return _me(ctx, owner)


@router.get(
    "/export",
    response_class=Response,
    responses={
        200: {
            "description": "metadata.json (with `unavailable_results`: jobs whose result could not be read) and results/<job id>.glb",
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
    unavailable = []  # one unreadable result must not cost the holder the rest of the archive
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        for job in ctx.db.jobs_of(owner.key_id):
            if job.status == "succeeded" and job.result_blob:
                try:
                    z.writestr(f"results/{job.id}.glb", ctx.blobs.read(job.result_blob))
                except BlobDamaged:  # logged by the blob store, without content
                    unavailable.append({"job_id": job.id, "code": "result_damaged", "detail": RESULT_DAMAGED})
                except BlobError:  # erased by retention between the listing and the read
                    unavailable.append({"job_id": job.id, "code": "expired", "detail": RESULT_EXPIRED})
        meta = {
            "exported_at": iso(now),
            "policy_version": ctx.settings.policy_version,
            **me.model_dump(),
            "unavailable_results": unavailable,
        }
        z.writestr("metadata.json", json.dumps(meta, indent=2))
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
    deleted, running = holders.erase(ctx.service, owner.key_id)
    for job_id in running:
        dispatcher.cancel(job_id)
    return DeletedOut(deleted_jobs=deleted)
