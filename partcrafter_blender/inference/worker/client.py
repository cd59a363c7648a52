"""Run an engine in a separate Python process (the interpreter the user points to).

The parent never imports torch: it writes the request into a private temporary
folder, starts the child, relays its progress events, forwards cancellation, and
reads the meshes back. A crash of the child (segfault, out of memory, os._exit)
becomes an EngineFailed with the end of the child's stderr; the GPU memory goes
away with the process.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..contract import Availability, CancelToken, GenerationRequest, GenerationResult, ProgressCallback, ProgressEvent
from ..errors import Cancelled, EngineFailed, EngineUnavailable, PartCrafterError
from ..registry import create_engine
from . import protocol

_PACKAGE_DIR = Path(__file__).resolve().parents[2]  # .../partcrafter_blender

# Loads the package without running its top-level __init__ (which, inside Blender,
# registers the add-on and imports bpy); the child needs only the inference code.
_BOOTSTRAP = (
    "import sys, types; pkg = types.ModuleType('partcrafter_blender'); pkg.__path__ = [sys.argv[1]]; "
    "sys.modules['partcrafter_blender'] = pkg; "
    "from partcrafter_blender.inference.worker.child import main; sys.exit(main())"
)

GPU_PIP_COMMAND = "python -m pip install numpy Pillow torch transformers safetensors scikit-image huggingface_hub"

def child_command(python_executable: str) -> list[str]:
    return [python_executable, "-u", "-c", _BOOTSTRAP, str(_PACKAGE_DIR)]


def child_environment(extra_env: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # Blender sets these for its own bundled Python; another interpreter must not inherit them.
    for key in ("PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE"):
        env.pop(key, None)
    env.update(extra_env or {})
    paths = [str(_PACKAGE_DIR.parent)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _check_interpreter(python_executable: str) -> str | None:
    """None when the interpreter looks runnable, else why not."""
    if not python_executable:
        return "No Python interpreter is set for the local engine. Set it in the add-on preferences."
    path = Path(python_executable).expanduser()
    if not path.exists():
        return f"The Python interpreter {path} does not exist."
    if path.is_dir() or not os.access(path, os.X_OK):
        return f"{path} is not an executable Python interpreter."
    return None


def _exit_description(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _tail(path: Path, lines: int = 25, limit: int = 4000) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])[-limit:]


class _Child:
    """One running child: its pipes, a reader thread for stdout, and the job folder."""

    def __init__(self, python_executable: str, extra_env: dict[str, str] | None) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="partcrafter-worker-"))  # mode 0700: private to the user
        self.stderr_path = self.workdir / protocol.STDERR_FILE
        self._stderr = self.stderr_path.open("wb")
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        kwargs: dict[str, Any] = {}
        if os.name == "posix":
            kwargs["start_new_session"] = True  # Ctrl-C in Blender's console must not kill the worker mid-write
        else:
            kwargs["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) | getattr(
                subprocess, "CREATE_NO_WINDOW", 0
            )
        try:
            self.proc = subprocess.Popen(
                child_command(python_executable),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env=child_environment(extra_env),
                cwd=str(self.workdir),
                **kwargs,
            )
        except OSError as exc:
            self.close()
            raise EngineUnavailable(f"Cannot start the Python interpreter {python_executable}: {exc}") from exc
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.events.put(protocol.decode(line))
            except ValueError:
                continue  # stray bytes on the protocol channel are ignored
        self.events.put(None)

    def send(self, message: dict[str, Any]) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(protocol.encode(message))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the child already exited; its exit status tells the story

    def close_stdin(self) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        except OSError:
            pass

    def stop(self, grace_s: float) -> None:
        """Terminate, then kill whatever is still running after the grace period."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait()

    def failure(self, what: str) -> EngineFailed:
        tail = _tail(self.stderr_path)
        detail = f" Last lines of its log:\n{tail}" if tail else ""
        return EngineFailed(f"The local engine process {what} ({_exit_description(self.proc.returncode)}).{detail}")

    def close(self) -> None:
        try:
            self._stderr.close()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _describe(engine_name: str) -> tuple[str, bool]:
    """The wrapped engine's label and preview flag (engine modules import without torch)."""
    try:
        engine = create_engine(engine_name)
        return str(engine.label), bool(engine.is_preview)
    except (PartCrafterError, ImportError):
        return f"{engine_name} (separate process)", True  # known only to the child (a plugin)


