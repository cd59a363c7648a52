"""One generation, start to finish, without bpy: image in, checked GenerationResult out.

Shared by the generate operator (on its worker thread, or blocking in the
background) and by the command line, so both decide "is this input usable" and
"which engine runs" the same way.
"""

from __future__ import annotations

import difflib
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .inference import (
    CancelToken,
    Engine,
    EngineUnavailable,
    GenerationParams,
    GenerationRequest,
    GenerationResult,
    PartCrafterError,
    ProgressCallback,
    ProgressEvent,
    create_engine,
    run_engine,
)
from .inference.images import LoadedImage, decode_image, encode_png, read_image_file


@dataclass(frozen=True)
class ImageInput:
    """Where the reference image comes from: bytes of a file, or pixels taken from a
    Blender image (re-encoded as PNG so its SHA-256 is well defined)."""

    name: str
    data: bytes | None = None
    rgba: np.ndarray | None = None
    label: str | None = None  # what error messages call it, e.g. the file name

    @classmethod
    def from_file(cls, path: str, name: str | None = None) -> ImageInput:
        from pathlib import Path

        return cls(name=name or Path(path).stem, data=read_image_file(path), label=Path(path).name)

    def load(self) -> LoadedImage:
        if self.data is not None:
            return decode_image(self.data, name=self.name, label=self.label)
        assert self.rgba is not None
        return decode_image(encode_png(self.rgba), name=self.name)


@dataclass
class GenerationOutcome:
    result: GenerationResult
    image: LoadedImage
    params: GenerationParams  # what was asked for (recorded on every part)
    job_id: str
    created: str  # ISO-8601 UTC, when the job started
    seconds: float
    # The engine's own flag; an outcome built without knowing the engine never claims PartCrafter.
    is_preview: bool = True


EngineFactory = Callable[[], Engine]


def engine_factory(name: str, python_executable: str = "", options: dict[str, Any] | None = None) -> EngineFactory:
    """Relief always runs in process; other engines run in the interpreter the user set
    (worker process) when one is set, otherwise in process through the registry."""
    if python_executable and name != "relief":

        def make_worker() -> Engine:
            try:
                from .inference.worker import WorkerEngine
            except ImportError as exc:
                raise EngineUnavailable(f"The worker process runner is missing from this install: {exc}.") from exc
            return WorkerEngine(python_executable, name, dict(options or {}))

        return make_worker
    return lambda: create_engine(name, options)


def engine_label(name: str) -> str:
    """The engine's own label (engine modules import without torch), or its name when
    it cannot be built here."""
    try:
        return str(create_engine(name).label)
    except (PartCrafterError, ImportError):
        return name


RELIEF_LABEL = engine_label("relief")

# Device names the neural engine takes: auto, cpu, cuda (the first GPU) or cuda:N (GPU number N).
DEVICE_NAME = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_device_name(text: str) -> str:
    if DEVICE_NAME.match(text) is None:
        raise EngineUnavailable(f"'{text}' is not a device; use auto, cpu, cuda or cuda:N (N = the GPU's number, from 0).")
    return text


# Engine options the preferences and the CLI set through their own fields and flags.
DEDICATED_OPTIONS = frozenset({"weights_path", "device", "dtype", "offload"})
_OPTION = re.compile(r"^([A-Za-z_]\w*)=(\S+)$")


def parse_engine_options(text: str) -> dict[str, Any]:
    """Advanced engine options written as `key=value` pairs separated by commas or spaces,
    e.g. "num_tokens=64, dense_depth=5". Whole numbers become ints, other numbers floats."""
    options: dict[str, Any] = {}
    for item in re.split(r"[\s,]+", text.strip()):
        if not item:
            continue
        match = _OPTION.match(item)
        if match is None:
            raise EngineUnavailable(f"'{item}' is not an engine option; write options as key=value, e.g. num_tokens=64.")
        key, raw = match.groups()
        if key in DEDICATED_OPTIONS:
            raise EngineUnavailable(f"The engine option '{key}' has its own setting (preference or command-line flag); use that, not an extra option.")
        options[key] = _option_value(raw)
    return options


def check_engine_options(engine_name: str, extra: dict[str, Any]) -> None:
    """Refuse advanced options the engine does not know, naming the ones it does. Engines
    that declare no `extra_options` (plugins known only to a worker) are not checked."""
    try:
        known = getattr(create_engine(engine_name), "extra_options", None)
    except (PartCrafterError, ImportError):
        return  # unknown here: the engine itself says what it makes of them
    if known is None:
        return
    unknown = sorted(set(extra) - set(known))
    if unknown:
        hints = [f"'{u}' (did you mean '{close[0]}'?)" if (close := difflib.get_close_matches(u, known, 1)) else f"'{u}'"
                 for u in unknown]  # fmt: skip
        names = ", ".join(known) if known else "none"
        raise EngineUnavailable(
            f"Unknown engine option{'s' if len(unknown) > 1 else ''} {', '.join(hints)} for the '{engine_name}' engine; "
            f"it knows: {names}."
        )


def _option_value(raw: str) -> Any:
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def run_generation(
    image: ImageInput,
    params: GenerationParams,
    make_engine: EngineFactory,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    options: dict[str, Any] | None = None,
) -> GenerationOutcome:
    """Decode the image, then run the engine with `params` and the engine `options`
    (see inference/run.py for the checks).

    Raises the PartCrafterError family with messages meant for people.
    """
    report = progress or (lambda _e: None)
    cancel = cancel or CancelToken()
    started = time.perf_counter()
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    report(ProgressEvent("preprocess", 0.0, "Reading the image"))
    loaded = image.load()
    cancel.raise_if_cancelled()
    engine = make_engine()
    request = GenerationRequest.from_params(
        params, image=loaded.rgba, image_name=loaded.name, image_sha256=loaded.sha256, options=dict(options or {})
    )
    try:
        result = run_engine(engine, request, report, cancel)
    finally:
        close = getattr(engine, "close", None)
        if close is not None:  # the server backend's connections close when the job ends, however it ends
            close()
    seconds = time.perf_counter() - started
    report(ProgressEvent("mesh", 1.0, "Done"))
    job_id = str(result.metadata.get("job_id") or uuid.uuid4().hex)  # a server job keeps the server's id
    return GenerationOutcome(
        result=result,
        image=loaded,
        params=params,
        job_id=job_id,
        created=created,
        seconds=seconds,
        is_preview=bool(engine.is_preview),
    )


def provenance(outcome: GenerationOutcome) -> dict[str, Any]:
    """Custom properties stored on every part object (all values Blender can store)."""
    r = outcome.result
    return {
        "engine": r.engine,
        "engine_version": r.engine_version,
        "is_preview": bool(outcome.is_preview),
        # What was asked for, then what the engine reports it used (the relief preview runs no steps).
        **outcome.params.provenance(),
        "seed": int(r.seed),
        "steps": int(r.steps),
        "guidance": float(r.guidance),
        "requested_parts": int(r.requested_parts or 0),  # 0 stands for Auto: ID properties cannot hold None
        "produced_parts": int(r.produced_parts),
        "failed_parts": len(r.failed_parts),
        "failed_part_reasons": json.dumps({str(f.index + 1): f.reason for f in r.failed_parts}),
        "image_sha256": outcome.image.sha256,
        "job_id": outcome.job_id,
        "created": outcome.created,
        # Server backend: where it ran and under which consented policy.
        # upload_sha256: the minimised PNG that was sent, as the consent ledger records it.
        **{key: str(r.metadata[key]) for key in ("backend", "server_host", "policy_version", "upload_sha256")
           if key in r.metadata},
    }
