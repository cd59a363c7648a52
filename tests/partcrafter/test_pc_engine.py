"""The "partcrafter" engine on the tiny conformance weights: contract, config, failures."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from partcrafter_blender.inference import (
    CancelToken,
    Cancelled,
    EngineFailed,
    EngineUnavailable,
    GenerationRequest,
    InputImageError,
    create_engine,
)
from partcrafter_blender.inference.images import load_image
from partcrafter_blender.inference.partcrafter import engine as engine_module
from partcrafter_blender.inference.partcrafter.engine import AUTO_NUM_PARTS, PartCrafterEngine

# Cheap settings for the tiny model: few tokens, a coarse grid.
FAST = {"device": "cpu", "num_tokens": 64, "dense_depth": 3, "hierarchical_depth": 4}


@pytest.fixture(scope="module")
def robot(conformance):
    return load_image(conformance / "pipeline" / "robot_np3.png")


@pytest.fixture
def weights(conformance, monkeypatch):
    monkeypatch.setenv("PARTCRAFTER_WEIGHTS", str(conformance / "pipeline"))
    return conformance / "pipeline"


def _request(robot, **kwargs) -> GenerationRequest:
    kwargs.setdefault("options", dict(FAST))
    return GenerationRequest(image=robot.rgba, image_name="robot", image_sha256=robot.sha256, **kwargs)


def test_importing_the_engine_does_not_import_torch():
    code = ("import sys; import partcrafter_blender.inference.partcrafter.engine as e; "
            "e.PartCrafterEngine().availability(); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_registry_builds_the_engine():
    engine = create_engine("partcrafter")
    assert isinstance(engine, PartCrafterEngine)
    assert (engine.name, engine.label, engine.is_preview) == ("partcrafter", "PartCrafter (neural, local GPU)", False)


def test_availability_explains_why_not(monkeypatch, tmp_path, conformance):
    monkeypatch.delenv("PARTCRAFTER_WEIGHTS", raising=False)
    reason = PartCrafterEngine().availability().reason
    assert "No PartCrafter weights folder is configured" in reason and "PARTCRAFTER_WEIGHTS" in reason
    bad = PartCrafterEngine({"weights_path": str(tmp_path)}).availability()
    assert not bad.ok and "model_index.json is missing" in bad.reason
    monkeypatch.setenv("PARTCRAFTER_WEIGHTS", str(conformance / "pipeline"))
    assert PartCrafterEngine().availability().ok
    monkeypatch.setitem(engine_module.REQUIRED_MODULES, "torch_not_installed_here", "torch_not_installed_here")
    reason = PartCrafterEngine().availability().reason
    assert "needs torch_not_installed_here" in reason and "pip install" in reason


def test_generate_refuses_when_unavailable(monkeypatch, robot):
    monkeypatch.delenv("PARTCRAFTER_WEIGHTS", raising=False)
    with pytest.raises(EngineUnavailable, match="No PartCrafter weights folder"):
        PartCrafterEngine().generate(_request(robot))


def test_auto_parts_and_contract_output(weights, robot):
    events = []
    result = PartCrafterEngine().generate(_request(robot, steps=2, seed=3), progress=events.append)
    assert result.engine == "partcrafter" and result.requested_parts is None
    assert result.metadata["num_parts"] == AUTO_NUM_PARTS and result.metadata["auto_parts"] is True
    assert "Auto used 4" in result.metadata["auto_parts_note"]
    assert len(result.parts) + len(result.failed_parts) == AUTO_NUM_PARTS
    for part in result.parts:
        assert part.name.startswith("part_") and part.color is not None
        assert part.vertices.dtype == np.float32 and part.faces.dtype == np.int32
        assert np.abs(part.vertices).max() <= 1.0  # the contract's [-1, 1]^3
        assert part.faces.max() < len(part.vertices)
    assert result.metadata["device"] == "cpu" and result.metadata["dtype"] == "float32"
    assert set(result.metadata["stage_seconds"]) >= {"denoise", "decode", "total"}
    stages = [e.stage for e in events]
    assert stages[0] == "load" and stages.count("denoise") == 2 and "decode" in stages


def test_failed_parts_are_reported_not_replaced(weights, robot):
    # The README call; with a 200k refinement limit parts 1 and 2 fail (see the pipeline test).
    options = {"device": "cpu", "num_tokens": 64, "dense_depth": 5, "hierarchical_depth": 6,
               "max_expanded_coords": 200_000}
    result = PartCrafterEngine().generate(_request(robot, num_parts=3, steps=4, seed=0, options=options))
    assert [p.name for p in result.parts] == ["part_00"]
    assert [f.index for f in result.failed_parts] == [1, 2]
    assert "more than the limit" in result.failed_parts[0].reason


def test_all_parts_failing_is_an_engine_failure(weights, robot):
    options = dict(FAST, max_expanded_coords=1)
    with pytest.raises(EngineFailed, match="produced no part with a surface .*part 0: refining"):
        PartCrafterEngine().generate(_request(robot, num_parts=2, steps=1, options=options))


def test_too_many_parts_for_the_tiny_model(weights, robot):
    with pytest.raises(InputImageError, match="1 to 4 parts"):
        PartCrafterEngine().generate(_request(robot, num_parts=5, steps=1))


def test_cancel_before_start(weights, robot):
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        PartCrafterEngine().generate(_request(robot, steps=1), cancel=cancel)


def test_bad_device_and_dtype_are_clear(weights, robot):
    with pytest.raises(EngineUnavailable, match="float32 only"):
        PartCrafterEngine().generate(_request(robot, steps=1, options=dict(FAST, dtype="float16")))
    with pytest.raises(EngineUnavailable, match="'num_tokens' must be a positive whole number, not 'many'"):
        PartCrafterEngine().generate(_request(robot, steps=1, options=dict(FAST, num_tokens="many")))
    with pytest.raises(EngineUnavailable, match="Unknown offload mode 'gpu'"):
        PartCrafterEngine().generate(_request(robot, steps=1, options=dict(FAST, offload="gpu")))


@pytest.mark.parametrize("value, expected", [(True, True), ("yes", True), (1, True), ("off", False), (0, False)])
def test_fast_decode_option_reaches_the_geometry(weights, robot, monkeypatch, value, expected):
    from partcrafter_blender.inference.partcrafter import pipeline as pipeline_module

    seen = []
    real = pipeline_module.extract_part_meshes

    def spy(vae, latents, **kwargs):
        seen.append(kwargs["settings"])
        return real(vae, latents, **kwargs)

    monkeypatch.setattr(pipeline_module, "extract_part_meshes", spy)
    options = dict(FAST, dense_depth=4, hierarchical_depth=5, fast_decode=value)
    result = PartCrafterEngine().generate(_request(robot, num_parts=2, steps=1, options=options))
    assert result.metadata["fast_decode"] is expected and result.parts
    (settings,) = seen
    assert (settings.coarse_levels, settings.topk_first_chunk) == ((2, False) if expected else (0, True))


def test_fast_decode_rejects_unclear_values(weights, robot):
    for value in ("maybe", 2, 1.0):
        with pytest.raises(EngineUnavailable, match="'fast_decode' must be true or false"):
            PartCrafterEngine().generate(_request(robot, steps=1, options=dict(FAST, fast_decode=value)))


@pytest.mark.parametrize("scope", ["part", "model"])
def test_the_triangle_budget_reduces_every_part_in_the_engine(weights, robot, scope):
    from partcrafter_blender.inference.decimate import is_closed_and_oriented

    options = dict(FAST, dense_depth=5, hierarchical_depth=6)
    full = PartCrafterEngine().generate(_request(robot, num_parts=2, steps=1, max_triangles=10_000_000,
                                                 options=options))
    budget = 1000
    result = PartCrafterEngine().generate(_request(robot, num_parts=2, steps=1, max_triangles=budget,
                                                   budget_scope=scope, options=options))
    counts = [len(p.faces) for p in result.parts]
    assert all(len(p.faces) > 1.2 * budget for p in full.parts)  # the budget has work to do
    assert (max(counts) if scope == "part" else sum(counts)) <= 1.05 * budget
    for before, after in zip(full.parts, result.parts, strict=True):
        assert is_closed_and_oriented(after.faces) == is_closed_and_oriented(before.faces)
    record = result.metadata["decimation"]
    assert record["max_triangles"] == budget and record["budget_scope"] == scope
    assert record["input_triangles"] == sum(len(p.faces) for p in full.parts)
    assert record["parts_kept_unreduced"] == 0 and record["min_triangle_quality"] > 0
