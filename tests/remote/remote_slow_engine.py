"""Server engine plugin for the tests: the CPU relief engine behind a few seconds of
cancellable "denoise" progress, so cancel and resume have a job that is still running."""

from __future__ import annotations

import time

from partcrafter_blender.inference import EngineFailed, ProgressEvent, create_engine, register_engine
from partcrafter_blender.inference.testing import FixtureEngine

DELAY_S = 3.0


class SlowReliefEngine(FixtureEngine):
    name = "remote_slow"
    label = "Relief, slowed down (tests)"

    def generate(self, request, progress=None, cancel=None):
        end = time.monotonic() + DELAY_S
        while time.monotonic() < end:
            if cancel is not None:
                cancel.raise_if_cancelled()
            if progress is not None:
                progress(ProgressEvent("denoise", 0.5 * (1 - (end - time.monotonic()) / DELAY_S), "waiting"))
            time.sleep(0.05)
        result = create_engine("relief").generate(request, progress, cancel)
        result.engine = self.name
        return result


class FailingEngine(SlowReliefEngine):
    """Accepted, started, then fails: a job that fails on the server."""

    name = "remote_failing"

    def generate(self, request, progress=None, cancel=None):
        raise EngineFailed("The test engine failed on purpose on the server.")


register_engine("remote_slow", SlowReliefEngine)
register_engine("remote_failing", FailingEngine)
