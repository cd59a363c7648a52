"""Out-of-process engines: the extension runs torch engines in a child Python (no bpy here)."""

from __future__ import annotations

from .client import WorkerEngine, check_local_engine, default_python_executable, summarise_check

__all__ = ["WorkerEngine", "check_local_engine", "default_python_executable", "summarise_check"]
