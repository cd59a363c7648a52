"""The worker process: runs one engine job (or an environment check) and exits.

Started by `WorkerEngine` with the interpreter the user chose (the one with torch).
Its stdout is reserved for protocol events; anything the engine or its libraries
print is redirected to stderr, which the parent keeps as the crash log.
"""

from __future__ import annotations

import faulthandler
import importlib
import importlib.metadata
import importlib.util
import os
import platform
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, BinaryIO

from .. import variants
from ..contract import CancelToken, ProgressEvent
from ..errors import EngineFailed, PartCrafterError
from ..registry import create_engine, register_engine
from . import protocol

# "name=module:attr,name2=module:attr" registers extra engines in the child (tests, plugins).
EXTRA_ENGINES_ENV = "PARTCRAFTER_WORKER_ENGINES"


class _Channel:
    """Thread-safe writer of protocol events."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        data = protocol.encode(message)
        with self._lock:
            self._stream.write(data)
            self._stream.flush()


def _take_stdout() -> BinaryIO:
    """Keep the real stdout for the protocol and point fd 1 (and sys.stdout) at stderr."""
    proto = os.fdopen(os.dup(1), "wb", buffering=0)
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return proto


def _register_extra_engines() -> None:
    spec = os.environ.get(EXTRA_ENGINES_ENV, "").strip()
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, target = item.split("=", 1)
        module_name, attr = target.split(":", 1)
        register_engine(name.strip(), getattr(importlib.import_module(module_name.strip()), attr.strip()))


def _watch_stdin(stdin: BinaryIO, cancel: CancelToken) -> None:
    """A cancel message, or the parent closing the pipe, cancels the job."""
    for line in stdin:
        try:
            if protocol.decode(line).get("type") == "cancel":
                break
        except ValueError:
            continue  # not a protocol line; keep listening
    cancel.cancel()


def _generate(message: dict[str, Any], channel: _Channel, stdin: BinaryIO) -> None:
    cancel = CancelToken()
    threading.Thread(target=_watch_stdin, args=(stdin, cancel), daemon=True).start()
    request = protocol.request_from_message(message)
    engine = create_engine(message["engine"])

    def progress(event: ProgressEvent) -> None:
        channel.send({"type": "progress", "stage": event.stage, "fraction": event.fraction, "message": event.message})

    result = variants.generate(engine, request, progress, cancel)
    meta = protocol.write_result(result, Path(message["workdir"]))
    channel.send({"type": "result", "meta": meta})


_DISTRIBUTIONS = {"numpy": "numpy", "torch": "torch", "transformers": "transformers", "safetensors": "safetensors",
                  "skimage": "scikit-image", "PIL": "Pillow", "huggingface_hub": "huggingface_hub"}


def _version(module: str) -> str | None:
    """Installed version without importing (transformers alone takes seconds to import)."""
    if importlib.util.find_spec(module) is None:
        return None
    try:
        return importlib.metadata.version(_DISTRIBUTIONS[module])
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def environment_report(weights_path: str | None) -> dict[str, Any]:
    """Interpreter, torch/CUDA, GPU and weights status, for the "Check local engine" button."""
    from ..partcrafter.weights import verify_weights_folder

    report: dict[str, Any] = {
        "python_executable": sys.executable,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "packages": {m: _version(m) for m in _DISTRIBUTIONS},
        "torch": None,
        "cuda_available": False,
        "cuda_version": None,
        "gpus": [],
    }
    if report["packages"]["torch"]:
        import torch

        report["torch"] = torch.__version__
        report["cuda_version"] = torch.version.cuda
        report["cuda_available"] = bool(torch.cuda.is_available())
        if report["cuda_available"]:
            for i in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(i)
                report["gpus"].append({
                    "index": i,
                    "name": props.name,
                    "memory_gb": round(props.total_memory / 2**30, 2),
                    "compute_capability": f"{props.major}.{props.minor}",
                    "bf16": bool(torch.cuda.is_bf16_supported()) if i == 0 else None,
                })
    report["weights"] = verify_weights_folder(weights_path).to_dict()
    return report


def main() -> int:
    faulthandler.enable()  # a segfault in torch/CUDA leaves a Python traceback in the log
    channel = _Channel(_take_stdout())
    stdin = sys.stdin.buffer
    try:
        line = stdin.readline()
        if not line:
            return 2  # the parent closed stdin before sending a job
        message = protocol.decode(line)
        _register_extra_engines()
        if message["type"] == "check":
            channel.send({"type": "check", "report": environment_report(message.get("weights_path"))})
        elif message["type"] == "generate":
            _generate(message, channel, stdin)
        else:
            channel.send(protocol.error_message(EngineFailed(f"Unknown job type {message['type']!r}.")))
            return 2
    except PartCrafterError as exc:
        channel.send(protocol.error_message(exc))
    except Exception as exc:  # an engine bug: report it as a failed run, with the traceback in the log
        traceback.print_exc()
        channel.send(protocol.error_message(EngineFailed(f"The engine failed unexpectedly ({type(exc).__name__}: {exc}).")))
        return 1
    finally:
        sys.stderr.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
