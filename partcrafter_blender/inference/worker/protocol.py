"""What travels between the extension and the engine worker process.

Parent -> child: JSON lines on the child's stdin. The first line is the job
({"type": "generate", ...} or {"type": "check", ...}); later lines may be
{"type": "cancel"}. Closing stdin also means cancel (the parent went away).

Child -> parent: JSON lines on the child's stdout, one event each:
{"type": "progress", "stage", "fraction", "message"}, then exactly one of
{"type": "result", "meta": {...}} (arrays in result.npz in the job folder),
{"type": "error", "code", "message"} (code: errors.ERROR_CODES) or {"type": "check", "report": {...}}.

Arrays never go through the pipe: the image is image.npy and the meshes are
result.npz, both in a private temporary folder the parent creates and deletes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..contract import FailedPart, GenerationRequest, GenerationResult, PartMesh
from ..params import GenerationParams
from ..errors import PartCrafterError, error_code, error_from_code

IMAGE_FILE = "image.npy"
RESULT_FILE = "result.npz"
STDERR_FILE = "stderr.log"

def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, default=_jsonable, separators=(",", ":")) + "\n").encode("utf-8")


def decode(line: bytes | str) -> dict[str, Any]:
    message = json.loads(line)
    if not isinstance(message, dict) or "type" not in message:
        raise ValueError("not a protocol message")
    return message


def _jsonable(value: Any) -> Any:
    """Metadata may hold numpy scalars, tuples or paths; keep what JSON can say."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def error_message(exc: BaseException) -> dict[str, Any]:
    """The error event for `exc`; an error without a code (an engine bug) travels as engine_failed."""
    return {"type": "error", "code": error_code(exc) or "engine_failed", "message": str(exc)}


def error_from(event: dict[str, Any]) -> PartCrafterError:
    return error_from_code(str(event.get("code", "")), str(event.get("message", "")))


def request_to_message(request: GenerationRequest, engine: str, workdir: Path) -> dict[str, Any]:
    np.save(workdir / IMAGE_FILE, request.image, allow_pickle=False)
    return {
        "type": "generate",
        "engine": engine,
        "workdir": str(workdir),
        "request": {
            "image_name": request.image_name,
            "image_sha256": request.image_sha256,
            "params": request.params.to_wire(),
            "options": request.options,
        },
    }


def request_from_message(message: dict[str, Any]) -> GenerationRequest:
    workdir = Path(message["workdir"])
    image = np.load(workdir / IMAGE_FILE, allow_pickle=False)
    fields = dict(message["request"])
    params = GenerationParams.from_wire(fields.pop("params"))
    return GenerationRequest.from_params(params, image=image, **fields)


def write_result(result: GenerationResult, workdir: Path) -> dict[str, Any]:
    """Arrays into result.npz; everything else into the returned metadata."""
    arrays: dict[str, np.ndarray] = {}
    for i, part in enumerate(result.parts):
        arrays[f"v{i}"] = part.vertices
        arrays[f"f{i}"] = part.faces
    np.savez(workdir / RESULT_FILE, **arrays)
    return {
        "parts": [
            {"name": p.name, "color": list(p.color) if p.color is not None else None, "variant": p.variant}
            for p in result.parts
        ],
        "variant_seeds": result.variant_seeds,
        "engine": result.engine,
        "engine_version": result.engine_version,
        "requested_parts": result.requested_parts,
        "seed": result.seed,
        "steps": result.steps,
        "guidance": result.guidance,
        "seconds": result.seconds,
        "failed_parts": [{"index": f.index, "reason": f.reason} for f in result.failed_parts],
        "metadata": result.metadata,
    }


def read_result(meta: dict[str, Any], workdir: Path) -> GenerationResult:
    with np.load(workdir / RESULT_FILE, allow_pickle=False) as arrays:
        parts = [
            PartMesh(
                name=p["name"],
                vertices=arrays[f"v{i}"],
                faces=arrays[f"f{i}"],
                color=tuple(p["color"]) if p["color"] is not None else None,
                variant=int(p.get("variant", 0)),
            )
            for i, p in enumerate(meta["parts"])
        ]
    return GenerationResult(
        parts=parts,
        engine=meta["engine"],
        engine_version=meta["engine_version"],
        requested_parts=meta["requested_parts"],
        seed=meta["seed"],
        steps=meta["steps"],
        guidance=meta["guidance"],
        seconds=meta["seconds"],
        failed_parts=[FailedPart(f["index"], f["reason"]) for f in meta["failed_parts"]],
        metadata=meta["metadata"],
        variant_seeds=list(meta.get("variant_seeds", [])),
    )
