"""The engine contract: registry, labels, progress, cancellation, determinism, budgets."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from relief_support import check_meshes, run

from partcrafter_blender.inference import create_engine
from partcrafter_blender.inference.contract import CancelToken, GenerationRequest
from partcrafter_blender.inference.errors import Cancelled
from partcrafter_blender.inference.relief.engine import ReliefEngine


def test_relief_registered_and_honestly_labelled():
    engine = create_engine("relief")
    assert isinstance(engine, ReliefEngine)
    assert engine.name == "relief"
    assert engine.is_preview is True
    assert "not PartCrafter" in engine.label and "preview" in engine.label
    assert engine.availability().ok


def test_relief_progress_stages_in_order(figure):
    events = []
    result = ReliefEngine().generate(GenerationRequest(image=figure.rgba, num_parts=6), progress=events.append)
    stages = [e.stage for e in events]
    assert stages[0] == "matting" and "segmentation" in stages and stages[-1] == "meshing"
    assert stages.index("matting") < stages.index("segmentation") < stages.index("meshing")
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and all(0 <= f <= 1 for f in fractions)
    assert all(e.message for e in events)
    assert "preview" in result.metadata["preview"]


@pytest.mark.parametrize("stage", ["matting", "segmentation", "meshing"])
def test_relief_cancel_during_each_stage(figure, stage):
    token = CancelToken()
    seen = []

    def progress(event):
        seen.append(event.stage)
        if event.stage == stage:
            token.cancel()

    with pytest.raises(Cancelled):
        ReliefEngine().generate(GenerationRequest(image=figure.rgba, num_parts=6), progress, token)
    assert seen.count(stage) == 1  # stopped right after the cancel, no further events


def test_relief_cancel_from_another_thread():
    img = np.full((1024, 1024, 4), 255, np.uint8)
    rng = np.random.default_rng(1)
    for _ in range(40):
        x, y = rng.integers(100, 800, 2)
        img[y : y + 120, x : x + 120, :3] = rng.integers(0, 200, 3)
    token = CancelToken()
    started = threading.Event()
    outcome = {}

    def work():
        try:
            ReliefEngine().generate(
                GenerationRequest(image=img, num_parts=16, quality="high"), lambda e: started.set(), token
            )
            outcome["result"] = "finished"
        except Cancelled:
            outcome["result"] = "cancelled"

    thread = threading.Thread(target=work)
    thread.start()
    started.wait(30)
    token.cancel()
    thread.join(60)
    assert not thread.is_alive()
    assert outcome["result"] == "cancelled"


def test_relief_deterministic(figure):
    a = run(figure.rgba, 4, seed=7)
    b = run(figure.rgba, 4, seed=7)
    for pa, pb in zip(a.parts, b.parts):
        assert np.array_equal(pa.vertices, pb.vertices) and np.array_equal(pa.faces, pb.faces)
        assert pa.color == pb.color
    assert a.seed == 7


def test_relief_quality_and_triangle_budget(figure):
    draft = run(figure.rgba, 6, quality="draft")
    high = run(figure.rgba, 6, quality="high")
    standard = run(figure.rgba, 6)
    tris = [r.metadata["triangles"] for r in (draft, standard, high)]
    assert tris == sorted(tris) and tris[0] < tris[2]
    assert 10_000 <= standard.metadata["triangles"] <= 60_000
    budgeted = run(figure.rgba, 6, max_triangles=2000)
    check_meshes(budgeted, 6)
    assert max(len(p.faces) for p in budgeted.parts) <= 2000
    whole = run(figure.rgba, 6, max_triangles=6000, budget_scope="model")
    check_meshes(whole, 6)
    assert whole.metadata["triangles"] <= 6000
