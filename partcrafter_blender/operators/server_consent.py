"""The consent operators of the server backend: the check and the dialog.

`server_backend.engine_for` starts the consent check (`partcrafter.server_consent_check`)
when generation needs consent. The check is a job like generation: the policy request
and the image minimisation run on the worker thread, so the interface stays responsive
(and Esc cancels). Back on the main thread it either runs generate again under a
standing consent, or opens the consent dialog. The dialog records Accept or Decline in
the ledger; Accept re-runs generate with the consented policy version and image hash,
Decline sends nothing. Generate's own arguments travel through both as JSON.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import bpy

from ..generation import ImageInput
from ..inference import InputImageError, PartCrafterError, ProgressEvent
from ..inference.images import LoadedImage
from ..preferences import get_preferences
from ..remote.consent import ConsentLedger
from ..remote.gate import (
    POLICY_TIMEOUT,
    RESULT_RETENTION_CHOICES,
    RESULT_RETENTION_ITEMS,
    ConsentQuestion,
    connect,
    consent_question,
    headless_refusal,
)
from ..scene.sources import image_input_from_blender
from ..server_backend import HEADLESS_FLAG, interactive, ops_error_text, replayable_properties, server_config, server_dir
from ._job_mixin import JobOperatorMixin


def image_loader(args: dict[str, Any]) -> Callable[[], LoadedImage]:
    """Main thread: what the worker calls to load the image named by generate arguments.
    Pixels of a Blender image are read here (bpy); decoding happens on the worker."""
    if args.get("image_name"):
        image = bpy.data.images.get(args["image_name"])
        if image is None:
            raise InputImageError(f"There is no image named '{args['image_name']}' in this file.")
        return image_input_from_blender(image).load
    if args.get("filepath"):
        path = bpy.path.abspath(args["filepath"])
        return lambda: ImageInput.from_file(path).load()
    raise InputImageError("Choose a reference image first (a file or an image loaded in Blender).")


def generate_args(text: str) -> dict[str, Any]:
    """The generate arguments handed through an operator property, only the generate operator's own."""
    try:
        data = json.loads(text or "{}")
    except ValueError:
        data = {}
    known = set(replayable_properties(bpy.ops.partcrafter.generate.get_rna_type()))
    return {k: v for k, v in data.items() if k in known} if isinstance(data, dict) else {}


def run_generate(context: bpy.types.Context, args: dict[str, Any], **consent: str) -> set[str]:
    mode = "INVOKE_DEFAULT" if interactive(context) else "EXEC_DEFAULT"
    return bpy.ops.partcrafter.generate(mode, **args, **consent)


def open_consent_dialog(context: bpy.types.Context, question: ConsentQuestion, ask_every_time: bool, args: dict[str, Any]) -> set[str]:
    if not interactive(context):  # never answer the dialog on the user's behalf
        raise headless_refusal(question.host, HEADLESS_FLAG)
    return bpy.ops.partcrafter.server_consent(
        "INVOKE_DEFAULT",
        host=question.host,
        server=question.server,
        policy_version=question.policy.version,
        policy_url=question.policy.url,
        input_retention=question.policy.input_retention,
        result_retention_days=question.policy.result_retention_days or 0,
        max_retention_days=question.policy.max_retention_days or 0,
        encryption=question.policy.encryption,
        sha256=question.upload.sha256,
        image_sha256=question.image_sha256,
        width=question.upload.width,
        height=question.upload.height,
        size=question.upload.size,
        ask_every_time=ask_every_time,
        generate_args=json.dumps(args),
    )


def call_next(op: bpy.types.Operator, step: Callable[[], set[str]]) -> set[str]:
    """Run the next operator of a chain, as `op`'s last act: FINISHED once it started
    (it may go on as a modal job or dialog of its own), else CANCELLED. A failure is
    reported by `op`, not raised out of a modal handler or dialog (bpy.ops turns error
    reports into RuntimeError)."""
    try:
        started = step()
        return {"FINISHED"} if started & {"FINISHED", "RUNNING_MODAL"} else {"CANCELLED"}
    except PartCrafterError as exc:
        op.report({"ERROR"}, str(exc))
    except RuntimeError as exc:
        op.report({"ERROR"}, ops_error_text(exc))
    return {"CANCELLED"}


