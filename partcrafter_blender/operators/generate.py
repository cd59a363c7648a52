"""Generate Parts: reference image in, one collection of part objects out."""

from __future__ import annotations

from typing import Any, Callable

import bpy

from ..generation import GenerationOutcome, ImageInput, provenance, run_generation
from ..inference import GenerationParams, InputImageError
from ..inference.params import param_specs
from ..param_props import unstored, with_param_properties
from ..preferences import engine_options, get_preferences
from ..scene.shading import build_with_texture
from ..scene.variants import build_result, collection_parts
from ..scene.sources import image_input_from_blender
from ..server_backend import AfterImport, engine_for, server_poll_problem, uses_server
from ..ui.settings import AUTO_TOGGLES
from ._job_mixin import JobOperatorMixin, job_state
from ._select import select_result
from .regenerate import keep_regeneration_state, record_regeneration_state


@with_param_properties()  # num_parts, seed, steps, ... (inference/params.py); 0 parts is Auto
class PARTCRAFTER_OT_generate(JobOperatorMixin, bpy.types.Operator):
    """Generate a 3D model made of separate parts from one reference image"""

    bl_idname = "partcrafter.generate"
    bl_label = "Generate Parts"
    bl_options = {"REGISTER", "UNDO"}

    job_title = "Generating parts"

    filepath: bpy.props.StringProperty(
        name="Image File", description="Reference image (PNG, JPEG or WEBP)", subtype="FILE_PATH", options={"SKIP_SAVE"}
    )
    image_name: bpy.props.StringProperty(
        name="Blender Image", description="Name of an image already loaded in Blender (instead of a file)", options={"SKIP_SAVE"}
    )
    engine: bpy.props.StringProperty(name="Engine", description="Engine name; empty for the one set in Preferences")
    size: bpy.props.FloatProperty(
        name="Size", description="Largest dimension; 0 for the Preferences' import size", default=0.0, min=0.0, unit="LENGTH"
    )
    # Server backend: explicit consent for runs without the interface, and what the consent dialog agreed to.
    consent_upload: bpy.props.BoolProperty(
        name="Consent to Upload",
        description="Upload the image to the configured server without the consent dialog (headless runs); recorded in the consent ledger",
        options={"SKIP_SAVE"},
    )
    consent_policy_version: bpy.props.StringProperty(options={"HIDDEN", "SKIP_SAVE"})
    consent_sha256: bpy.props.StringProperty(options={"HIDDEN", "SKIP_SAVE"})
    filter_image: bpy.props.BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    filter_folder: bpy.props.BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})

    _size: float = 0.0
    _location: tuple[float, float, float] = (0.0, 0.0, 0.0)
    _after_import: AfterImport | None = None

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not cls.job_poll(context):
            return False
        problem = server_poll_problem(context) if uses_server(context) else None
        if problem:
            cls.poll_message_set(problem)
            return False
        return True

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        self._take_panel_settings(context)
        if not self.filepath and not self.image_name:
            context.window_manager.fileselect_add(self)
            return {"RUNNING_MODAL"}
        return self.execute(context)

    def _take_panel_settings(self, context: bpy.types.Context) -> None:
        """Parameters a caller did not set are taken from the panel's scene settings."""
        settings = context.scene.partcrafter
        is_set = self.properties.is_property_set
        if not is_set("filepath") and not is_set("image_name"):
            if settings.source == "IMAGE" and settings.image is not None:
                self.image_name = settings.image.name
            elif settings.source == "FILE" and settings.image_path:
                self.filepath = settings.image_path
        for name in param_specs():
            if not is_set(name):
                auto = AUTO_TOGGLES.get(name)
                setattr(self, name, 0 if auto and getattr(settings, auto) else getattr(settings, name))

    def params(self) -> GenerationParams:
        return GenerationParams(**{name: unstored(name, getattr(self, name)) for name in param_specs()})

    def job_prepare(self, context: bpy.types.Context) -> Callable[..., GenerationOutcome]:
        prefs = get_preferences(context)
        self._size = self.size or prefs.import_size
        self._location = tuple(context.scene.cursor.location)
        image = self._image_input()
        params = self.params()
        options = engine_options(prefs, self.engine or prefs.engine)
        if params.variants == 1:  # a variants result cannot be regenerated, so it keeps no data
            keep_regeneration_state(context, options)
        make_engine, self._after_import = engine_for(self, context, self.engine or prefs.engine, options)
        return lambda progress, cancel: run_generation(image, params, make_engine, progress, cancel, options)

    def _image_input(self) -> ImageInput:
        if self.image_name:
            image = bpy.data.images.get(self.image_name)
            if image is None:
                raise InputImageError(f"There is no image named '{self.image_name}' in this file.")
            return image_input_from_blender(image)
        if self.filepath:
            return ImageInput.from_file(bpy.path.abspath(self.filepath))
        raise InputImageError("Choose a reference image first (a file or an image loaded in Blender).")

    def job_finish(self, context: bpy.types.Context, outcome: GenerationOutcome) -> None:
        result = outcome.result
        collection = import_outcome(context, outcome, self._size, self._location)
        warning = self._after_import(context, result) if self._after_import else ""
        if warning:
            self.report({"WARNING"}, warning)
        summary = f"{collection.name}: {len(collection_parts(collection))} parts from '{result.engine}' in {outcome.seconds:.1f} s"
        job_state(context).last_result = summary
        if result.failed_parts:
            failed = "; ".join(f"part {f.index + 1}: {f.reason}" for f in result.failed_parts)
            self.report({"WARNING"}, f"{summary}. Not produced: {failed}")
        else:
            self.report({"INFO"}, summary)


def import_outcome(
    context: bpy.types.Context, outcome: GenerationOutcome, size: float, location: tuple[float, float, float]
) -> bpy.types.Collection:
    """Main thread: build the parts (each seed variant side by side) into the scene, with
    their provenance, and select them (the first variant's, when there are several).
    A textured result shows its picture unless the preferences ask for flat colours."""
    result = outcome.result
    collection = build_with_texture(
        result.texture,
        outcome.image.name,
        get_preferences(context).textured_preview,
        lambda texture: build_result(
            result.variants(),
            collection_name=outcome.image.name,
            size=size,
            provenance=provenance(outcome),
            location=location,
            parent_collection=context.scene.collection,
            name_by_part=True,
            texture=texture,
        ),
        collection_parts,
    )
    if collection.children:
        context.view_layer.update()  # the nested variant collections join the view layer
    else:  # a variants result has no regeneration data (Regenerate refuses it, see regenerate.py)
        root = next(o for o in collection.objects if o.parent is None)
        record_regeneration_state(root, outcome.result.metadata)
    select_result(context, collection.children[0] if collection.children else collection)
    return collection


classes = (PARTCRAFTER_OT_generate,)


def menu_items(layout: Any) -> None:
    layout.operator(PARTCRAFTER_OT_generate.bl_idname, text="PartCrafter Parts from Image…", icon="MESH_MONKEY")
