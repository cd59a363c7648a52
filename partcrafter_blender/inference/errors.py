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
