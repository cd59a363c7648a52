"""Add-on preferences and per-user folders."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import bpy

from .generation import check_engine_options, engine_label, parse_engine_options
from .inference import DEFAULT_ENGINE, EngineUnavailable, engine_names
from .ui.server_preferences import ServerSettings, draw_server_preferences

DEFAULT_IMPORT_SIZE = 2.0

# Identifiers are the neural engine's own option values (see inference/partcrafter/engine.py).
DEVICE_ITEMS = [
    ("auto", "Auto", "The CUDA GPU when the engine's Python has one, otherwise the CPU"),
    ("cuda", "CUDA GPU", "The CUDA GPU chosen by GPU Number (0, the first, by default); fails clearly when there is none"),
    ("cpu", "CPU", "Float32 on the CPU: correct but very slow"),
]
DTYPE_ITEMS = [
    ("auto", "Auto", "Float16 on CUDA (the published weights' precision), float32 on the CPU"),
    ("float16", "Float16", "Half precision on CUDA"),
    ("bfloat16", "BFloat16", "Bfloat16 on CUDA (GPUs from the Ampere generation on)"),
    ("float32", "Float32", "Full precision: the CPU's only choice; on a GPU, twice the memory of float16"),
]
OFFLOAD_ITEMS = [
    ("none", "None", "Keep every component on the GPU (fastest)"),
    ("model", "Model-Level", "Keep the components in CPU memory and move only the active one to the GPU "
     "(for cards with little memory; slower)"),
]
HALF_DTYPES = {"float16", "bfloat16"}
# The engine's own defaults: auto device, float16 on CUDA (float32 on the CPU), no offload.
NEURAL_DEFAULTS = {"device": "auto", "dtype": "auto", "offload": "none"}

# EnumProperty item strings must stay referenced while Blender shows them.
_engine_items: list[tuple[str, str, str]] = []


def _engine_enum_items(_self: Any, _context: Any) -> list[tuple[str, str, str]]:
    # The default engine comes first: a dynamic enum's default is the first item.
    names = sorted(engine_names(), key=lambda name: name != DEFAULT_ENGINE)
    _engine_items[:] = [(name, engine_label(name), f"Generate with the '{name}' engine") for name in names]
    return _engine_items


def user_directory(*parts: str) -> Path:
    """This extension's per-user folder (created), or a folder in Blender's config
    directory when the package was loaded from a plain path (tests, development)."""
    try:
        base = Path(bpy.utils.extension_path_user(__package__, create=True))
    except ValueError:
        base = Path(bpy.utils.user_resource("CONFIG", path="partcrafter_blender", create=True))
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


class PARTCRAFTER_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    backend: bpy.props.EnumProperty(
        name="Backend",
        items=[
            ("LOCAL", "Local", "Run the engine on this computer"),
            ("SERVER", "Server", "Send the image to a PartCrafter server (needs online access)"),
        ],
        default="LOCAL",
    )
    engine: bpy.props.EnumProperty(name="Engine", items=_engine_enum_items, description="Local engine to run")
    python_executable: bpy.props.StringProperty(
        name="Engine Python",
        description="Python interpreter with torch installed that runs the neural engine in its own process "
        "(empty: run it inside Blender)",
        subtype="FILE_PATH",
    )
    weights_dir: bpy.props.StringProperty(
        name="Weights Folder",
        description="Folder holding the PartCrafter weights (empty: the PARTCRAFTER_WEIGHTS environment variable)",
        subtype="DIR_PATH",
    )
    device: bpy.props.EnumProperty(name="Device", items=DEVICE_ITEMS, default=NEURAL_DEFAULTS["device"])
    gpu_index: bpy.props.IntProperty(
        name="GPU Number",
        description="Which CUDA GPU runs the engine when Device is CUDA GPU: 0 is the first (the engine's device cuda:N)",
        default=0,
        min=0,
        soft_max=15,
    )
    dtype: bpy.props.EnumProperty(name="Precision", items=DTYPE_ITEMS, default=NEURAL_DEFAULTS["dtype"])
    offload: bpy.props.EnumProperty(name="Offload", items=OFFLOAD_ITEMS, default=NEURAL_DEFAULTS["offload"])
    engine_extra_options: bpy.props.StringProperty(
        name="Extra Options",
        description="Advanced engine options as key=value pairs, e.g. 'num_tokens=64, dense_depth=5' "
        "(see docs/gpu-engine.md)",
    )
    import_size: bpy.props.FloatProperty(
        name="Import Size",
        description="Largest dimension of an imported result",
        default=DEFAULT_IMPORT_SIZE,
        min=0.001,
        soft_max=100.0,
        subtype="DISTANCE",
        unit="LENGTH",
    )

    keep_regeneration_data: bpy.props.BoolProperty(
        name="Keep Regeneration Data",
        description="Keep each local result's part latents and image in this extension's user folder, so that "
        "single parts can be regenerated later (Erase removes them all)",
        default=True,
    )
    textured_preview: bpy.props.BoolProperty(
        name="Picture Texture",
        description="Show a textured result (the relief preview) with the reference picture on it; "
        "off: flat colour per part. The panel's shading toggle switches a result afterwards",
        default=True,
    )

    server: bpy.props.PointerProperty(type=ServerSettings)

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        layout.prop(self, "backend")
        if self.backend == "LOCAL":
            layout.prop(self, "engine")
            col = layout.column()
            col.active = self.engine != "relief"
            col.prop(self, "python_executable")
            col.prop(self, "weights_dir")
            col.prop(self, "device")
            if self.device == "cuda":
                col.prop(self, "gpu_index")
            col.prop(self, "dtype")
            if self.device == "cpu" and self.dtype in HALF_DTYPES:
                col.label(text="The CPU runs in float32 only: choose Auto or Float32.", icon="ERROR")
            sub = col.column()
            sub.active = self.device != "cpu"
            sub.prop(self, "offload")
            col.prop(self, "engine_extra_options")
            problem = extra_options_problem(self)
            if problem:
                col.label(text=problem, icon="ERROR")
            col.operator("partcrafter.check_local_engine", icon="CHECKMARK")
            _draw_check_report(col, context)
            row = layout.row()
            row.prop(self, "keep_regeneration_data")
            row.operator("partcrafter.erase_regeneration_data", icon="TRASH")
        else:
            draw_server_preferences(layout, self.server, context)
        layout.prop(self, "import_size")
        layout.prop(self, "textured_preview")


def _draw_check_report(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    """The last "Check Local Engine" report, one read-only line per label."""
    check = getattr(context.window_manager, "partcrafter_engine_check", None)
    if check is None or not check.text:
        return
    box = layout.box()
    for index, line in enumerate(check.text.splitlines()):
        icon = ("CHECKMARK" if check.ok else "ERROR") if index == 0 else "NONE"
        box.label(text=line, icon=icon)


def get_preferences(context: bpy.types.Context | None = None) -> Any:
    """The add-on's preferences, or the defaults when the add-on is registered without
    Blender's add-on manager (then there is no stored preferences block)."""
    addon = (context or bpy.context).preferences.addons.get(__package__)
    if addon is not None and addon.preferences is not None:
        return addon.preferences
    return SimpleNamespace(
        backend="LOCAL",
        engine=DEFAULT_ENGINE,
        python_executable="",
        weights_dir="",
        **NEURAL_DEFAULTS,
        engine_extra_options="",
        import_size=DEFAULT_IMPORT_SIZE,
        keep_regeneration_data=True,
    )


