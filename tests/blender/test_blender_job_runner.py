"""The worker-thread runner behind the modal operator (the part that needs no window)."""

from __future__ import annotations

import threading

from partcrafter_blender import job_runner
from partcrafter_blender.inference import Cancelled, ProgressEvent
from partcrafter_blender.job_runner import JobRunner


def test_progress_crosses_over_and_result_arrives():
    release = threading.Event()

    def work(progress, cancel):
        progress(ProgressEvent("denoise", 0.25, "a quarter"))
        progress(ProgressEvent("decode", 0.75, "three quarters"))
        assert release.wait(10)
        return "done"

    runner = JobRunner(work)
    runner.start()
    assert not runner.done
    release.set()
    assert runner.wait(10)
    assert [(e.stage, e.fraction) for e in runner.drain()] == [("denoise", 0.25), ("decode", 0.75)]
    assert runner.drain() == []
    assert (runner.result, runner.error) == ("done", None)


def test_worker_exception_is_handed_over_not_raised():
    def work(progress, cancel):
        raise ValueError("boom")

    runner = JobRunner(work)
    runner.start()
    assert runner.wait(10)
    assert isinstance(runner.error, ValueError) and runner.result is None


def test_cancel_reaches_the_worker():
    started = threading.Event()

    def work(progress, cancel):
        started.set()
        while True:
            cancel.raise_if_cancelled()
            threading.Event().wait(0.005)

    runner = JobRunner(work)
    assert job_runner.claim(runner)
    try:
        assert not job_runner.claim(JobRunner(work)), "only one job at a time"
        runner.start()
        assert started.wait(10)
        assert job_runner.cancel_active()
        assert runner.wait(10)
        assert isinstance(runner.error, Cancelled)
    finally:
        job_runner.release(runner)
    assert job_runner.active() is None
    assert not job_runner.cancel_active()


def test_blocking_run_uses_the_calling_thread():
    seen = []
    runner = JobRunner(lambda progress, cancel: seen.append(threading.current_thread()))
    runner.run_blocking()
    assert runner.done and seen == [threading.current_thread()]


def test_events_keep_their_order():
    def work(progress, cancel):
        for i in range(500):
            progress(ProgressEvent("mesh", i / 500, str(i)))

    runner = JobRunner(work)
    runner.start()
    assert runner.wait(10)
    assert [e.message for e in runner.drain()] == [str(i) for i in range(500)]


def _stubborn_work(started: threading.Event, finish: threading.Event):
    """A worker that notices the cancel only when `finish` is set (a slow shutdown)."""

    def work(progress, cancel):
        started.set()
        assert finish.wait(10)
        cancel.raise_if_cancelled()

    return work


def test_an_aborted_job_keeps_the_slot_until_its_worker_stops():
    started, finish = threading.Event(), threading.Event()
    runner = JobRunner(_stubborn_work(started, finish))
    assert job_runner.claim(runner)
    runner.start()
    try:
        assert started.wait(10)
        job_runner.abandon(runner)  # Blender aborted the operator; the worker is still running
        assert runner.cancelled and job_runner.active() is None
        assert not job_runner.claim(JobRunner(lambda p, c: None)), "a new job would overlap the stopping one"
        assert "still stopping" in (job_runner.busy_reason() or "")
    finally:
        finish.set()
    assert runner.wait(10) and isinstance(runner.error, Cancelled)
    assert job_runner.busy_reason() is None
    follower = JobRunner(lambda p, c: None)
    assert job_runner.claim(follower)
    job_runner.release(follower)


def test_an_aborted_job_that_never_stops_frees_the_slot_after_the_grace(monkeypatch):
    started, finish = threading.Event(), threading.Event()
    runner = JobRunner(_stubborn_work(started, finish))
    assert job_runner.claim(runner)
    runner.start()
    try:
        assert started.wait(10)
        monkeypatch.setattr(job_runner, "STOP_GRACE", 0.0)
        job_runner.abandon(runner)
        assert not runner.done
        follower = JobRunner(lambda p, c: None)
        assert job_runner.claim(follower), "a hung worker must not disable every job for good"
        job_runner.release(follower)
    finally:
        finish.set()
        assert runner.wait(10)


def test_abandoning_a_finished_job_frees_the_slot_at_once():
    runner = JobRunner(lambda p, c: "done")
    assert job_runner.claim(runner)
    runner.run_blocking()
    job_runner.abandon(runner)
    assert job_runner.busy_reason() is None
    follower = JobRunner(lambda p, c: None)
    assert job_runner.claim(follower)
    job_runner.release(follower)
