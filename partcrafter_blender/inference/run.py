"""Run one engine on one request with the checks every caller needs.

The extension (in process), the engine worker process and the server's worker all
go through `run_engine`, so "is the engine available", "did the user cancel" and
"are there any parts" are decided the same way everywhere.
"""

from __future__ import annotations

from typing import Callable

from .contract import Availability, CancelToken, Engine, GenerationRequest, GenerationResult, ProgressCallback
from .errors import EngineFailed, EngineUnavailable
from .variants import generate


def run_engine(
    engine: Engine,
    request: GenerationRequest,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    explain_unavailable: Callable[[Availability], str] | None = None,
) -> GenerationResult:
    """Check availability, generate (each seed variant, see variants.py), and require at
    least one part (the failed ones are named). Raises the PartCrafterError family.
    `explain_unavailable` words an unavailable engine for a caller whose fix differs from
    the add-on's (the server)."""
    cancel = cancel or CancelToken()
    available = engine.availability()
    if not available.ok:
        if explain_unavailable is not None:
            raise EngineUnavailable(explain_unavailable(available))
        raise EngineUnavailable(available.reason or f"Engine '{engine.name}' is not available here.")
    result = generate(engine, request, progress, cancel)
    cancel.raise_if_cancelled()
    if not result.parts:
        reasons = "; ".join(f"part {f.index + 1}: {f.reason}" for f in result.failed_parts)
        raise EngineFailed(f"The engine produced no parts{' (' + reasons + ')' if reasons else ''}.")
    return result