def engine_options(prefs: Any, engine: str | None = None) -> dict[str, Any]:
    """Options every engine receives. Settings left at their defaults are left out, so the engine's own defaults (and its
    PARTCRAFTER_* environment variables) apply: without a weights folder, PARTCRAFTER_WEIGHTS;
    with device Auto, PARTCRAFTER_DEVICE or auto. Engines that do not use an option ignore
    it. Raises EngineUnavailable for unreadable extra options, and for extra options that
    `engine` (when given) does not know."""
    device = f"cuda:{prefs.gpu_index}" if prefs.device == "cuda" and prefs.gpu_index > 0 else prefs.device
    chosen = {"device": device, "dtype": prefs.dtype, "offload": prefs.offload}
    options: dict[str, Any] = {key: value for key, value in chosen.items() if value != NEURAL_DEFAULTS[key]}
    if prefs.weights_dir:
        options["weights_path"] = bpy.path.abspath(prefs.weights_dir)
    try:
        extra = parse_engine_options(prefs.engine_extra_options)
        if engine:
            check_engine_options(engine, extra)
    except EngineUnavailable as exc:
        raise EngineUnavailable(f"Extra Options in the add-on preferences: {exc}") from exc
    options.update(extra)
    return options


def extra_options_problem(prefs: Any) -> str:
    """Why the Extra Options cannot be used with the chosen engine, or "" (shown under the field)."""
    try:
        engine_options(prefs, prefs.engine)
    except EngineUnavailable as exc:
        return str(exc)
    return ""


classes = (ServerSettings, PARTCRAFTER_AP_preferences)


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
