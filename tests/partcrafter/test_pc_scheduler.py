"""The rectified-flow scheduler against conformance scheduler/: bit-exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

from partcrafter_blender.inference.partcrafter.scheduler import RectifiedFlowScheduler  # noqa: E402


@pytest.fixture(scope="module")
def ref(conformance: Path) -> dict[str, torch.Tensor]:
    return load_file(str(conformance / "scheduler" / "case_scheduler.safetensors"))


@pytest.fixture
def scheduler(conformance: Path) -> RectifiedFlowScheduler:
    config = json.loads((conformance / "configs" / "scheduler" / "scheduler_config.json").read_text())
    return RectifiedFlowScheduler.from_config(config)


def test_schedule_is_exact(conformance: Path, ref, scheduler: RectifiedFlowScheduler, scheduler_schedule: str) -> None:
    spec = json.loads((conformance / "scheduler" / "cases.json").read_text())["schedules"][scheduler_schedule]
    scheduler.set_timesteps(len(spec["timesteps"]))
    assert torch.equal(scheduler.timesteps, ref[f"{scheduler_schedule}.timesteps"])
    assert torch.equal(scheduler.sigmas, ref[f"{scheduler_schedule}.sigmas"])
    assert [float.fromhex(h) for h in spec["timesteps_hex_float32"]] == scheduler.timesteps.tolist()


def _run_case(name: str, ref, scheduler: RectifiedFlowScheduler) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(got, expected) pairs for one case of scheduler/cases.json."""
    scheduler.set_timesteps(4)
    if name in ("step_first", "step_lookup_t2"):
        got = scheduler.step(ref[f"{name}.model_output"], ref[f"{name}.timestep"], ref[f"{name}.sample"])
        return [(got, ref[f"{name}.prev_sample"])]
    if name == "chain4":
        x, pairs = ref["chain4.x_init"], []
        for i, t in enumerate(scheduler.timesteps):
            x = scheduler.step(ref[f"chain4.model_output_{i}"], t, x)
            pairs.append((x, ref[f"chain4.x_after_step_{i}"]))
        return pairs
    raise AssertionError(f"new scheduler case {name!r}: teach this test how to run it")


def test_step_is_exact(ref, scheduler: RectifiedFlowScheduler, scheduler_case: str) -> None:
    for got, expected in _run_case(scheduler_case, ref, scheduler):
        assert got.dtype == expected.dtype
        assert torch.equal(got, expected)


def test_first_step_index_comes_from_the_timestep_value(ref, scheduler: RectifiedFlowScheduler) -> None:
    scheduler.set_timesteps(4)
    sample, velocity = ref["step_lookup_t2.sample"], ref["step_lookup_t2.model_output"]
    got = scheduler.step(velocity, scheduler.timesteps[2], sample)
    assert torch.equal(got, sample + (scheduler.sigmas[2] - scheduler.sigmas[3]) * velocity)
    # the next call continues from index 3, whatever value it is given
    nxt = scheduler.step(velocity, scheduler.timesteps[0], got)
    assert torch.equal(nxt, got + (scheduler.sigmas[3] - scheduler.sigmas[4]) * velocity)


def test_misuse_is_reported(scheduler: RectifiedFlowScheduler) -> None:
    x = torch.zeros(1, 2, 3)
    with pytest.raises(RuntimeError, match="set_timesteps"):
        scheduler.step(x, 1000.0, x)
    scheduler.set_timesteps(2)
    with pytest.raises(ValueError, match="not in the schedule"):
        scheduler.step(x, 123.0, x)
    scheduler.set_timesteps(1)
    scheduler.step(x, 1000.0, x)
    with pytest.raises(RuntimeError, match="more often"):
        scheduler.step(x, 1000.0, x)
    with pytest.raises(ValueError, match="at least 1"):
        scheduler.set_timesteps(0)


def test_config_checks() -> None:
    with pytest.raises(ValueError, match="shift"):
        RectifiedFlowScheduler.from_config({"shift": 3.0})
    with pytest.raises(ValueError, match="Unknown keys"):
        RectifiedFlowScheduler.from_config({"beta_start": 0.1})
