"""The real engines through the worker process give the same result as in process."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from partcrafter_blender.inference import part_name  # part_01 for index 0: one naming for every engine
from partcrafter_blender.inference import GenerationRequest, create_engine
from partcrafter_blender.inference.images import load_image
from partcrafter_blender.inference.worker import WorkerEngine

SHARED = (Path(__file__).resolve().parents[2] / ".." / "shared").resolve()
PIPELINE = SHARED / "conformance" / "partcrafter" / "pipeline"


def _assert_same(remote, local):
    assert [p.name for p in remote.parts] == [p.name for p in local.parts]
    assert remote.failed_parts == local.failed_parts
    for a, b in zip(remote.parts, local.parts):
        assert a.faces.shape == b.faces.shape
        np.testing.assert_array_equal(a.faces, b.faces)
        np.testing.assert_allclose(a.vertices, b.vertices, atol=1e-5)


def test_partcrafter_in_worker_equals_in_process():
    pytest.importorskip("torch")
    image = load_image(PIPELINE / "robot_np3.png")
    options = {"weights_path": str(PIPELINE), "device": "cpu", "num_tokens": 64, "dense_depth": 3,
               "hierarchical_depth": 4}
    request = GenerationRequest(image=image.rgba, num_parts=2, steps=2, seed=5)
    events = []
    worker = WorkerEngine(sys.executable, "partcrafter", options=options)
    assert (worker.label, worker.is_preview) == ("PartCrafter (neural, local GPU)", False)
    remote = worker.generate(request, progress=events.append)
    local = create_engine("partcrafter").generate(GenerationRequest(image=image.rgba, num_parts=2, steps=2, seed=5,
                                                                     options=options))
    _assert_same(remote, local)
    assert remote.metadata["num_parts"] == 2 and remote.metadata["device"] == "cpu"
    assert [e.message for e in events if e.stage == "denoise"] == ["Denoising step 1/2", "Denoising step 2/2"]


def test_relief_in_worker_equals_in_process():
    path = sorted((SHARED / "images").glob("np2_*.png"))[0]
    image = load_image(path)
    request = GenerationRequest(image=image.rgba, image_name=image.name, num_parts=2, quality="draft")
    worker = WorkerEngine(sys.executable, "relief")
    assert worker.is_preview and worker.label == create_engine("relief").label
    _assert_same(worker.generate(request), create_engine("relief").generate(request))


def test_partcrafter_regenerates_in_a_worker_and_says_when_the_sidecar_is_gone(tmp_path):
    pytest.importorskip("torch")
    from partcrafter_blender.inference import EngineFailed

    image = load_image(PIPELINE / "robot_np3.png")
    options = {"weights_path": str(PIPELINE), "device": "cpu", "num_tokens": 64, "dense_depth": 3,
               "hierarchical_depth": 4, "state_dir": str(tmp_path)}
    worker = WorkerEngine(sys.executable, "partcrafter", options=options)
    first = worker.generate(GenerationRequest(image=image.rgba, num_parts=2, steps=2, seed=5))
    sidecar = {"regenerate_from": first.metadata["state_file"], "regenerate_sha256": first.metadata["state_sha256"],
               "regenerate_parts": [1]}
    again = worker.generate(GenerationRequest(image=image.rgba, num_parts=2, steps=2, seed=6, options=sidecar))
    assert [p.name for p in again.parts] == [part_name(1)] and again.metadata["regenerated_parts"] == [1]
    Path(first.metadata["state_file"]).unlink()
    with pytest.raises(EngineFailed, match="regeneration data of this result .* is missing"):
        worker.generate(GenerationRequest(image=image.rgba, num_parts=2, steps=2, seed=7, options=sidecar))


def test_variants_run_in_the_worker_as_one_result():
    from partcrafter_blender.inference import run_engine

    path = sorted((SHARED / "images").glob("np2_*.png"))[0]
    image = load_image(path)
    request = GenerationRequest(image=image.rgba, image_name=image.name, num_parts=2, quality="draft", seed=2,
                                variants=3)
    events = []
    remote = run_engine(WorkerEngine(sys.executable, "relief"), request, events.append)
    local = run_engine(create_engine("relief"), request)
    assert remote.variant_seeds == local.variant_seeds == [2, 3, 4]
    assert [p.variant for p in remote.parts] == [p.variant for p in local.parts] == [0, 0, 1, 1, 2, 2]
    _assert_same(remote, local)
    assert any("Variant 3 of 3" in e.message for e in events)  # the child's progress, relayed
