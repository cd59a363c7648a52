"""The job mix-in's modal branch (timer, Esc, the panel's Cancel, the one-job slot),
driven through its step function with real bpy: the JobState it writes is the window
manager's real property group, the runner a real worker thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from partcrafter_blender import job_runner
from partcrafter_blender.inference import Cancelled, ProgressEvent
from partcrafter_blender.job_runner import JobRunner


@pytest.fixture
def state(bpy_addon: Any) -> Iterator[Any]:
    from partcrafter_blender.operators._job_mixin import reset_state

    job = bpy_addon.context.window_manager.partcrafter_job
    reset_state()
    job.running = True
    yield job
    reset_state()


class Gate:
    """Work that reports progress on request and ends when told (or when cancelled)."""

    def __init__(self) -> None:
        self.report = threading.Event()
        self.finish = threading.Event()
        self.reported = threading.Event()

    def __call__(self, progress: Any, cancel: Any) -> str:
        while not self.finish.wait(0.005):
            cancel.raise_if_cancelled()
            if self.report.is_set():
                self.report.clear()
                progress(ProgressEvent("denoise", 0.4, "Denoising"))
                progress(ProgressEvent("decode", 0.6, "Decoding"))
                self.reported.set()
        return "made"


@pytest.fixture
def running() -> Iterator[tuple[JobRunner, Gate]]:
    gate = Gate()
    runner = JobRunner(gate)
    assert job_runner.claim(runner)
    runner.start()
    yield runner, gate
    runner.cancel()
    runner.wait(10)
    job_runner.release(runner)


def test_timer_shows_the_latest_progress_and_keeps_running(state, running) -> None:
    from partcrafter_blender.operators._job_mixin import Event, modal_step

    runner, gate = running
    assert modal_step(runner, Event.TIMER, state).result == {"PASS_THROUGH"}
    gate.report.set()
    assert gate.reported.wait(10)
    step = modal_step(runner, Event.TIMER, state)
    assert step.result == {"PASS_THROUGH"} and step.redraw
    assert (state.stage, round(state.fraction, 3), state.message) == ("decode", 0.6, "Decoding")
    assert not modal_step(runner, Event.TIMER, state).redraw, "nothing new: no redraw"
    gate.finish.set()
    assert runner.wait(10)
    assert modal_step(runner, Event.TIMER, state).result is None, "a finished worker ends the job"
    assert runner.result == "made" and runner.error is None


def test_other_events_pass_through_untouched(state, running) -> None:
    from partcrafter_blender.operators._job_mixin import Event, modal_step

    runner, gate = running
    gate.report.set()
    assert gate.reported.wait(10)
    assert modal_step(runner, Event.OTHER, state).result == {"PASS_THROUGH"}
    assert state.stage == "" and not runner.cancelled, "only the timer drains progress"


def test_esc_cancels_the_worker_and_the_next_timer_ends_the_job(state, running) -> None:
    from partcrafter_blender.operators._job_mixin import Event, modal_step

    runner, gate = running
    step = modal_step(runner, Event.ESC, state)
    assert step.result == {"RUNNING_MODAL"} and step.redraw, "Esc is ours while a job runs"
    assert runner.cancelled and state.cancelling and state.message == "Cancelling…"
    assert runner.wait(10)
    gate.report.set()
    assert modal_step(runner, Event.TIMER, state).result is None
    assert isinstance(runner.error, Cancelled)
    assert state.message == "Cancelling…", "late progress does not hide that it is cancelling"


def test_panel_cancel_is_picked_up_by_the_next_timer(state, running) -> None:
    from partcrafter_blender.operators._job_mixin import Event, modal_step

    runner, _gate = running
    assert job_runner.cancel_active(), "the Cancel button reaches the active job"
    assert not state.cancelling
    step = modal_step(runner, Event.TIMER, state)
    assert state.cancelling and state.message == "Cancelling…" and step.redraw
    assert runner.wait(10)
    assert modal_step(runner, Event.TIMER, state).result is None


def test_esc_after_the_worker_finished_is_not_a_cancel(state, running) -> None:
    from partcrafter_blender.operators._job_mixin import Event, modal_step

    runner, gate = running
    gate.finish.set()
    assert runner.wait(10)
    assert modal_step(runner, Event.ESC, state).result == {"PASS_THROUGH"}
    assert not runner.cancelled and not state.cancelling
    assert modal_step(runner, Event.TIMER, state).result is None


def test_one_job_at_a_time_and_a_lost_runner_cancels(state, running) -> None:
    from partcrafter_blender.operators._job_mixin import Event, modal_step

    runner, _gate = running
    assert not job_runner.claim(JobRunner(lambda progress, cancel: None))
    assert job_runner.busy_reason() == job_runner.BUSY_MESSAGE
    assert modal_step(None, Event.TIMER, state).result == {"CANCELLED"}, "state lost: stop watching"
    assert not runner.cancelled, "a lost handler does not touch the job itself"


def test_blender_events_map_to_event_kinds(bpy_addon) -> None:
    from types import SimpleNamespace

    from partcrafter_blender.operators._job_mixin import Event, event_kind

    events = (("TIMER", "NOTHING"), ("ESC", "PRESS"), ("ESC", "RELEASE"), ("MOUSEMOVE", "NOTHING"))
    kinds = [event_kind(SimpleNamespace(type=t, value=v)) for t, v in events]
    assert kinds == [Event.TIMER, Event.ESC, Event.OTHER, Event.OTHER]
