"""Engines and the engine contract. Imports without bpy (the server and tests use it directly)."""

from .contract import (
    MAX_PARTS,
    Availability,
    CancelToken,
    Engine,
    FailedPart,
    GenerationRequest,
    GenerationResult,
    PartMesh,
    ProgressCallback,
    ProgressEvent,
    part_name,
)
from .errors import Cancelled, EngineFailed, EngineUnavailable, InputImageError, PartCrafterError
from .params import MAX_SEED, QUALITY_ITEMS, GenerationParams, InvalidParameter
from .registry import DEFAULT_ENGINE, create_engine, engine_names, register_engine, unregister_engine
from .run import run_engine

__all__ = [
    "MAX_PARTS",
    "MAX_SEED",
    "QUALITY_ITEMS",
    "Availability",
    "CancelToken",
    "Cancelled",
    "DEFAULT_ENGINE",
    "Engine",
    "EngineFailed",
    "EngineUnavailable",
    "FailedPart",
    "GenerationParams",
    "GenerationRequest",
    "GenerationResult",
    "InputImageError",
    "InvalidParameter",
    "PartCrafterError",
    "PartMesh",
    "ProgressCallback",
    "ProgressEvent",
    "create_engine",
    "engine_names",
    "part_name",
    "register_engine",
    "run_engine",
    "unregister_engine",
]
