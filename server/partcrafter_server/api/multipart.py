"""Streaming multipart reader that keeps every byte in memory.

Starlette's form parser spools files over 1 MB to a temporary file on disk, which
would put plaintext images on disk; this reader enforces per-field size limits
while the body streams in and never writes anything.
"""

from __future__ import annotations

from fastapi import Request
from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header

from ..problems import ProblemError


async def read_form(request: Request, limits: dict[str, int], too_large: dict[str, ProblemError]) -> dict[str, bytes]:
    """Read the fields named in `limits` (name -> max bytes). Unknown or repeated fields are refused."""
    ctype, options = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or not options.get(b"boundary"):
        raise ProblemError(
            400,
            "bad_request",
            "Send the job as multipart/form-data with an 'image' file and 'params' and 'policy_version' fields.",
        )
    fields: dict[str, bytearray] = {}
    state: dict[str, object] = {"name": None, "hname": b"", "hvalue": b"", "headers": {}, "open": 0}

    def on_part_begin() -> None:
        state.update(name=None, headers={}, hname=b"", hvalue=b"")
        state["open"] = 1

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["hname"] = state["hname"] + data[start:end]  # type: ignore[operator]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["hvalue"] = state["hvalue"] + data[start:end]  # type: ignore[operator]

    def on_header_end() -> None:
        state["headers"][bytes(state["hname"]).lower()] = bytes(state["hvalue"])  # type: ignore[index]
        state.update(hname=b"", hvalue=b"")

    def on_headers_finished() -> None:
        disposition = state["headers"].get(b"content-disposition", b"")  # type: ignore[union-attr]
        _, params = parse_options_header(disposition)
        name = params.get(b"name", b"").decode("utf-8", "replace")
        if name not in limits:
            raise ProblemError(400, "bad_request", f"Unexpected form field '{name[:40]}'; expected: {', '.join(limits)}.")
        if name in fields:
            raise ProblemError(400, "bad_request", f"The form field '{name}' was sent twice.")
        fields[name] = bytearray()
        state["name"] = name

    def on_part_data(data: bytes, start: int, end: int) -> None:
        name = state["name"]
        buf = fields[name]  # type: ignore[index]
        buf += data[start:end]
        if len(buf) > limits[name]:  # type: ignore[index]
            raise too_large.get(name) or ProblemError(400, "bad_request", f"The form field '{name}' is too long.")  # type: ignore[arg-type]

    def on_part_end() -> None:
        state["open"] = 0

    parser = MultipartParser(
        options[b"boundary"],
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
        },
    )
    ended = False
    try:
        async for chunk in request.stream():
            if chunk:
                parser.write(chunk)
        parser.finalize()
        ended = parser.state.name == "END" if hasattr(parser.state, "name") else True
    except MultipartParseError as exc:
        raise ProblemError(400, "bad_request", "The multipart body is malformed.") from exc
    if state["open"] or not ended:
        raise ProblemError(400, "bad_request", "The multipart body is truncated.")
    return {k: bytes(v) for k, v in fields.items()}