class WorkerEngine:
    """An `Engine` whose work happens in a child process started with `python_executable`.

    `options` are merged into every request's options (weights path, device, ...).
    `extra_env` is added to the child's environment. `cancel_grace_s` is how long a
    cancelled child may take to stop by itself before it is terminated, then killed.
    The child runs every seed variant of a request itself (one process, one model load)."""

    generates_variants = True

    def __init__(
        self,
        python_executable: str,
        engine_name: str = "partcrafter",
        options: dict[str, Any] | None = None,
        extra_env: dict[str, str] | None = None,
        cancel_grace_s: float = 5.0,
        label: str | None = None,
        is_preview: bool | None = None,
    ) -> None:
        known_label, known_preview = _describe(engine_name)
        self.python_executable = str(Path(python_executable).expanduser()) if python_executable else ""
        self.name = engine_name
        self.label = label or known_label
        self.is_preview = known_preview if is_preview is None else is_preview
        self.options = dict(options or {})
        self.extra_env = dict(extra_env or {})
        self.cancel_grace_s = cancel_grace_s

    def availability(self) -> Availability:
        """Cheap: checks only the interpreter path. `check_local_engine` does the full check."""
        problem = _check_interpreter(self.python_executable)
        return Availability(problem is None, problem or "")

    def generate(
        self,
        request: GenerationRequest,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> GenerationResult:
        problem = _check_interpreter(self.python_executable)
        if problem:
            raise EngineUnavailable(problem)
        if cancel is not None:
            cancel.raise_if_cancelled()
        request = replace(request, options={**self.options, **request.options})
        child = _Child(self.python_executable, self.extra_env)
        try:
            child.send(protocol.request_to_message(request, self.name, child.workdir))
            return self._follow(child, progress, cancel)
        finally:
            child.close_stdin()
            child.stop(self.cancel_grace_s)
            child.close()

    def _follow(self, child: _Child, progress: ProgressCallback | None, cancel: CancelToken | None) -> GenerationResult:
        cancel_deadline: float | None = None
        final: dict[str, Any] | None = None
        while True:
            if cancel is not None and cancel.cancelled and cancel_deadline is None:
                child.send({"type": "cancel"})
                cancel_deadline = time.monotonic() + self.cancel_grace_s
            if cancel_deadline is not None and time.monotonic() > cancel_deadline:
                child.stop(1.0)  # it did not stop by itself in time
                raise Cancelled()
            try:
                event = child.events.get(timeout=0.05)
            except queue.Empty:
                continue
            if event is None:
                break  # the child closed stdout: it is exiting
            if event["type"] == "progress":
                if progress is not None and cancel_deadline is None:
                    progress(ProgressEvent(str(event["stage"]), float(event["fraction"]), str(event.get("message", ""))))
            elif event["type"] in ("result", "error"):
                final = event
        try:
            child.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.stop(1.0)  # output is complete but the process hangs on exit (e.g. driver teardown)
        if cancel_deadline is not None:
            raise Cancelled()  # even when a result arrived meanwhile: the user asked to stop
        if final is None:
            raise child.failure("stopped without a result")
        if final["type"] == "error":
            raise protocol.error_from(final)
        try:
            return protocol.read_result(final["meta"], child.workdir)
        except (OSError, KeyError, ValueError) as exc:
            raise EngineFailed(f"The local engine's result could not be read back ({exc}).") from exc


def check_local_engine(python_executable: str, weights_path: str | None, timeout_s: float = 180.0) -> dict[str, Any]:
    """Everything the "Check local engine" button shows, gathered in a child process.

    Returns a dict with `ok`, `summary` (lines a person reads), `problems`, and the raw
    `report` (interpreter, packages, torch + CUDA versions, GPUs, weights verification)."""
    problem = _check_interpreter(python_executable)
    if problem:
        return {"ok": False, "summary": [problem], "problems": [problem], "report": None}
    child = _Child(str(Path(python_executable).expanduser()), None)
    try:
        child.send({"type": "check", "weights_path": weights_path})
        child.close_stdin()
        deadline = time.monotonic() + timeout_s
        report = None
        while time.monotonic() < deadline:
            try:
                event = child.events.get(timeout=0.1)
            except queue.Empty:
                continue
            if event is None:
                break
            if event["type"] == "check":
                report = event["report"]
        child.stop(2.0)
        if report is None:
            what = "did not answer in time" if time.monotonic() >= deadline else "stopped without answering"
            msg = str(child.failure(what))
            missing = re.search(r"No module named '([\w.]+)'", msg)
            if missing:
                msg = (f"{python_executable} lacks the package '{missing.group(1).split('.')[0]}'. Install the "
                       f"local engine's packages into it: {GPU_PIP_COMMAND} (see docs/gpu-engine.md).")
            return {"ok": False, "summary": [msg], "problems": [msg], "report": None}
    finally:
        child.close()
    return summarise_check(report)


def summarise_check(report: dict[str, Any]) -> dict[str, Any]:
    """Turn the child's raw report into lines for the UI and a list of problems."""
    packages = report["packages"]
    lines = [f"Python {report['python_version']} at {report['python_executable']}"]
    problems = []
    missing = [name for name in ("torch", "transformers", "safetensors", "skimage") if not packages.get(name)]
    if missing:
        pip_names = {"skimage": "scikit-image"}
        problems.append(
            "Missing in this interpreter: " + ", ".join(missing)
            + ". Install with: pip install " + " ".join(pip_names.get(m, m) for m in missing)
        )
    if report["torch"]:
        cuda = f"CUDA {report['cuda_version']}" if report["cuda_version"] else "CPU-only build"
        lines.append(f"torch {report['torch']} ({cuda})")
    if report["gpus"]:
        for gpu in report["gpus"]:
            lines.append(f"GPU {gpu['index']}: {gpu['name']}, {gpu['memory_gb']:.1f} GB")
    elif report["torch"]:
        lines.append("No CUDA GPU: the engine runs on the CPU in float32 (correct but very slow).")
    weights = report["weights"]
    lines.append(weights["message"])
    if not weights["ok"]:
        problems.append(weights["message"])
    return {"ok": not problems, "summary": lines + problems, "problems": problems, "report": report}


def default_python_executable() -> str:
    """The interpreter running this code (Blender's own Python inside Blender)."""
    return sys.executable
