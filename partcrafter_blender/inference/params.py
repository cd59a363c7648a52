"""The generation parameters, defined once: name, type, default, limits, description.

Pure Python; no bpy. Everything else is derived from `GenerationParams`:
- the engine request (`GenerationRequest` extends it) and the worker protocol,
- the wire format (`to_wire` / `from_wire`) the server client sends and the server's
  pydantic model (`partcrafter_server.api.models.JobParams`),
- the Blender properties of the panel and the Generate operator (`scene/params_props.py`),
- the command-line options (`cli.py`), the pending-jobs file and the part provenance.

Adding a parameter means adding one field here (engines read it from the request);
nothing else lists them.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from .errors import PartCrafterError

MAX_PARTS = 16
MAX_SEED = 2**32 - 1  # what the server accepts and numpy's generators take

QUALITY_ITEMS = (
    ("draft", "Draft", "Fastest, coarse meshes"),
    ("standard", "Standard", "Balanced speed and detail"),
    ("high", "High", "Finest meshes, slowest"),
)
BUDGET_SCOPE_ITEMS = (
    ("part", "Per Part", "The triangle budget holds for each part"),
    ("model", "Whole Result", "The triangle budget is shared by all the parts of a result"),
)
MAX_VARIANTS = 8


class InvalidParameter(PartCrafterError, ValueError):
    """A parameter outside its limits. `name` is the field, `reason` the rule it broke
    ("must be from 1 to 200, got 0"); callers name it their way (a flag, a property)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name} {reason}")
        self.name, self.reason = name, reason


@dataclass(frozen=True)
class ParamSpec:
    """What the interfaces need to know about one parameter beyond its type and default."""

    label: str
    description: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[tuple[str, str, str], ...] = ()  # (value, label, description)
    none_means: str = ""  # the parameter may be None (e.g. "Auto"); where None cannot be stored it is 0
    flag: str = ""  # command-line flag, when not --name-with-dashes
    provenance: str = ""  # custom-property name on the parts, when not the field name


def _param(default: Any, spec: ParamSpec) -> Any:
    return field(default=default, metadata={"spec": spec})


@dataclass(frozen=True, kw_only=True)
class GenerationParams:
    """The parameters of one generation, checked on construction (InvalidParameter)."""

    num_parts: int | None = _param(
        None,
        ParamSpec(
            "Parts", "Number of parts", 1, MAX_PARTS, none_means="Auto", flag="--parts", provenance="requested_parts"
        ),
    )
    seed: int = _param(0, ParamSpec("Seed", "Same seed, same result", 0, MAX_SEED))
    steps: int = _param(50, ParamSpec("Steps", "Denoising steps (neural engine)", 1, 200))
    guidance: float = _param(7.0, ParamSpec("Guidance", "How closely to follow the image (neural engine)", 0.0, 20.0))
    quality: str = _param("standard", ParamSpec("Quality", "Mesh resolution: draft, standard or high", choices=QUALITY_ITEMS))
    max_triangles: int = _param(
        0,
        ParamSpec(
            "Triangles per Part",
            "Triangle budget per part (or for the whole result, see budget scope); 0 for the quality's default",
            0,
            10_000_000,
        ),
    )
    budget_scope: str = _param(
        "part", ParamSpec("Budget Scope", "Whether the triangle budget is per part or for the whole result",
                          choices=BUDGET_SCOPE_ITEMS)
    )
    variants: int = _param(
        1,
        ParamSpec("Variants", "Results to generate side by side, with seeds seed, seed+1, ...", 1, MAX_VARIANTS),
    )

    def __post_init__(self) -> None:
        for name, spec in param_specs().items():
            check_param(name, spec, getattr(self, name))

    @property
    def params(self) -> GenerationParams:
        """The parameters alone, from a record that extends them (a request, a pending job)."""
        return GenerationParams(**self.to_wire())

    def variant_seeds(self) -> list[int]:
        """One seed per variant: the seed, then the next ones (wrapping at MAX_SEED)."""
        return [(self.seed + k) % (MAX_SEED + 1) for k in range(self.variants)]

    def to_wire(self) -> dict[str, Any]:
        """The JSON object the server's `params` field carries (engine aside)."""
        return {name: getattr(self, name) for name in param_specs()}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> GenerationParams:
        """The parameters in `data`, ignoring other keys; missing ones take their defaults."""
        return cls(**{name: data[name] for name in param_specs() if name in data})

    def provenance(self) -> dict[str, Any]:
        """Custom-property values for the parts (ID properties cannot hold None: 0 stands for it)."""
        specs = param_specs()
        return {specs[name].provenance or name: _storable(getattr(self, name)) for name in specs}


def param_specs() -> dict[str, ParamSpec]:
    """Every parameter's spec, in definition order."""
    return {f.name: f.metadata["spec"] for f in fields(GenerationParams) if "spec" in f.metadata}


def param_default(name: str) -> Any:
    value = next(f.default for f in fields(GenerationParams) if f.name == name)
    assert value is not MISSING
    return value


def param_type(name: str) -> type:
    """int, float or str (the type without None)."""
    default = param_default(name)
    return int if default is None else type(default)


def check_param(name: str, spec: ParamSpec, value: Any) -> None:
    if value is None:
        if not spec.none_means:
            raise InvalidParameter(name, "must be set")
        return
    if spec.choices:
        allowed = [c[0] for c in spec.choices]
        if value not in allowed:
            raise InvalidParameter(name, f"must be one of {', '.join(allowed)}, got {value!r}")
        return
    kind = param_type(name)
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise InvalidParameter(name, f"must be {'a number' if kind is float else 'a whole number'}, got {value!r}")
    if not spec.minimum <= value <= spec.maximum:  # type: ignore[operator]
        also = f" (or {spec.none_means.lower()})" if spec.none_means else ""
        limits = f"from {number_text(spec.minimum)} to {number_text(spec.maximum)}{also}"
        raise InvalidParameter(name, f"must be {limits}, got {number_text(value)}")


def number_text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _storable(value: Any) -> Any:
    return 0 if value is None else value
