"""Errors every layer understands. Each carries a message a person can act on."""

from __future__ import annotations


class PartCrafterError(Exception):
    """Base class: `str(err)` is a complete, human sentence."""


class InputImageError(PartCrafterError):
    """The input is not a usable image (missing, not an image, too large, no foreground...)."""


class EngineUnavailable(PartCrafterError):
    """The engine cannot run here (no torch, no weights, no GPU, unknown name...)."""


class EngineFailed(PartCrafterError):
    """The engine started but could not produce a result."""


class Cancelled(PartCrafterError):
    def __init__(self, message: str = "Cancelled by the user.") -> None:
        super().__init__(message)


# The stable code of each error that crosses a process boundary: the engine worker's
# protocol and the server's job error codes (docs/api.md) both use these. An error
# without a code is a bug in an engine, reported by each side in its own words.
ERROR_CODES: dict[type[PartCrafterError], str] = {
    Cancelled: "canceled",
    InputImageError: "invalid_image",
    EngineUnavailable: "engine_unavailable",
    EngineFailed: "engine_failed",
}


def error_code(exc: BaseException) -> str | None:
    """The code of `exc`'s class, or of the nearest class in ERROR_CODES it derives from."""
    for cls in type(exc).__mro__:
        if cls in ERROR_CODES:
            return ERROR_CODES[cls]  # type: ignore[index]
    return None


def error_from_code(code: str, message: str) -> PartCrafterError:
    """The error a code stands for (EngineFailed for one this version does not know)."""
    cls = next((c for c, known in ERROR_CODES.items() if known == code), EngineFailed)
    return cls(message)


# Everything the local neural engine needs in its interpreter (docs/gpu-engine.md).
GPU_PIP_COMMAND = "python -m pip install numpy Pillow torch transformers safetensors scikit-image fast-simplification huggingface_hub"


def missing_packages_message(python_executable: str, packages: list[str]) -> str:
    """The one message for an engine interpreter that lacks packages: Check Local Engine
    and Generate both say it, with the command that fixes it."""
    names = ", ".join(f"'{p}'" for p in packages)
    return (f"{python_executable} lacks the package{'s' if len(packages) > 1 else ''} {names}. Install the "
            f"local engine's packages into it: {GPU_PIP_COMMAND} (see docs/gpu-engine.md).")
