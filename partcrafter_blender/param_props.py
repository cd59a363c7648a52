"""Blender properties for the generation parameters, derived from inference/params.py.

The panel's scene settings and the Generate operator both get their parameter
properties here, so a parameter's label, description, default and limits are never
written out twice. Where Blender cannot store None (e.g. Auto parts), 0 stands for it.
"""

from __future__ import annotations

from typing import Any

import bpy

from .inference.params import ParamSpec, param_default, param_specs, param_type

INT32_MAX = 2**31 - 1  # an IntProperty is a signed 32-bit integer


def param_property(name: str, spec: ParamSpec, **override: Any) -> Any:
    """The bpy.props property for one parameter; `override` changes its keyword arguments."""
    default = param_default(name)
    options: dict[str, Any] = {"name": spec.label, "description": spec.description}
    if spec.choices:
        options.update(items=list(spec.choices), default=default)
        return bpy.props.EnumProperty(**{**options, **override})
    kind = param_type(name)
    if spec.none_means:
        options["description"] = f"{spec.description}; 0 for {spec.none_means}"
        options.update(default=0 if default is None else default, min=0)
    else:
        options.update(default=default, min=spec.minimum)
    if kind is float:
        options["max"] = spec.maximum
        return bpy.props.FloatProperty(**{**options, **override})
    options["max"] = min(int(spec.maximum or INT32_MAX), INT32_MAX)
    options["min"] = int(options["min"])
    return bpy.props.IntProperty(**{**options, **override})


def with_param_properties(**overrides: dict[str, Any]) -> Any:
    """Class decorator: add one property per generation parameter to a PropertyGroup or
    Operator before it is registered (keyword arguments: per-parameter overrides)."""

    def add(cls: type) -> type:
        annotations = cls.__dict__.get("__annotations__", {})
        for name, spec in param_specs().items():
            annotations[name] = param_property(name, spec, **overrides.get(name, {}))
        cls.__annotations__ = annotations
        return cls

    return add


def unstored(name: str, value: Any) -> Any:
    """A stored property value back as the parameter's value (0 as None where None is allowed)."""
    return None if param_specs()[name].none_means and value == 0 else value
