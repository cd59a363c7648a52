from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from partcrafter_blender.inference import GenerationRequest
from partcrafter_blender.inference.worker import WorkerEngine

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SHARED = (REPO / ".." / "shared").resolve()
PIPELINE = SHARED / "conformance" / "partcrafter" / "pipeline"
FIXTURE_ENV = {"PYTHONPATH": str(HERE), "PARTCRAFTER_WORKER_ENGINES": "fixture=worker_fixture_engines:FixtureEngine"}


@pytest.fixture(scope="session")
def fixture_engines():
    """The same module the child imports, loaded in this process for comparisons."""
    spec = importlib.util.spec_from_file_location("worker_fixture_engines", HERE / "worker_fixture_engines.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def worker():
    def make(extra_env: dict[str, str] | None = None, **kwargs) -> WorkerEngine:
        return WorkerEngine(sys.executable, "fixture", extra_env={**FIXTURE_ENV, **(extra_env or {})}, **kwargs)

    return make


@pytest.fixture
def request_for():
    def make(mode: str = "ok", **kwargs) -> GenerationRequest:
        rng = np.random.default_rng(7)
        image = rng.integers(0, 256, size=(24, 32, 4), dtype=np.uint8)
        return GenerationRequest(image=image, options={"mode": mode}, **kwargs)

    return make
