"""RFC 9457 problem responses with stable `code`s (docs/api.md lists them)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

MEDIA_TYPE = "application/problem+json"

TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    409: "Conflict",
    410: "Gone",
    411: "Length required",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    428: "Consent required",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
    507: "Insufficient storage",
}

# Download (410) and export (listed as unavailable) say the same about a result that is gone.
RESULT_EXPIRED = "The result was erased by the retention policy."
RESULT_DAMAGED = "The stored result was damaged on the server's disk and cannot be recovered; run the job again."


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    code: str
    current_version: str | None = None


class ProblemError(Exception):
    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.headers = headers or {}
        self.extra = extra


def problem_response(status: int, code: str, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = {
        "type": f"https://partcrafter.net/problems/{code}",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


def install(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(_: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(exc.status, exc.code, exc.detail, exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return problem_response(400, "bad_request", f"Invalid request: {where}: {first.get('msg', 'invalid value')}.")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            allow = _documented_methods(app, request) or headers.get("Allow", "")  # a route outside the schema keeps Starlette's
            headers["Allow"] = allow
            return problem_response(405, "method_not_allowed", f"This path answers {allow}.", headers)
        code = {404: "not_found"}.get(exc.status_code, "bad_request")
        return problem_response(exc.status_code, code, str(exc.detail), headers)

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        return problem_response(500, "internal_error", "The server hit an unexpected error; nothing was lost. Try again.")


def _documented_methods(app: FastAPI, request: Request) -> str:
    """Every method the path has (RFC 9110's Allow), as the OpenAPI schema documents them: Starlette names
    only those of the first route that matched, and each method is its own route."""
    template = getattr(request.scope.get("route"), "path", None)
    return ", ".join(sorted(m.upper() for m in app.openapi()["paths"].get(template, {})))


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the problems a route can answer."""
    schema = Problem.model_json_schema()
    return {s: {"description": TITLES.get(s, "Error"), "content": {MEDIA_TYPE: {"schema": schema}}} for s in statuses}
