"""Seed variants: K results of one image, one per seed, as one result.

`run_engine` calls `generate_variants` for engines that make one result per call; an
engine that handles `request.variants` itself (batching them, or forwarding the request
to a worker process or a server that does) says so with `generates_variants = True`.
Either way the caller sees one run: one progress bar from 0 to 1, one cancel token, and
one GenerationResult whose parts carry their variant index.
"""

from __future__ import annotations

import dataclasses

from .contract import CancelToken, Engine, GenerationRequest, GenerationResult, ProgressCallback, ProgressEvent


def generate(
    engine: Engine, request: GenerationRequest, progress: ProgressCallback | None, cancel: CancelToken
) -> GenerationResult:
    """The engine's result for `request`, all its variants included."""
    if request.variants > 1 and not getattr(engine, "generates_variants", False):
        return generate_variants(engine, request, progress, cancel)
    return engine.generate(request, progress, cancel)


def generate_variants(
    engine: Engine,
    request: GenerationRequest,
    progress: ProgressCallback | None,
    cancel: CancelToken,
) -> GenerationResult:
    """Run the engine once per seed of `request.variant_seeds()` and merge the results."""
    report = progress or (lambda event: None)
    seeds = request.variant_seeds()
    count = len(seeds)
    results: list[GenerationResult] = []
    for k, seed in enumerate(seeds):

        def scaled(event: ProgressEvent, k: int = k, seed: int = seed) -> None:
            message = f"Variant {k + 1} of {count} (seed {seed}): {event.message}"
            report(ProgressEvent(event.stage, (k + event.fraction) / count, message))

        single = dataclasses.replace(request, seed=seed, variants=1)
        results.append(engine.generate(single, scaled, cancel))
        cancel.raise_if_cancelled()
    return merge_variants(results, seeds)


def merge_variants(results: list[GenerationResult], seeds: list[int]) -> GenerationResult:
    """One result holding each variant's parts (tagged with their variant) and failures."""
    first = results[0]
    parts = [dataclasses.replace(p, variant=k) for k, r in enumerate(results) for p in r.parts]
    failed = [f for r in results for f in r.failed_parts]
    metadata = dict(first.metadata)
    metadata["variants"] = [
        {"seed": seed, "parts": len(r.parts), "failed_parts": len(r.failed_parts), "seconds": round(r.seconds, 3)}
        for seed, r in zip(seeds, results, strict=True)
    ]
    return dataclasses.replace(
        first,
        parts=parts,
        failed_parts=failed,
        seconds=sum(r.seconds for r in results),
        metadata=metadata,
        variant_seeds=list(seeds),
    )
