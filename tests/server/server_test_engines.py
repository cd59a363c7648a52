"""Engines the test server loads through PARTCRAFTER_SERVER_ENGINE_PLUGINS.

- `instant`: returns prepared meshes at once (boxes whose corners carry a marker
  value, so the plaintext scan can look for the mesh bytes);
- `slow`: sleeps `steps` x 50 ms, honouring cancel, and writes its pid to
  $PARTCRAFTER_TEST_PIDDIR so tests can kill the worker mid-job;
- `stubborn`: like `slow` but ignores cancel (the server must kill it);
- `halfway`: one part made, one failed (per-part outcome);
- `offline_probe`: fails unless the worker runs with the hub offline (no sharing).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from partcrafter_blender.inference import EngineFailed, FailedPart, PartMesh, ProgressEvent, register_engine
from partcrafter_blender.inference.testing import FixtureEngine

MARKER = 0.7183818  # an unusual float: its bytes identify our meshes in a disk scan

_CUBE_FACES = np.array(
    [
        [0, 1, 2],
        [0, 2, 3],
        [4, 6, 5],
        [4, 7, 6],
        [0, 4, 5],
        [0, 5, 1],
        [1, 5, 6],
        [1, 6, 2],
        [2, 6, 7],
        [2, 7, 3],
        [3, 7, 4],
        [3, 4, 0],
    ],
    dtype=np.int32,
)


def box(index: int) -> PartMesh:
    lo, hi = -MARKER + 0.01 * index, MARKER
    v = np.array(
        [[lo, lo, lo], [hi, lo, lo], [hi, hi, lo], [lo, hi, lo], [lo, lo, hi], [hi, lo, hi], [hi, hi, hi], [lo, hi, hi]],
        dtype=np.float32,
    )
    return PartMesh(name=f"part_{index:02d}", vertices=v, faces=_CUBE_FACES, color=(0.2, 0.4, 0.6, 1.0))


class InstantEngine(FixtureEngine):
    name = "instant"

    def generate(self, request, progress=None, cancel=None):
        n = request.num_parts or 3
        if progress:
            progress(ProgressEvent("mesh", 0.5, "making boxes"))
        return self.result(request, [box(i) for i in range(n)])


class SlowEngine(FixtureEngine):
    name = "slow"
    honours_cancel = True

    def generate(self, request, progress=None, cancel=None):
        piddir = os.environ.get("PARTCRAFTER_TEST_PIDDIR")
        if piddir:
            Path(piddir, f"{os.getpid()}.pid").write_text(str(os.getpid()))
        for i in range(request.steps):
            if cancel is not None and self.honours_cancel:
                cancel.raise_if_cancelled()
            if progress:
                progress(ProgressEvent("denoise", i / request.steps, "waiting"))
            time.sleep(0.05)
        return self.result(request, [box(0)])


class StubbornEngine(SlowEngine):
    name = "stubborn"
    honours_cancel = False


class HalfwayEngine(FixtureEngine):
    name = "halfway"

    def generate(self, request, progress=None, cancel=None):
        return self.result(request, [box(0)], [FailedPart(1, "no surface found for this part")])


class OfflineProbeEngine(FixtureEngine):
    name = "offline_probe"

    def generate(self, request, progress=None, cancel=None):
        if os.environ.get("HF_HUB_OFFLINE") != "1" or os.environ.get("TRANSFORMERS_OFFLINE") != "1":
            raise EngineFailed("the worker may reach the network")
        return self.result(request, [box(0)])


for _cls in (InstantEngine, SlowEngine, StubbornEngine, HalfwayEngine, OfflineProbeEngine):
    register_engine(_cls.name, _cls)