class PARTCRAFTER_OT_server_consent(bpy.types.Operator):
    """Review exactly what will be sent to the server, under which policy, and agree or decline"""

    bl_idname = "partcrafter.server_consent"
    bl_label = "Send Image to Server?"
    bl_options = {"INTERNAL"}

    host: bpy.props.StringProperty(options={"SKIP_SAVE"})
    server: bpy.props.StringProperty(options={"SKIP_SAVE"})
    policy_version: bpy.props.StringProperty(options={"SKIP_SAVE"})
    policy_url: bpy.props.StringProperty(options={"SKIP_SAVE"})
    input_retention: bpy.props.StringProperty(options={"SKIP_SAVE"})
    result_retention_days: bpy.props.IntProperty(options={"SKIP_SAVE"})
    max_retention_days: bpy.props.IntProperty(options={"SKIP_SAVE"})
    encryption: bpy.props.StringProperty(options={"SKIP_SAVE"})
    sha256: bpy.props.StringProperty(options={"SKIP_SAVE"})
    image_sha256: bpy.props.StringProperty(options={"SKIP_SAVE"})
    width: bpy.props.IntProperty(options={"SKIP_SAVE"})
    height: bpy.props.IntProperty(options={"SKIP_SAVE"})
    size: bpy.props.IntProperty(options={"SKIP_SAVE"})
    ask_every_time: bpy.props.BoolProperty(options={"SKIP_SAVE"})
    generate_args: bpy.props.StringProperty(options={"SKIP_SAVE"})
    decision: bpy.props.EnumProperty(
        items=[("ACCEPT", "Accept", "Upload the image"), ("DECLINE", "Decline", "Send nothing")],
        default="ACCEPT",
        options={"SKIP_SAVE"},
    )
    # The person's choice, shown in the dialog; Accept keeps it in the preferences for next time.
    result_retention: bpy.props.EnumProperty(
        name="Keep the Result",
        description="How long the server may keep the result: its own retention or shorter",
        items=RESULT_RETENTION_ITEMS,
        default="SERVER",
        options={"SKIP_SAVE"},
    )

    def invoke(self, context: bpy.types.Context, _event: bpy.types.Event) -> set[str]:
        self.result_retention = get_preferences(context).server.result_retention
        return context.window_manager.invoke_props_dialog(
            self, width=480, title=f"Send this image to {self.host}?", confirm_text="Accept and Upload", cancel_default=True
        )

    def draw(self, _context: bpy.types.Context) -> None:
        col = self.layout.column(align=True)
        col.label(text=f"Destination: {self.host}", icon="WORLD")
        col.label(text=f"What is sent: one PNG, {self.width} x {self.height} px, {self.size:,} bytes", icon="IMAGE_DATA")
        col.label(text="Metadata (EXIF, GPS, colour profile) removed; downscaled to at most 1024 px.")
        col.label(text="Nothing else: no scene, no file names, no other images.")
        col.separator()
        col.label(text=f"Privacy policy version {self.policy_version}", icon="INFO")
        col.label(text=f"Your image: {self.input_retention or 'see the policy'}")
        col.label(text=f"Results kept {self.result_retention_days} days; everything erased after {self.max_retention_days} days.")
        # The relief preview's result embeds the (cropped) picture as its texture.
        col.label(text="A relief preview result carries your picture as its texture: kept and erased with the result.")
        col.prop(self, "result_retention")
        chosen = RESULT_RETENTION_CHOICES[self.result_retention][1]
        if chosen and self.result_retention_days and chosen > self.result_retention_days * 1440:
            col.label(text="This server keeps results for less time than that; choose a shorter time.", icon="ERROR")
        if self.encryption:
            col.label(text=f"Storage: {self.encryption}")
        col.label(text=f"Read the policy: {self.policy_url or 'the server did not give an address'}")
        if self.policy_url:
            col.operator("wm.url_open", text="Open Privacy Policy", icon="URL").url = self.policy_url
        col.separator()
        if self.ask_every_time:
            col.label(text="You will be asked again before every upload (preferences).")
        else:
            col.label(text="You will be asked again if this server's policy changes.")

    def execute(self, context: bpy.types.Context) -> set[str]:
        accepted = self.decision == "ACCEPT"
        self._record(accepted)
        if not accepted:
            self.report({"INFO"}, f"Declined: nothing was sent to {self.host}.")
            return {"CANCELLED"}
        if self.properties.is_property_set("result_retention"):  # chosen in the dialog (or by the caller)
            get_preferences(context).server.result_retention = self.result_retention
        args = generate_args(self.generate_args)
        return call_next(
            self, lambda: run_generate(context, args, consent_policy_version=self.policy_version, consent_sha256=self.sha256)
        )

    def cancel(self, _context: bpy.types.Context) -> None:
        """The dialog was dismissed: a decline, recorded; nothing is sent."""
        self._record(False)

    def _record(self, accepted: bool) -> None:
        via = "ask-every-time dialog" if self.ask_every_time else "dialog"
        decision = "accepted" if accepted else "declined"
        ledger = ConsentLedger(server_dir())
        ledger.record_image(decision, self.host, self.server, self.policy_version, self, via, self.image_sha256)


