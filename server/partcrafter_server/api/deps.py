"""Per-request dependencies: the server context, the authenticated owner, the dispatcher."""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .. import holders
from ..auth import Owner, authenticate
from ..context import ServerContext
from ..dispatch import Dispatcher
from ..limits import retry_after
from ..problems import ProblemError

bearer = HTTPBearer(auto_error=False, description="An API key issued with `partcrafter-server keys create`.")


async def get_ctx(request: Request) -> ServerContext:
    return request.app.state.ctx


async def get_dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher


UNCOUNTED = "partcrafter_uncounted"  # request state: the holder objected to the analytics


async def get_owner(
    request: Request,
    ctx: ServerContext = Depends(get_ctx),
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
) -> Owner:
    # async on purpose: one indexed SQLite read is cheaper than a hop to the thread pool
    owner = authenticate(ctx.db, credentials.credentials if credentials else None)
    if owner is None:
        raise ProblemError(401, "unauthorized", "Missing or unknown API key.", {"WWW-Authenticate": "Bearer"})
    held = holders.holder(ctx.db, owner.key_id)
    if held.objects:
        setattr(request.state, UNCOUNTED, True)  # RequestGuard leaves this request out of /metrics
    wait = ctx.request_limiter.take(owner.key_id)
    if wait:
        raise ProblemError(429, "rate_limited", "Too many requests for this key; slow down.", retry_after(wait))
    now = ctx.clock()
    if held.last_used_at is None or now - held.last_used_at >= holders.LAST_USED_GRANULARITY_S:
        await run_in_threadpool(holders.note_use, ctx.db, owner.key_id, now)
    return owner
