"""Slow and greedy clients, bounded in the server process itself (it may face clients directly over TLS).

uvicorn caps concurrent connections (`limit_concurrency`) and idle keep-alive time, but it gives a client
unlimited time and, when the header block arrives in one piece, unlimited size for the request head:
`guarded_protocol` adds both limits to its h11 protocol. `BodyLimit` refuses an oversize body with 413
from its Content-Length, before reading it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from . import problems
from .settings import Settings

UPLOAD_ROUTE = ("POST", "/v1/jobs")  # the image upload: bounded by max_upload_bytes in its own handler


def guarded_protocol(settings: Settings) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a deadline and a size limit on each request head."""
    timeout_s, max_head = settings.header_timeout_s, settings.max_header_bytes

    class GuardedH11Protocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None
        _head_bytes = 0  # bytes of the current request head so far (a body in the same read is not counted)
        _head_tail = b""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()  # a connection that never sends a byte is closed too

        def data_received(self, data: bytes) -> None:
            if self.conn.their_state is h11.IDLE:  # still waiting for a whole request head
                self._arm()
                joined = self._head_tail + data  # the blank line ending the head may straddle two reads
                end = joined.find(b"\r\n\r\n")
                self._head_bytes += len(data) if end < 0 else max(0, end + 4 - len(self._head_tail))
                self._head_tail = joined[-3:]
                if self._head_bytes > max_head:
                    self._refuse_head()
                    return
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # the head is in: the request timeout takes over
                self._disarm()
                self._head_bytes, self._head_tail = 0, b""

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(timeout_s, self._head_too_slow)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_too_slow(self) -> None:
            self._head_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

        def _refuse_head(self) -> None:
            self._disarm()
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            self.transport.close()

    return GuardedH11Protocol


class BodyLimit:
    """Pure ASGI middleware: 413 `too_large` for a body over `max_body_bytes` on every route but the upload."""

    def __init__(self, app: Any, max_body_bytes: int) -> None:
        self.app, self.limit = app, max_body_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"].rstrip("/")) == UPLOAD_ROUTE:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send, 413, "too_large", f"larger than the limit of {self.limit:,} bytes (max_body_bytes)")
            return  # before a byte of the body is read
        if b"transfer-encoding" in headers:  # the API's bodies are small JSON: a length up front keeps the check one test
            await self._refuse(scope, receive, send, 411, "length_required", "sent without a Content-Length")
            return
        await self.app(scope, receive, send)

    async def _refuse(self, scope: dict, receive: Any, send: Any, status: int, code: str, why: str) -> None:
        response = problems.problem_response(status, code, f"The request body is {why}.", {"Connection": "close"})
        await response(scope, receive, send)
