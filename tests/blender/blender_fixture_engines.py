"""Small engines with known output for the Blender tests (and the CLI subprocess tests,
which import this module by path). They implement the real engine contract."""

from __future__ import annotations

import sys
import threading
import time

import numpy as np

from partcrafter_blender.inference import (
    Availability,
    CancelToken,
    EngineFailed,
    FailedPart,
    GenerationRequest,
    GenerationResult,
    PartMesh,
    ProgressCallback,
    ProgressEvent,
    part_name,
    register_engine,
)
from partcrafter_blender.inference.testing import FixtureEngine

_CORNERS = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=np.float32)
# Outward-facing triangles of the unit cube above, then every other one flipped so the
# importer has to make the winding consistent itself.
_OUTWARD = np.array(
    [
        [0, 1, 3], [0, 3, 2],  # x = 0
        [4, 6, 7], [4, 7, 5],  # x = 1
        [0, 4, 5], [0, 5, 1],  # y = 0
        [2, 3, 7], [2, 7, 6],  # y = 1
        [0, 2, 6], [0, 6, 4],  # z = 0
        [1, 5, 7], [1, 7, 3],  # z = 1
    ],
    dtype=np.int32,
)
BOX_FACES = _OUTWARD.copy()
BOX_FACES[1::2] = BOX_FACES[1::2, ::-1]


def box_part(index: int) -> PartMesh:
    """Part `index`: a box, tall along Y (the engines' up axis), stacked along X."""
    lo = np.array([-0.9 + 0.11 * index, -0.8, -0.2], dtype=np.float32)
    size = np.array([0.1, 1.6 - 0.09 * index, 0.4], dtype=np.float32)
    return PartMesh(name=f"box_{index}", vertices=lo + _CORNERS * size, faces=BOX_FACES.copy())


class FixedEngine(FixtureEngine):
    """`num_parts` boxes (3 for Auto). Says on stderr when it is given a triangle budget."""

    name = "fixed"
    label = "Fixed boxes (tests)"
    version = "fixed-1.0"

    def generate(
        self, request: GenerationRequest, progress: ProgressCallback | None = None, cancel: CancelToken | None = None
    ) -> GenerationResult:
        n = request.num_parts or 3
        if request.max_triangles:
            print(f"{self.name} engine got max_triangles={request.max_triangles}", file=sys.stderr, flush=True)
        if progress:
            progress(ProgressEvent("mesh", 0.5, "Making boxes"))
        return self.result(request, [_named(box_part(i), i) for i in range(n)])


def _named(part: PartMesh, index: int) -> PartMesh:
    """Engines name their parts by the contract's numbering."""
    return PartMesh(part_name(index), part.vertices, part.faces, part.color)


# Set by SlowEngine once it is running, so a test knows when to cancel.
slow_started = threading.Event()


class SlowEngine(FixedEngine):
    """Reports progress until cancelled; gives up (with a result) after 60 s so a
    broken cancel fails the test instead of hanging it."""

    name = "slow"

    def generate(
        self, request: GenerationRequest, progress: ProgressCallback | None = None, cancel: CancelToken | None = None
    ) -> GenerationResult:
        cancel = cancel or CancelToken()
        slow_started.set()
        print("SLOW-ENGINE-STARTED", file=sys.stderr, flush=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            cancel.raise_if_cancelled()
            if progress:
                progress(ProgressEvent("denoise", 0.3, "Waiting to be cancelled"))
            time.sleep(0.01)
        return super().generate(request, progress, cancel)


class FailingEngine(FixedEngine):
    name = "failing"

    def generate(self, request, progress=None, cancel=None) -> GenerationResult:
        raise EngineFailed("The test engine failed on purpose.")


class CrashingEngine(FixedEngine):
    """A bug, not a user error: the operator must still clean up."""

    name = "crashing"

    def generate(self, request, progress=None, cancel=None) -> GenerationResult:
        raise ZeroDivisionError("division by zero inside the engine")


class BrokenMeshEngine(FixedEngine):
    """Three parts; the last one points at vertices it does not have."""

    name = "broken_mesh"

    def generate(self, request, progress=None, cancel=None) -> GenerationResult:
        parts = [box_part(i) for i in range(3)]
        parts[2].faces[0, 0] = 99
        return self.result(request, parts)


class GappyEngine(FixedEngine):
    """Three parts asked for, the second has no surface: part_01 and part_03 remain."""

    name = "gappy"

    def generate(self, request, progress=None, cancel=None) -> GenerationResult:
        return self.result(request, [_named(box_part(i), i) for i in (0, 2)], [FailedPart(1, "no surface")])


class PartlyFailingEngine(FixedEngine):
    """`num_parts` - 1 boxes; the last part fails, with a reason (as PartCrafter's decoder reports it)."""

    name = "partly_failing"

    def generate(
        self, request: GenerationRequest, progress: ProgressCallback | None = None, cancel: CancelToken | None = None
    ) -> GenerationResult:
        n = request.num_parts or 3
        failed = [FailedPart(index=n - 1, reason="no surface found at this resolution")]
        return self.result(request, [box_part(i) for i in range(n - 1)], failed)


class UnavailableEngine(FixedEngine):
    name = "unavailable"

    def availability(self) -> Availability:
        return Availability(False, "The test engine needs hardware this machine does not have.")


ENGINES = (
    FixedEngine, SlowEngine, FailingEngine, CrashingEngine, BrokenMeshEngine, GappyEngine, PartlyFailingEngine,
    UnavailableEngine,
)


def register_all() -> None:
    for cls in ENGINES:
        register_engine(cls.name, cls)