class PARTCRAFTER_OT_server_consent_check(JobOperatorMixin, bpy.types.Operator):
    """Read the server's privacy policy and prepare the image, then ask for consent (or upload under a standing one)"""

    bl_idname = "partcrafter.server_consent_check"
    bl_label = "Check Consent for the Server"
    bl_options = {"INTERNAL"}

    job_title = "Reading the server's privacy policy"

    generate_args: bpy.props.StringProperty(options={"SKIP_SAVE"})

    _ask_every_time: bool = False
    _next: Callable[[bpy.types.Context], set[str]] | None = None

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return cls.job_poll(context)

    def job_prepare(self, context: bpy.types.Context) -> Callable[..., tuple[ConsentQuestion, bool]]:
        load = image_loader(generate_args(self.generate_args))
        config = server_config(context)
        client = connect(config, bool(bpy.app.online_access), POLICY_TIMEOUT)
        ledger = ConsentLedger(server_dir())
        self._ask_every_time = config.ask_every_time

        def work(progress: Any, cancel: Any) -> tuple[ConsentQuestion, bool]:
            with client:
                progress(ProgressEvent("preprocess", 0.1, "Preparing the image to upload"))
                loaded = load()
                cancel.raise_if_cancelled()
                progress(ProgressEvent("policy", 0.5, f"Reading the privacy policy of {client.host}"))
                return consent_question(client, ledger, loaded.rgba, config.ask_every_time, cancel, loaded.sha256)

        return work

    def job_finish(self, context: bpy.types.Context, outcome: tuple[ConsentQuestion, bool]) -> None:
        question, ask = outcome
        args = generate_args(self.generate_args)
        if ask:
            self._next = lambda ctx: open_consent_dialog(ctx, question, self._ask_every_time, args)
        else:  # a standing consent covers this server and policy version
            self._next = lambda ctx: run_generate(ctx, args, consent_policy_version=question.policy.version)

    # The next step starts only once this job has ended and released the job slot.
    def execute(self, context: bpy.types.Context) -> set[str]:
        return self._then(context, super().execute(context))

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        return self._then(context, super().modal(context, event))

    def _then(self, context: bpy.types.Context, outcome: set[str]) -> set[str]:
        step, self._next = self._next, None
        if outcome != {"FINISHED"} or step is None:
            return outcome
        return call_next(self, lambda: step(context))


classes = (PARTCRAFTER_OT_server_consent, PARTCRAFTER_OT_server_consent_check)
