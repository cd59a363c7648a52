"""Command line: generate parts from an image into a .blend (and optionally a GLB).

    python -m partcrafter_blender generate IMAGE [--parts N|auto] [--seed S] [--steps N] [--guidance G]
                                              [--quality Q] [--max-triangles N] [--engine NAME]
                                              [--engine-python PY --weights DIR --device D --dtype T]
                                              [--engine-option KEY=VALUE ...]
                                              [--out OUT.blend] [--glb OUT.glb] [--explode F] [--json]

Works with the `bpy` module from PyPI and inside a real Blender:

    blender --background --factory-startup --python /path/to/partcrafter_blender/cli.py -- generate IMAGE ...

Exit status: see EXIT_STATUSES below (also in `generate --help` and docs/blender-extension.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # Run as a script by Blender (`--python cli.py`): import the package this file sits in.
    import importlib

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    _cli = importlib.import_module(f"{Path(__file__).resolve().parent.name}.cli")
    sys.exit(_cli.main())

import argparse
import contextlib
import json
import os
import signal
import traceback
from collections.abc import Iterator
from typing import Any

from .generation import (
    GenerationOutcome,
    ImageInput,
    check_device_name,
    check_engine_options,
    engine_factory,
    parse_engine_options,
    provenance,
    run_generation,
)
from .inference import (
    DEFAULT_ENGINE,
    Cancelled,
    CancelToken,
    EngineUnavailable,
    GenerationParams,
    InputImageError,
    InvalidParameter,
    PartCrafterError,
    ProgressEvent,
)
from .inference.glb import write_glb
from .inference.params import ParamSpec, number_text, param_default, param_specs, param_type
EXIT_OK, EXIT_UNEXPECTED, EXIT_INPUT, EXIT_UNAVAILABLE, EXIT_FAILED, EXIT_CANCELLED = 0, 1, 2, 3, 4, 130
# Server backend: one status per kind of problem, so scripts can react to each.
EXIT_CONSENT, EXIT_OFFLINE, EXIT_URL, EXIT_UNREACHABLE, EXIT_REFUSED, EXIT_SERVER_JOB = 5, 6, 7, 8, 9, 10
EXIT_STATUSES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "done"),
    (EXIT_UNEXPECTED, "unexpected error (--debug prints the traceback)"),
    (EXIT_INPUT, "bad arguments or unusable image"),
    (EXIT_UNAVAILABLE, "engine unavailable"),
    (EXIT_FAILED, "engine or import failed"),
    (EXIT_CONSENT, "server: no consent to upload (--consent-upload), or the server's policy changed"),
    (EXIT_OFFLINE, "server: online access is off and the server is not on this computer (--online-mode)"),
    (EXIT_URL, "server: the URL is refused (malformed, or unencrypted to another computer)"),
    (EXIT_UNREACHABLE, "server: unreachable (down, name not found, timeout, TLS or certificate failure)"),
    (EXIT_REFUSED, "server: refused the request (API key, image or parameters, rate limit, job or result gone)"),
    (EXIT_SERVER_JOB, "server: the job failed there, or its answer or result could not be used"),
    (EXIT_CANCELLED, "cancelled (Ctrl+C or SIGTERM)"),
)


class UsageError(PartCrafterError):
    """Arguments that cannot work (checked before any slow step)."""


def _flag(name: str) -> str:
    return param_specs()[name].flag or "--" + name.replace("_", "-")


def _add_param_options(parser: argparse.ArgumentParser) -> None:
    """One option per generation parameter (inference/params.py); limits are checked in
    GenerationParams, so the messages name the flag and its range."""
    for name, spec in param_specs().items():
        default = param_default(name)
        option: dict[str, Any] = {"dest": name, "default": default}
        if spec.choices:
            option["choices"] = [value for value, _label, _description in spec.choices]
            help_text = f"{spec.description} (default: {default})"
        else:
            option["type"] = _optional_arg(param_type(name), spec) if spec.none_means else param_type(name)
            option["metavar"] = "N"
            also = f", or '{spec.none_means.lower()}'" if spec.none_means else ""
            shown = spec.none_means.lower() if default is None else default
            help_text = f"{spec.description.lower()}, {number_text(spec.minimum)}-{number_text(spec.maximum)}{also} (default: {shown})"
        parser.add_argument(_flag(name), help=help_text, **option)


def _optional_arg(kind: type, spec: ParamSpec) -> Any:
    word = spec.none_means.lower()

    def parse(text: str) -> Any:
        if text.lower() == word:
            return None
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number or '{word}', got '{text}'") from None

    return parse


def _device_arg(text: str) -> str:
    try:
        return check_device_name(text)
    except EngineUnavailable as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _engine_option_arg(text: str) -> dict[str, Any]:
    try:
        return parse_engine_options(text)
    except EngineUnavailable as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m partcrafter_blender", description="PartCrafter for Blender")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    gen = sub.add_parser(
        "generate", help="generate a multi-part model from one image",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit status:\n" + "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_STATUSES),
    )  # fmt: skip
    gen.add_argument("image", help="reference image (PNG, JPEG or WEBP)")
    _add_param_options(gen)
    gen.add_argument(
        "--engine", default=None,
        help="engine name (default: relief, the CPU preview; with --server, the server's own default engine)",
    )  # fmt: skip
    gen.add_argument("--engine-python", default="", metavar="PATH", help="run the engine in this Python interpreter")
    gen.add_argument("--weights", default="", metavar="DIR", help="folder with the neural engine's weights")
    gen.add_argument(
        "--device", type=_device_arg, default=None, metavar="DEVICE",
        help="neural engine device: auto (default), cpu, cuda or cuda:N for GPU number N",
    )  # fmt: skip
    gen.add_argument(
        "--dtype", choices=("auto", "float16", "bfloat16", "float32"), default=None,
        help="neural engine precision (default: auto, float16 on CUDA and float32 on the CPU; the CPU runs float32 only)",
    )  # fmt: skip
    gen.add_argument("--offload", choices=("none", "model"), default=None, help="model: only the active component on the GPU")
    gen.add_argument(
        "--engine-option", action="append", default=[], type=_engine_option_arg, metavar="KEY=VALUE",
        help="advanced engine option, repeatable (e.g. num_tokens=64, dense_depth=5; see docs/gpu-engine.md)",
    )  # fmt: skip
    gen.add_argument("--size", type=float, default=2.0, help="largest dimension of the result in metres (default 2)")
    gen.add_argument("--out", metavar="OUT.blend", help="write the scene here (default: IMAGE_STEM.blend unless --glb)")
    gen.add_argument("--glb", metavar="OUT.glb", help="also write the result as one GLB, one named node per part")
    gen.add_argument(
        "--explode", type=float, default=0.0, metavar="FACTOR",
        help="exploded view: 0 as generated (default), 1 moves each part out by half the model's size",
    )  # fmt: skip
    gen.add_argument("--json", action="store_true", help="print a one-line JSON summary on stdout")
    gen.add_argument("--debug", action="store_true", help="print tracebacks for unexpected errors")
    srv = gen.add_argument_group("server backend (the API key comes from PARTCRAFTER_API_KEY)")
    srv.add_argument("--server", metavar="URL", help="generate on this PartCrafter server instead of locally")
    srv.add_argument("--consent-upload", action="store_true", help="consent to upload the minimised image under the server's privacy policy")
    srv.add_argument("--online-mode", action="store_true", help="allow a server that is not on this computer (as Blender's --online-mode)")
    srv.add_argument("--ca-bundle", default="", metavar="PEM", help="certificate authorities to trust for the server")
    srv.add_argument("--keep-on-server", action="store_true", help="do not delete the server's copy of the result")
    srv.add_argument(
        "--result-retention-minutes",
        type=int,
        metavar="M",
        help="ask the server to erase the result M minutes after the job ends (only shorter than its own retention)",
    )
    led = sub.add_parser("ledger", help="print where the consent ledgers are (this command line's and Blender's)")
    led.add_argument("--json", action="store_true", help="print one JSON line")
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        # Inside Blender the script's own arguments follow "--".
        argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    args = build_parser().parse_args(argv)
    if args.command == "ledger":
        return _print_ledgers(args.json)
    try:
        return _generate(args)
    except Cancelled as exc:
        return _fail(str(exc), EXIT_CANCELLED)
    except (InputImageError, UsageError) as exc:
        return _fail(str(exc), EXIT_INPUT)
    except EngineUnavailable as exc:
        return _fail(str(exc), EXIT_UNAVAILABLE)
    except PartCrafterError as exc:
        return _fail(str(exc), _server_exit_status(exc) or EXIT_FAILED)
    except KeyboardInterrupt:
        return _fail("Cancelled by the user.", EXIT_CANCELLED)
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        return _fail(f"Unexpected error ({type(exc).__name__}: {exc}). Run again with --debug for details.", EXIT_UNEXPECTED)


def _server_exit_status(exc: PartCrafterError) -> int | None:
    """The exit status of a server-backend failure, None for anything else."""
    from .remote import errors as remote

    table: tuple[tuple[tuple[type[remote.RemoteError], ...], int], ...] = (
        ((remote.ConsentRequired, remote.PolicyOutdated), EXIT_CONSENT),
        ((remote.OnlineAccessDisabled,), EXIT_OFFLINE),
        ((remote.InvalidServerURL,), EXIT_URL),
        ((remote.ServerUnreachable, remote.TLSFailed), EXIT_UNREACHABLE),
        ((remote.AuthFailed, remote.UploadRejected, remote.RateLimited, remote.JobNotFound, remote.ResultExpired),
         EXIT_REFUSED),
        ((remote.RemoteJobFailed, remote.ServerFailed, remote.DownloadFailed), EXIT_SERVER_JOB),
    )  # fmt: skip
    return next((code for kinds, code in table if isinstance(exc, kinds)), None)


def _fail(message: str, code: int) -> int:
    print(f"partcrafter: error: {message}", file=sys.stderr)
    return code


def _output_path(raw: str, suffix: str) -> Path:
    path = Path(raw).expanduser().resolve()
    if path.suffix.lower() != suffix:
        raise UsageError(f"The output file must end in {suffix}: {raw}")
    if path.is_dir():
        raise UsageError(f"The output path is a folder: {raw}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"Cannot create the folder for {raw}: {exc.strerror or exc}") from exc
    return path


def _generate(args: argparse.Namespace) -> int:
    image_path = Path(args.image).expanduser()
    if not args.size > 0:
        raise UsageError(f"--size must be positive, got {args.size}")
    if not args.explode >= 0:
        raise UsageError(f"--explode must be 0 or more, got {args.explode}")
    try:
        params = GenerationParams(**{name: getattr(args, name) for name in param_specs()})
    except InvalidParameter as exc:
        raise UsageError(f"{_flag(exc.name)} {exc.reason}") from None
    glb = _output_path(args.glb, ".glb") if args.glb else None
    blend = _output_path(args.out or f"{image_path.stem}.blend", ".blend") if (args.out or not glb) else None

    options: dict[str, Any] = {}
    if args.weights:
        options["weights_path"] = str(Path(args.weights).expanduser().resolve())
    # Unset flags leave the engine's own defaults (and its PARTCRAFTER_* environment variables).
    options.update({key: getattr(args, key) for key in ("device", "dtype", "offload") if getattr(args, key)})
    extra = {key: value for given in args.engine_option for key, value in given.items()}
    if extra and args.server:
        raise UsageError("--engine-option is not sent to a server (the server sets its engines' options); remove it.")
    if extra:
        try:
            check_engine_options(args.engine or DEFAULT_ENGINE, extra)
        except EngineUnavailable as exc:
            raise UsageError(str(exc)) from None
    options.update(extra)
    server_run = _server_run(args) if args.server else None
    make_engine = server_run.factory if server_run else engine_factory(args.engine or DEFAULT_ENGINE, args.engine_python, options)
    try:
        cancel = CancelToken()
        with _cancel_on_sigint(cancel):
            image = ImageInput.from_file(str(image_path))
            outcome = run_generation(image, params, make_engine, _ProgressPrinter(), cancel, options)
        with _stdout_to_stderr(args.json):
            summary = _write_scene(outcome, args.size, blend, glb, args.explode)
        if server_run:
            warning = server_run.finish(outcome.result)  # delete the server copy unless --keep-on-server
            if warning:
                print(f"partcrafter: warning: {warning}", file=sys.stderr)
    finally:
        if server_run:
            server_run.close()
    if args.json:
        print(json.dumps(summary, separators=(",", ":")), flush=True)
    else:
        names = ", ".join(p["name"] for p in summary["parts"])
        print(f"{summary['collection']}: {len(summary['parts'])} parts ({names}) in {summary['seconds']:.1f} s")
        for path in (blend, glb):
            if path:
                print(f"wrote {path}")
    return EXIT_OK


def _print_ledgers(as_json: bool) -> int:
    """The consent ledgers: the command line's, and each Blender's that has one."""
    from .remote.consent import LEDGER_FILE
    from .remote.userdir import USER_DIR_ENV, blender_dirs, command_line_dir

    override = os.environ.get(USER_DIR_ENV, "").strip()
    if override:  # both the command line and Blender use it
        shared = str(Path(override).expanduser() / LEDGER_FILE)
        found = {"command_line": shared, "blender": [shared], "shared": True}
    else:
        found = {
            "command_line": str(command_line_dir() / LEDGER_FILE),
            "blender": [str(folder / LEDGER_FILE) for folder in blender_dirs()],
            "shared": False,
        }
    if as_json:
        print(json.dumps(found, separators=(",", ":")))
        return EXIT_OK
    print(f"command line: {found['command_line']}")
    for path in found["blender"]:
        print(f"Blender:      {path}")
    if not found["blender"]:
        print("Blender:      none found (Blender keeps its ledger in the extension's user folder)")
    return EXIT_OK


def _server_run(args: argparse.Namespace) -> Any:
    """Checked before the image is even read: URL, online access, consent flag."""
    from .remote.gate import ServerConfig
    from .remote.headless import HeadlessServerRun, blender_online_access

    config = ServerConfig(
        url=args.server,
        ca_bundle=args.ca_bundle,
        engine=args.engine or "",  # none named: the server runs its own default engine
        keep_on_server=args.keep_on_server,
        result_retention_minutes=args.result_retention_minutes,
    )
    directory = None
    if "bpy" in sys.modules:  # inside Blender: the extension's user folder, as the add-on uses
        from .server_backend import server_dir

        directory = server_dir()
    return HeadlessServerRun(config, args.consent_upload, args.online_mode or blender_online_access(), directory)


def _write_scene(
    outcome: GenerationOutcome, size: float, blend: Path | None, glb: Path | None, explode: float = 0.0
) -> dict[str, Any]:
    import bpy  # after the slow part, so bad inputs fail fast

    from .scene.build import gltf_part
    from .scene.explode import set_explode
    from .scene.shading import build_with_texture
    from .scene.variants import build_result, collection_parts

    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    result = outcome.result
    collection = build_with_texture(
        result.texture,
        outcome.image.name,
        True,
        lambda texture: build_result(
            result.variants(),
            collection_name=outcome.image.name,
            size=size,
            provenance=provenance(outcome),
            location=(0.0, 0.0, 0.0),
            parent_collection=bpy.context.scene.collection,
            name_by_part=True,
            texture=texture,
        ),
        collection_parts,
    )
    objects = collection_parts(collection)
    # One root empty per variant (the result's own when there is one), each with its explode rig.
    roots = [o for c in (collection.children or [collection]) for o in c.objects if o.parent is None]
    for root in roots:
        set_explode(root, explode)
    if blend:
        bpy.ops.wm.save_as_mainfile(filepath=str(blend), check_existing=False)
    if glb:
        bpy.context.view_layer.update()  # world matrices include the parent empty's placement
        placed = [gltf_part(obj, p.color, p.variant, p.uvs) for obj, p in zip(objects, result.parts, strict=True)]
        glb.write_bytes(
            write_glb(placed, extras=provenance(outcome), variant_seeds=result.variant_seeds, texture=result.texture)
        )
    return {
        "collection": collection.name,
        "parts": [{"name": o.name, "vertices": len(o.data.vertices), "faces": len(o.data.polygons)} for o in objects],
        "failed_parts": [{"index": f.index, "reason": f.reason} for f in result.failed_parts],
        "variant_seeds": [seed for seed, _parts in result.variants()],
        "engine": result.engine,
        "engine_version": result.engine_version,
        "seconds": round(outcome.seconds, 3),
        "image_sha256": outcome.image.sha256,
        "blend": str(blend) if blend else None,
        "glb": str(glb) if glb else None,
    }


class _ProgressPrinter:
    """Progress on stderr, one line per stage change or 10% step."""

    def __init__(self) -> None:
        self._last: tuple[str, int] = ("", -1)

    def __call__(self, event: ProgressEvent) -> None:
        step = int(event.fraction * 10)
        if (event.stage, step) != self._last:
            self._last = (event.stage, step)
            print(f"[{event.fraction * 100:3.0f}%] {event.stage}: {event.message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _cancel_on_sigint(cancel: CancelToken) -> Iterator[None]:
    """First Ctrl+C (or SIGTERM, as `timeout` and job schedulers send) asks the engine to
    stop cleanly, so its temporary files go too; a second one interrupts."""

    def handler(_signum: int, _frame: Any) -> None:
        if cancel.cancelled:
            raise KeyboardInterrupt
        print("partcrafter: cancelling… (Ctrl+C again to stop at once)", file=sys.stderr, flush=True)
        cancel.cancel()

    signals = [signal.SIGINT] + ([signal.SIGTERM] if hasattr(signal, "SIGTERM") else [])
    try:
        previous = {sig: signal.signal(sig, handler) for sig in signals}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before)


@contextlib.contextmanager
def _stdout_to_stderr(active: bool) -> Iterator[None]:
    """Blender prints to the C-level stdout; keep stdout for the JSON line alone."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
