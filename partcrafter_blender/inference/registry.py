"""Engines register by name; callers ask for one by name or take the default.

Factories are imported lazily so that listing engines never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from .contract import Engine
from .errors import EngineUnavailable

EngineFactory = Callable[..., Engine]

# name -> "module:callable" relative to this package, resolved on first use. Relative
# because an installed extension's package is named bl_ext.<repo>.partcrafter.
_BUILTIN: dict[str, str] = {
    "relief": ".relief.engine:ReliefEngine",
    "partcrafter": ".partcrafter.engine:PartCrafterEngine",
}
_factories: dict[str, EngineFactory] = {}

DEFAULT_ENGINE = "relief"


def register_engine(name: str, factory: EngineFactory) -> None:
    """Add or replace an engine (tests register tiny fixed-mesh engines this way)."""
    _factories[name] = factory


def unregister_engine(name: str) -> None:
    _factories.pop(name, None)


def engine_names() -> list[str]:
    return sorted(set(_BUILTIN) | set(_factories))


def _resolve(name: str) -> EngineFactory:
    if name in _factories:
        return _factories[name]
    if name not in _BUILTIN:
        raise EngineUnavailable(f"Unknown engine '{name}'. Available engines: {', '.join(engine_names())}.")
    module_name, attr = _BUILTIN[name].split(":")
    try:
        module = importlib.import_module(module_name, __package__)
    except ImportError as exc:
        raise EngineUnavailable(f"Engine '{name}' cannot be loaded: {exc}.") from exc
    factory = getattr(module, attr)
    _factories[name] = factory
    return factory


def create_engine(name: str | None = None, options: dict[str, Any] | None = None) -> Engine:
    """Build the named engine (default: the CPU preview engine). Engines whose class says
    `takes_options = True` get `options` (weights folder, device, ...) at construction, so
    that their availability check already sees them; other engines ignore them."""
    factory = _resolve(name or DEFAULT_ENGINE)
    if options and getattr(factory, "takes_options", False):
        return factory(dict(options))
    return factory()
