"""Strict reading of the diffusers-style config.json files of the weights folder."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields, is_dataclass
from typing import Any


def config_values(config: Mapping[str, Any], known: Iterable[str] | type, what: str) -> dict[str, Any]:
    """The config's keys without the `_`-prefixed bookkeeping ones (`_class_name`, ...).
    A key this implementation does not know raises ValueError: ignoring it would silently
    run a different model than the weights describe. `known`: key names, or a dataclass."""
    names = {f.name for f in fields(known)} if is_dataclass(known) else set(known)  # type: ignore[arg-type]
    values = {k: v for k, v in config.items() if not k.startswith("_")}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"Unknown keys in the {what} config: {', '.join(unknown)}")
    return values
