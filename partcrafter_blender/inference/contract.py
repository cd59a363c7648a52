"""The engine contract: what every engine takes, reports and returns.

Pure Python + numpy; no bpy. The extension, the CLI, the server and the tests all
speak in these types, so an engine plugs in anywhere once it implements `Engine`.

Frame convention for every result: PartCrafter's normalised object frame, Y-up,
all vertices inside [-1, 1]^3, the image plane facing the viewer (+Z towards the
camera). The Blender importer converts to Z-up.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np

from .errors import Cancelled
from .params import MAX_PARTS, GenerationParams  # noqa: F401  (MAX_PARTS re-exported)


@dataclass(frozen=True, kw_only=True)
class GenerationRequest(GenerationParams):
    """One image in, N parts out, with the generation parameters (see params.py).

    `image` is decoded RGBA uint8 pixels (H, W, 4), top row first. `image_sha256`
    is the hash of the bytes the user chose (file or re-encoded Blender image), kept
    for provenance. `num_parts=None` means Auto (the engine decides and says so).
    `options` are engine-specific settings (device, weights folder, ...), not parameters.
    """

    image: np.ndarray
    image_name: str = "image"
    image_sha256: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        img = self.image
        if not (isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 4):
            raise ValueError("GenerationRequest.image must be an RGBA uint8 array of shape (H, W, 4)")
        super().__post_init__()

    @classmethod
    def from_params(cls, params: GenerationParams, **rest: Any) -> GenerationRequest:
        """`params` plus the image and the rest of the request's fields."""
        return cls(**params.to_wire(), **rest)


@dataclass(frozen=True)
class ProgressEvent:
    """`fraction` is overall progress in [0, 1]; `stage` a short machine word
    ("preprocess", "segment", "denoise", "decode", "mesh", "upload", "queued", ...);
    `message` is what a person reads."""

    stage: str
    fraction: float
    message: str = ""


ProgressCallback = Callable[[ProgressEvent], None]


class CancelToken:
    """Cooperative cancellation: the caller sets it, the engine checks it often."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled()


@dataclass
class PartMesh:
    """One part: float32 vertices (V, 3) and int32 triangle faces (F, 3), with an
    optional sRGB colour (r, g, b, a) in [0, 1] used for the part's material.
    `variant` is the index of the seed variant it belongs to (GenerationResult.variant_seeds).
    `uvs` are optional float32 (V, 2) texture coordinates into GenerationResult.texture,
    glTF's convention: (0, 0) is the image's top-left corner, v grows downwards."""

    name: str
    vertices: np.ndarray
    faces: np.ndarray
    color: tuple[float, float, float, float] | None = None
    variant: int = 0
    uvs: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.vertices = np.ascontiguousarray(self.vertices, dtype=np.float32).reshape(-1, 3)
        self.faces = np.ascontiguousarray(self.faces, dtype=np.int32).reshape(-1, 3)
        if self.uvs is not None:
            self.uvs = np.ascontiguousarray(self.uvs, dtype=np.float32).reshape(-1, 2)
            if len(self.uvs) != len(self.vertices):
                raise ValueError(f"Part '{self.name}' has {len(self.uvs)} UVs for {len(self.vertices)} vertices.")


def part_name(index: int) -> str:
    """The one name of the part at 0-based `index`: part_01, part_02, ... (counted from 1, as
    people count; a failed part keeps its number, so names may have gaps)."""
    return f"part_{index + 1:02d}"


@dataclass(frozen=True)
class FailedPart:
    """A part the engine could not produce (e.g. no surface found). Never replaced by a dummy."""

    index: int
    reason: str


@dataclass
class GenerationResult:
    parts: list[PartMesh]
    engine: str
    engine_version: str
    requested_parts: int | None
    seed: int
    steps: int
    guidance: float
    seconds: float = 0.0
    failed_parts: list[FailedPart] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    # Seed of each variant when the request asked for several (parts say which via `variant`).
    variant_seeds: list[int] = field(default_factory=list)
    # One RGBA uint8 image (H, W, 4), top row first, shared by every part that has `uvs`.
    texture: np.ndarray | None = None

    @property
    def produced_parts(self) -> int:
        return len(self.parts)

    def variants(self) -> list[tuple[int, list[PartMesh]]]:
        """(seed, parts) per variant, in order; one pair for a single result."""
        seeds = self.variant_seeds or [self.seed]
        return [(seed, [p for p in self.parts if p.variant == k]) for k, seed in enumerate(seeds)]


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str = ""  # in the add-on's words (its preferences, its environment variables)
    # What fixes it, for a host with settings of its own (the server): "packages" (this
    # Python lacks the engine's modules), "weights_path" (no weights, or weights that do not verify).
    setting: str = ""


class Engine(Protocol):
    """What an engine implements. Engines are created per use through the registry."""

    name: str  # registry name, e.g. "relief"
    label: str  # what a person sees, e.g. "Relief (fast classical preview)"
    is_preview: bool  # True for anything that is not the PartCrafter network

    def availability(self) -> Availability: ...

    def generate(
        self,
        request: GenerationRequest,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> GenerationResult: ...
