"""The local neural engine from Blender: preferences, "Check Local Engine", and a real
end-to-end run of the "partcrafter" engine in a worker process (this venv's Python) on
the tiny conformance weights, through the operator and through the command line."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from safetensors.numpy import load_file, save_file

from partcrafter_blender.generation import engine_label
from partcrafter_blender.inference import Cancelled, CancelToken, create_engine

REPO = Path(__file__).resolve().parents[2]
PIPELINE = (REPO / ".." / "shared" / "conformance" / "partcrafter" / "pipeline").resolve()
ROBOT = PIPELINE / "robot_np3.png"  # the conformance case's input: 3 parts
COMPONENTS = ("model_index.json", "transformer", "vae", "scheduler", "feature_extractor_dinov2", "image_encoder_dinov2")
# The conformance case's sizes: the tiny weights need 64 tokens; small grids keep it fast on a CPU.
FAST = {"num_tokens": 64, "dense_depth": 5, "hierarchical_depth": 6}
FAST_TEXT = ", ".join(f"{k}={v}" for k, v in FAST.items())
STEPS = 4
# The engine's interpreter: this venv's Python (torch, transformers, safetensors, scikit-image), or, for
# Blender 5.1+ whose Python 3.13 has no CPU torch here, the one the version matrix names, as a user would.
ENGINE_PYTHON = os.environ.get("PARTCRAFTER_TEST_ENGINE_PYTHON") or sys.executable
# The engine inside Blender's own Python (Engine Python empty) needs torch there.
IN_PROCESS = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="this Blender's Python has no torch for the in-process engine"
)

PREF_NAMES = ("backend", "engine", "python_executable", "weights_dir", "device", "gpu_index", "dtype", "offload",
              "engine_extra_options")


@pytest.fixture
def prefs(bpy_addon: Any) -> Iterator[Any]:
    """The real add-on preferences, restored after the test."""
    p = bpy_addon.context.preferences.addons["partcrafter_blender"].preferences
    saved = {name: getattr(p, name) for name in PREF_NAMES}
    yield p
    for name, value in saved.items():
        setattr(p, name, value)


@pytest.fixture
def check(bpy_addon: Any) -> Any:
    return bpy_addon.context.window_manager.partcrafter_engine_check


def copy_weights(dest: Path) -> Path:
    assert PIPELINE.is_dir(), f"missing conformance weights {PIPELINE}"
    dest.mkdir()
    for name in COMPONENTS:
        src = PIPELINE / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / name)
    return dest


def run_check(bpy: Any, prefs: Any, python: str, weights: Path | str) -> None:
    prefs.python_executable = str(python)
    prefs.weights_dir = str(weights)
    bpy.ops.partcrafter.check_local_engine()


# --- Check Local Engine ------------------------------------------------------------------


def test_check_reports_interpreter_torch_and_verified_weights(bpy_addon, prefs, check):
    run_check(bpy_addon, prefs, ENGINE_PYTHON, PIPELINE)
    python_version, torch_version = subprocess.run(
        [ENGINE_PYTHON, "-c", "import sys, importlib.metadata as m; print(sys.version.split()[0], m.version('torch'))"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    lines = check.text.splitlines()
    assert check.ok
    assert lines[0].startswith(f"Python {python_version} at ")
    assert any(line.startswith(f"torch {torch_version}") for line in lines), lines
    # This machine has no GPU: the report says so instead of listing one.
    assert any("No CUDA GPU" in line or line.startswith("GPU 0: ") for line in lines), lines
    assert f"The weights folder {PIPELINE} verifies" in check.text


def test_check_names_a_tensor_missing_from_the_weights(bpy_addon, prefs, check, tmp_path):
    weights = copy_weights(tmp_path / "weights")
    path = weights / "vae" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(path)
    removed = sorted(tensors)[0]
    save_file({k: v for k, v in tensors.items() if k != removed}, path)
    with pytest.raises(RuntimeError, match=r"vae/diffusion_pytorch_model\.safetensors is missing 1 tensor"):
        run_check(bpy_addon, prefs, ENGINE_PYTHON, weights)
    assert not check.ok
    assert removed in check.text
    assert any(line.startswith("torch ") for line in check.text.splitlines())  # still reports the rest


def test_check_names_a_missing_file(bpy_addon, prefs, check, tmp_path):
    weights = copy_weights(tmp_path / "weights")
    (weights / "transformer" / "config.json").unlink()
    with pytest.raises(RuntimeError, match=r"transformer/config\.json"):
        run_check(bpy_addon, prefs, ENGINE_PYTHON, weights)
    assert not check.ok and "transformer/config.json" in check.text


def test_check_with_a_bogus_interpreter_says_so(bpy_addon, prefs, check, tmp_path):
    bogus = tmp_path / "no-such-python"
    with pytest.raises(RuntimeError, match=f"The Python interpreter {bogus} does not exist"):
        run_check(bpy_addon, prefs, bogus, PIPELINE)
    assert not check.ok and str(bogus) in check.text
    assert bpy_addon.context.window_manager.partcrafter_job.running is False  # nothing left stuck


def test_a_cancelled_check_stops_waiting_at_once():
    """What Esc does to a check whose interpreter hangs: the wait ends, the job is free."""
    from partcrafter_blender.operators.check_local_engine import run_check as run_cancellable

    release = threading.Event()
    started = threading.Event()

    def hanging_check(_python: str, _weights: str | None) -> dict[str, Any]:
        started.set()
        release.wait(60)
        return {"ok": True, "summary": [], "problems": [], "report": None}

    cancel = CancelToken()
    threading.Thread(target=lambda: (started.wait(10), cancel.cancel()), daemon=True).start()
    try:
        with pytest.raises(Cancelled):
            run_cancellable("python", None, cancel, check=hanging_check)
        assert not release.is_set()  # it returned while the check itself was still hanging
    finally:
        release.set()


# --- Preferences ---------------------------------------------------------------------------


def test_preferences_reach_the_engine_options(bpy_addon, prefs, tmp_path, monkeypatch):
    from partcrafter_blender.preferences import engine_options

    for var in ("PARTCRAFTER_DEVICE", "PARTCRAFTER_DTYPE", "PARTCRAFTER_OFFLOAD"):
        monkeypatch.delenv(var, raising=False)
    assert (prefs.device, prefs.dtype, prefs.offload) == ("auto", "auto", "none")  # the defaults
    settings = create_engine("partcrafter").settings(engine_options(prefs))  # left to the engine: the same
    assert (settings["device"], settings["dtype"], settings["offload"]) == ("auto", "auto", "none")
    prefs.device, prefs.dtype, prefs.offload = "cuda", "bfloat16", "model"
    prefs.weights_dir = str(tmp_path)
    prefs.engine_extra_options = "num_tokens=64, dense_depth=5 max_expanded_coords=1000"
    options = engine_options(prefs)
    assert {k: options[k] for k in ("device", "dtype", "offload", "weights_path")} == {
        "device": "cuda", "dtype": "bfloat16", "offload": "model", "weights_path": str(tmp_path)
    }  # fmt: skip
    assert (options["num_tokens"], options["dense_depth"], options["max_expanded_coords"]) == (64, 5, 1000)
    # The engine itself reads them the same way.
    assert create_engine("partcrafter").settings(options)["offload"] == "model"


def test_preferences_take_a_gpu_number_as_the_docs_say(bpy_addon, prefs):
    """docs/gpu-engine.md lists cuda:N as a Device: CUDA GPU plus GPU Number gives it."""
    from partcrafter_blender.preferences import engine_options

    prefs.device = "cuda"
    assert engine_options(prefs)["device"] == "cuda"
    prefs.gpu_index = 1
    assert engine_options(prefs)["device"] == "cuda:1"
    assert create_engine("partcrafter").settings(engine_options(prefs))["device"] == "cuda:1"
    prefs.device = "cpu"  # the number belongs to the GPU choice only
    assert engine_options(prefs)["device"] == "cpu"


@pytest.mark.parametrize(
    "text, message",
    [("num_tokens", "'num_tokens' is not an engine option"), ("device=cpu", "'device' has its own setting")],
)
def test_unreadable_extra_options_stop_generation_with_a_message(bpy_addon, scene, prefs, text, message):
    prefs.engine_extra_options = text
    with pytest.raises(RuntimeError, match=f"Extra Options in the add-on preferences: .*{message}"):
        bpy_addon.ops.partcrafter.generate(filepath=str(ROBOT), engine="partcrafter", num_parts=3)
    assert len(bpy_addon.data.objects) == 0


def test_unknown_extra_options_are_refused_in_the_preferences(bpy_addon, scene, prefs):
    from partcrafter_blender.preferences import extra_options_problem

    prefs.engine, prefs.engine_extra_options = "partcrafter", "num_tokens=64, dense_dept=5"
    problem = extra_options_problem(prefs)  # shown under the field
    assert "Unknown engine option 'dense_dept' (did you mean 'dense_depth'?)" in problem and "num_tokens" in problem
    with pytest.raises(RuntimeError, match="Extra Options in the add-on preferences: Unknown engine option 'dense_dept'"):
        bpy_addon.ops.partcrafter.generate(filepath=str(ROBOT), engine="partcrafter", num_parts=3)
    assert len(bpy_addon.data.objects) == 0
    prefs.engine_extra_options = FAST_TEXT
    assert extra_options_problem(prefs) == ""


def test_labels_come_from_the_engines(bpy_addon, prefs):
    from partcrafter_blender.preferences import _engine_enum_items

    items = {name: label for name, label, _ in _engine_enum_items(None, None)}
    for name in ("relief", "partcrafter"):
        assert items[name] == engine_label(name) == create_engine(name).label


# --- End to end: the real network in a worker process ---------------------------------------


def test_generate_runs_partcrafter_in_a_worker_and_imports_three_parts(bpy_addon, scene, prefs):
    bpy = bpy_addon
    prefs.backend = "LOCAL"
    prefs.python_executable = ENGINE_PYTHON
    prefs.weights_dir = str(PIPELINE)
    prefs.device, prefs.dtype, prefs.offload = "cpu", "float32", "none"
    prefs.engine_extra_options = FAST_TEXT
    result = bpy.ops.partcrafter.generate(filepath=str(ROBOT), engine="partcrafter", num_parts=3, steps=STEPS, seed=0)
    assert result == {"FINISHED"}
    parts = [o for o in bpy.data.collections[ROBOT.stem].objects if o.type == "MESH"]
    assert len(parts) == 3
    assert {o["partcrafter_engine"] for o in parts} == {"partcrafter"}
    assert {bool(o["partcrafter_is_preview"]) for o in parts} == {False}
    assert {o["partcrafter_produced_parts"] for o in parts} == {3}
    assert all(len(o.data.polygons) > 0 for o in parts)
    # The same names as relief's: objects and their part-name property agree, counted from 1.
    named = sorted((o.name, o["partcrafter_part_name"]) for o in parts)
    assert named == [(f"{ROBOT.stem}.part_0{i}", f"part_0{i}") for i in (1, 2, 3)]


@IN_PROCESS
def test_generate_in_blenders_python_uses_the_weights_folder_preference(bpy_addon, scene, prefs, monkeypatch, tmp_path):
    """Engine Python empty: the engine runs inside Blender with the Weights Folder preference,
    which wins over PARTCRAFTER_WEIGHTS."""
    bpy = bpy_addon
    monkeypatch.setenv("PARTCRAFTER_WEIGHTS", str(tmp_path / "elsewhere"))
    prefs.backend, prefs.python_executable, prefs.weights_dir = "LOCAL", "", str(PIPELINE)
    prefs.device, prefs.dtype, prefs.offload = "cpu", "auto", "none"
    prefs.engine_extra_options = FAST_TEXT
    assert bpy.ops.partcrafter.generate(filepath=str(ROBOT), engine="partcrafter", num_parts=2, steps=1) == {"FINISHED"}
    parts = [o for o in bpy.data.collections[ROBOT.stem].objects if o.type == "MESH"]
    assert parts and {o["partcrafter_engine"] for o in parts} == {"partcrafter"}


@IN_PROCESS
def test_cli_runs_partcrafter_in_process_with_the_weights_option(tmp_path):
    """No --engine-python: --weights reaches the in-process engine and beats PARTCRAFTER_WEIGHTS."""
    cmd = [
        sys.executable, "-m", "partcrafter_blender", "generate", str(ROBOT), "--engine", "partcrafter",
        "--weights", str(PIPELINE), "--device", "cpu", "--parts", "2", "--steps", "1",
        *[a for k, v in FAST.items() for a in ("--engine-option", f"{k}={v}")], "--glb", "robot.glb", "--json",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "PARTCRAFTER_WEIGHTS": str(tmp_path / "elsewhere")}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["engine"] == "partcrafter"


def test_cli_runs_partcrafter_in_a_worker(tmp_path):
    cmd = [
        sys.executable, "-m", "partcrafter_blender", "generate", str(ROBOT), "--engine", "partcrafter",
        "--engine-python", ENGINE_PYTHON, "--weights", str(PIPELINE), "--device", "cpu", "--parts", "3",
        "--steps", str(STEPS), *[a for k, v in FAST.items() for a in ("--engine-option", f"{k}={v}")],
        "--glb", "robot.glb", "--json",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["engine"] == "partcrafter" and len(summary["parts"]) == 3
    assert all(p["faces"] > 0 for p in summary["parts"])
    assert (tmp_path / "robot.glb").stat().st_size > 0


def test_cli_refuses_a_malformed_engine_option(tmp_path):
    cmd = [sys.executable, "-m", "partcrafter_blender", "generate", str(ROBOT), "--engine-option", "num_tokens"]
    proc = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "'num_tokens' is not an engine option" in proc.stderr and "Traceback" not in proc.stderr
