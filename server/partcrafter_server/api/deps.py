"""Per-request dependencies: the server context, the authenticated owner, the dispatcher."""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

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


async def get_owner(
    ctx: ServerContext = Depends(get_ctx), credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Owner:
    # async on purpose: one indexed SQLite read is cheaper than a hop to the thread pool
    owner = authenticate(ctx.db, credentials.credentials if credentials else None)
    if owner is None:
        raise ProblemError(401, "unauthorized", "Missing or unknown API key.", {"WWW-Authenticate": "Bearer"})
    wait = ctx.request_limiter.take(owner.key_id)
    if wait:
        raise ProblemError(429, "rate_limited", "Too many requests for this key; slow down.", retry_after(wait))
    return owner
