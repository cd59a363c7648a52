"""check_local_engine: the "Check local engine" button, run against real interpreters."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from partcrafter_blender.inference.worker import check_local_engine

PIPELINE = Path(__file__).resolve().parents[2] / ".." / "shared" / "conformance" / "partcrafter" / "pipeline"


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "python-wrapper"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_check_reports_interpreter_torch_and_weights():
    result = check_local_engine(sys.executable, str(PIPELINE))
    report = result["report"]
    assert result["ok"], result["problems"]
    assert report["python_executable"] and report["python_version"].startswith("3.")
    import torch

    assert report["torch"] == torch.__version__
    assert report["cuda_available"] == torch.cuda.is_available()
    assert report["weights"]["ok"] and report["weights"]["components"]["transformer"]["tensors"] == 139
    text = "\n".join(result["summary"])
    assert f"torch {torch.__version__}" in text and "verifies" in text


def test_check_reports_a_bad_weights_folder(tmp_path):
    result = check_local_engine(sys.executable, str(tmp_path))
    assert not result["ok"]
    assert any("model_index.json is missing" in p for p in result["problems"])


def test_check_reports_no_weights_folder():
    result = check_local_engine(sys.executable, None)
    assert not result["ok"] and "No weights folder is configured." in " ".join(result["problems"])


def test_check_names_a_missing_interpreter(tmp_path):
    result = check_local_engine(str(tmp_path / "nope" / "python"), str(PIPELINE))
    assert not result["ok"] and "does not exist" in result["summary"][0]


@pytest.mark.skipif(os.name != "posix", reason="shell wrapper")
def test_check_names_a_missing_package(tmp_path):
    # -S drops site-packages: an interpreter without numpy, like a bare system Python
    python = _script(tmp_path, f'exec "{sys.executable}" -S "$@"')
    result = check_local_engine(python, str(PIPELINE))
    assert not result["ok"]
    assert "lacks the package 'numpy'" in result["problems"][0] and "pip install" in result["problems"][0]


@pytest.mark.skipif(os.name != "posix", reason="shell wrapper")
def test_check_reports_an_interpreter_that_dies(tmp_path):
    python = _script(tmp_path, 'echo "broken interpreter" >&2; exit 7')
    result = check_local_engine(python, str(PIPELINE))
    assert not result["ok"]
    assert "exited with code 7" in result["problems"][0] and "broken interpreter" in result["problems"][0]


def test_a_weights_problem_is_listed_once(tmp_path):
    result = check_local_engine(sys.executable, str(tmp_path))
    lines = [line for line in result["summary"] if "does not verify" in line]
    assert len(lines) == 1 and result["problems"] == lines


@pytest.mark.parametrize("sub", ["transformer", "vae"])
def test_a_subfolder_of_the_weights_points_to_its_parent(sub):
    result = check_local_engine(sys.executable, str(PIPELINE / sub))
    assert not result["ok"]
    (problem,) = result["problems"]
    assert f"subfolder '{sub}' of a weights folder" in problem
    assert f"choose the folder above it: {PIPELINE.resolve()}" in problem
    assert sum(problem == line for line in result["summary"]) == 1
