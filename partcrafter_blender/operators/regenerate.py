"""Regenerate Selected Parts: new geometry for the selected parts of one result, with a
new seed; every other part is left exactly as it is.

Results keep what this needs in a sidecar file (inference/partstate.py) named on the
result's parent empty. PartCrafter re-samples only the selected parts' latents,
conditioned on the kept ones (inference/partcrafter/inpaint.py); relief re-segments the
region the selected parts cover with the new seed (inference/relief/regenerate.py).
One undo step; a failing regeneration changes nothing.
"""

from __future__ import annotations

import random
from typing import Any, Callable

import bpy

from ..generation import GenerationOutcome, ImageInput, engine_factory, run_generation
from ..inference import GenerationParams, PartCrafterError
from ..inference.params import MAX_SEED, InvalidParameter, check_param, param_specs
from ..inference.partstate import erase_states, load_state
from ..param_props import param_property
from ..preferences import engine_options, get_preferences, user_directory
from ..scene.build import PROP_PREFIX
from ..scene.replace import replace_parts
from ..scene.result import INDEX, active_result, part_problem, result_parts
from ..server_backend import uses_server
from ._job_mixin import JobOperatorMixin, job_state

STATE_FILE = PROP_PREFIX + "state_file"
STATE_SHA256 = PROP_PREFIX + "state_sha256"
REGENERATION_FOLDER = "regeneration"  # in the extension's user folder
# Engines that can regenerate some parts of their own results.
REGENERATING_ENGINES = ("partcrafter", "relief")


def regeneration_dir() -> str:
    return str(user_directory(REGENERATION_FOLDER))


def selection_problem(context: bpy.types.Context) -> str:
    """Why the selection cannot be regenerated now, or ""."""
    root = active_result(context)
    if root is None:
        return "Select parts of a PartCrafter result."
    if str(root.get(PROP_PREFIX + "backend", "")) == "server" or uses_server(context):
        return ("Regenerating parts is not available with the server backend: it would upload the image again. "
                "Use the local engine.")
    if PROP_PREFIX + "variant" in root:
        return (f"'{root.name}' is a seed variant; regenerating parts needs a single result. Generate again with "
                f"Variants 1 and seed {root.get(PROP_PREFIX + 'seed', '')}, then regenerate its parts.")
    parts = result_parts(root)
    chosen = [o for o in context.selected_objects if o in parts]
    if not chosen:
        return f"Select one or more parts of '{root.name}' to regenerate."
    for obj in chosen:
        problem = part_problem(obj, parts)
        if problem:
            return f"{problem} It cannot be regenerated."
    engine = str(root.get(PROP_PREFIX + "engine", ""))
    if engine not in REGENERATING_ENGINES:
        return f"Results of the '{engine}' engine cannot regenerate single parts; generate again instead."
    return ""


