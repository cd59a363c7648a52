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
)
from .errors import Cancelled, EngineFailed, EngineUnavailable, InputImageError, PartCrafterError
from .registry import DEFAULT_ENGINE, create_engine, engine_names, register_engine, unregister_engine

__all__ = [
    "MAX_PARTS",
    "Availability",
    "CancelToken",
    "Cancelled",
    "DEFAULT_ENGINE",
    "Engine",
    "EngineFailed",
    "EngineUnavailable",
    "FailedPart",
    "GenerationRequest",
    "GenerationResult",
    "InputImageError",
    "PartCrafterError",
    "PartMesh",
    "ProgressCallback",
    "ProgressEvent",
    "create_engine",
    "engine_names",
    "register_engine",
    "unregister_engine",
]
