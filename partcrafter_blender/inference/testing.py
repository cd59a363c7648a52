"""The base of the engines that tests and benchmarks register: known output through the
real engine contract (registry, worker process, server plugins), never a PartCrafter result.

A fixture engine subclasses `FixtureEngine`, sets `name`, and returns `self.result(request,
parts)` from its `generate`; the result echoes the request's parameters.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .contract import Availability, FailedPart, GenerationRequest, GenerationResult, PartMesh


class FixtureEngine:
    name = "fixture"
    label = "Fixture engine (tests)"
    version = "test-1"
    is_preview = True  # only the PartCrafter network is not a preview

    def availability(self) -> Availability:
        return Availability(True)

    def result(
        self, request: GenerationRequest, parts: list[PartMesh], failed: Iterable[FailedPart] = (), **extra: Any
    ) -> GenerationResult:
        """What this engine made for `request` (`extra`: seconds, metadata)."""
        return GenerationResult(
            parts=parts,
            engine=self.name,
            engine_version=self.version,
            requested_parts=request.num_parts,
            seed=request.seed,
            steps=request.steps,
            guidance=request.guidance,
            failed_parts=list(failed),
            **extra,
        )