class PARTCRAFTER_OT_regenerate(JobOperatorMixin, bpy.types.Operator):
    """Regenerate the selected parts of a PartCrafter result with a new seed, keeping every other part as it is"""

    bl_idname = "partcrafter.regenerate"
    bl_label = "Regenerate Selected Parts"
    bl_options = {"REGISTER", "UNDO"}

    job_title = "Regenerating parts"

    seed: param_property("seed", param_specs()["seed"], description="Seed for the new parts; a random one when not set",
                         options={"SKIP_SAVE"})

    num_parts: bpy.props.IntProperty(
        name="Parts", description="Relief: how many parts the selected parts' region becomes (0: as many as are selected)",
        min=0, max=16, options={"SKIP_SAVE"},
    )

    _root_name: str = ""
    _targets: dict[int, str] = {}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not cls.job_poll(context):
            return False
        problem = selection_problem(context)
        if problem:
            cls.poll_message_set(problem)
            return False
        return True

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        root = active_result(context)
        if root is not None and str(root.get(PROP_PREFIX + "engine", "")) == "relief":
            return context.window_manager.invoke_props_dialog(self)  # relief can also take a new part count
        return self.execute(context)

    def job_prepare(self, context: bpy.types.Context) -> Callable[..., GenerationOutcome]:
        problem = selection_problem(context)
        if problem:
            raise PartCrafterError(problem)
        root = active_result(context)
        assert root is not None
        parts = result_parts(root)
        self._root_name = root.name
        self._targets = {int(o[INDEX]): o.name for o in context.selected_objects if o in parts}
        if not self.properties.is_property_set("seed"):
            self.seed = random.randint(0, min(MAX_SEED, 2**31 - 1))
        state_file, state_sha = str(root.get(STATE_FILE, "")), str(root.get(STATE_SHA256, ""))
        arrays, _meta = load_state(state_file, state_sha)  # a missing or changed sidecar is said before any work
        prefs = get_preferences(context)
        engine = str(root[PROP_PREFIX + "engine"])
        options: dict[str, Any] = {
            **engine_options(prefs, engine),  # Extra Options the result's engine does not know are refused
            "regenerate_from": state_file,
            "regenerate_sha256": state_sha,
            "regenerate_parts": sorted(self._targets),
            "state_dir": regeneration_dir(),
        }
        params = GenerationParams.from_wire({**_recorded_params(root), "seed": self.seed, "num_parts": self.num_parts or None})
        image = ImageInput(name=root.name, rgba=arrays["image"])
        make_engine = engine_factory(engine, bpy.path.abspath(prefs.python_executable), options)
        return lambda progress, cancel: run_generation(image, params, make_engine, progress, cancel, options)

    def job_finish(self, context: bpy.types.Context, outcome: GenerationOutcome) -> None:
        root = bpy.data.objects.get(self._root_name)
        targets = {i: bpy.data.objects.get(name) for i, name in self._targets.items()}
        if root is None or any(obj is None for obj in targets.values()):
            raise PartCrafterError("The result changed while its parts were being regenerated; nothing was replaced.")
        result = outcome.result
        if result.failed_parts:
            failed = "; ".join(f"part {f.index + 1}: {f.reason}" for f in result.failed_parts)
            raise PartCrafterError(f"Regeneration failed, nothing was replaced ({failed}).")
        indices = [int(i) for i in result.metadata.get("regenerated_parts", ())]
        changed = replace_parts(root, targets, dict(zip(indices, result.parts, strict=True)), outcome.params.seed)
        record_regeneration_state(root, result.metadata)
        names = ", ".join(obj.name for obj in changed)
        summary = f"Regenerated {names} with seed {outcome.params.seed} in {outcome.seconds:.1f} s"
        job_state(context).last_result = summary
        self.report({"INFO"}, summary)


def _recorded_params(root: bpy.types.Object) -> dict[str, Any]:
    """The generation parameters recorded on the result (provenance names), by field name.
    A value the engine reported instead (relief records 0 steps) is left to its default."""
    values = {}
    for name, spec in param_specs().items():
        key = PROP_PREFIX + (spec.provenance or name)
        if key in root:
            value = root[key]
            value = None if spec.none_means and value == 0 else value
            try:
                check_param(name, spec, value)
            except InvalidParameter:
                continue
            values[name] = value
    return values


class PARTCRAFTER_OT_erase_regeneration_data(bpy.types.Operator):
    """Delete every result's regeneration data (part latents and image) from this extension's user folder"""

    bl_idname = "partcrafter.erase_regeneration_data"
    bl_label = "Erase Regeneration Data"

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        return context.window_manager.invoke_confirm(self, event)

    def execute(self, context: bpy.types.Context) -> set[str]:
        count = erase_states(regeneration_dir())
        self.report({"INFO"}, f"Erased the regeneration data of {count} result{'s' if count != 1 else ''}.")
        return {"FINISHED"}


def keep_regeneration_state(context: bpy.types.Context, options: dict[str, Any]) -> None:
    """Generate: ask a local engine to keep what regenerating parts needs (when the preference says so)."""
    if not uses_server(context) and get_preferences(context).keep_regeneration_data:
        options["state_dir"] = regeneration_dir()


def record_regeneration_state(root: bpy.types.Object, metadata: dict[str, Any]) -> None:
    """Generate: name the engine's sidecar file (and its checksum) on the new result's parent empty."""
    if metadata.get("state_file") and metadata.get("state_sha256"):
        root[STATE_FILE] = str(metadata["state_file"])
        root[STATE_SHA256] = str(metadata["state_sha256"])


classes = (PARTCRAFTER_OT_regenerate, PARTCRAFTER_OT_erase_regeneration_data)


def menu_items(layout: bpy.types.UILayout) -> None:
    layout.operator(PARTCRAFTER_OT_regenerate.bl_idname, icon="FILE_REFRESH")
