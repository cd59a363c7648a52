"""Small engines that run inside the worker child during tests (registered through
PARTCRAFTER_WORKER_ENGINES). `request.options["mode"]` picks the behaviour."""

from __future__ import annotations

import ctypes
import os
import signal
import time

import numpy as np

from partcrafter_blender.inference import EngineFailed, EngineUnavailable, FailedPart, GenerationResult, PartMesh, ProgressEvent, part_name
from partcrafter_blender.inference import testing


class FixtureEngine(testing.FixtureEngine):
    name = "fixture"
    version = "1"

    def generate(self, request, progress=None, cancel=None):
        mode = request.options.get("mode", "ok")
        report = progress or (lambda event: None)
        report(ProgressEvent("start", 0.0, f"mode {mode}"))
        if mode == "slow":
            print("SLOW-FIXTURE-STARTED", file=os.sys.stderr, flush=True)
            for i in range(400):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                time.sleep(0.025)
                report(ProgressEvent("denoise", i / 400, f"step {i + 1}/400"))
        elif mode == "stubborn":
            time.sleep(120)  # ignores cancellation entirely
        elif mode == "exit":
            os._exit(3)
        elif mode == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif mode == "segfault":
            ctypes.string_at(0)
        elif mode == "fail":
            raise EngineFailed("No surface was found for any part.")
        elif mode == "unavailable":
            raise EngineUnavailable("The weights folder is not configured.")
        elif mode == "bug":
            return 1 / 0
        elif mode == "noisy":
            print("library chatter on stdout " * 50)
            os.write(1, b"raw bytes on fd 1\n")
        return self._parts(request)

    def _parts(self, request) -> GenerationResult:
        rng = np.random.default_rng(request.seed)
        n = request.num_parts or 2
        parts = []
        for i in range(n):
            verts = rng.uniform(-1, 1, size=(30 + i, 3)).astype(np.float32)
            faces = rng.integers(0, len(verts), size=(20 + i, 3)).astype(np.int32)
            parts.append(PartMesh(part_name(i), verts, faces, color=(0.1 * i, 0.5, 0.9, 1.0)))
        return self.result(
            request,
            parts,
            [FailedPart(n, "no surface")],
            seconds=0.5,
            metadata={"workdir": os.getcwd(), "mean": np.float32(request.image.mean()), "options": request.options,
                      "pid": os.getpid(), "files": sorted(os.listdir(os.getcwd()))},
        )
