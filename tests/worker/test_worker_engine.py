"""WorkerEngine with real child processes: results, progress, cancel, crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from partcrafter_blender.inference import CancelToken, Cancelled, EngineFailed, EngineUnavailable
from partcrafter_blender.inference.worker import WorkerEngine


def test_result_equals_in_process_result(worker, request_for, fixture_engines):
    request = request_for(num_parts=3, seed=11)
    events = []
    remote = worker(options={"extra": "x"}).generate(request, progress=events.append)
    local = fixture_engines.FixtureEngine().generate(request)
    assert [p.name for p in remote.parts] == [p.name for p in local.parts]
    for a, b in zip(remote.parts, local.parts):
        np.testing.assert_array_equal(a.vertices, b.vertices)
        np.testing.assert_array_equal(a.faces, b.faces)
        assert a.vertices.dtype == np.float32 and a.faces.dtype == np.int32
        assert a.color == pytest.approx(b.color)
    assert remote.failed_parts == local.failed_parts
    assert (remote.seed, remote.steps, remote.guidance, remote.requested_parts) == (11, 50, 7.0, 3)
    assert remote.metadata["mean"] == pytest.approx(float(request.image.mean()))
    # the engine's options reach the child merged with the request's own
    assert remote.metadata["options"] == {"extra": "x", "mode": "ok"}
    assert events and events[0].stage == "start"
    # the private job folder is gone afterwards
    assert not Path(remote.metadata["workdir"]).exists()


def test_progress_arrives_and_cancel_stops_the_child(worker, request_for):
    cancel = CancelToken()
    events = []

    def on_progress(event):
        events.append(event)
        if len(events) == 5:
            cancel.cancel()

    with pytest.raises(Cancelled):
        worker().generate(request_for("slow"), progress=on_progress, cancel=cancel)
    assert [e.stage for e in events[:2]] == ["start", "denoise"]
    assert len(events) < 100  # stopped long before the 400 steps


def test_child_ignoring_cancel_is_terminated(worker, request_for):
    cancel = CancelToken()
    threading.Timer(1.0, cancel.cancel).start()
    with pytest.raises(Cancelled):
        worker(cancel_grace_s=0.5).generate(request_for("stubborn"), cancel=cancel)


def test_already_cancelled_request_never_starts(worker, request_for):
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        worker().generate(request_for("ok"), cancel=cancel)


@pytest.mark.parametrize(
    ("mode", "words"),
    [("exit", "exited with code 3"), ("sigkill", "SIGKILL"), ("segfault", "SIGSEGV")],
)
def test_crashed_child_is_reported(worker, request_for, mode, words):
    if sys.platform == "win32" and mode != "exit":
        pytest.skip("POSIX signals")
    with pytest.raises(EngineFailed) as err:
        worker().generate(request_for(mode))
    assert "local engine process" in str(err.value)
    assert words in str(err.value)


def test_segfault_log_tail_is_in_the_message(worker, request_for):
    if sys.platform == "win32":
        pytest.skip("POSIX signals")
    with pytest.raises(EngineFailed) as err:
        worker().generate(request_for("segfault"))
    assert "Fatal Python error" in str(err.value)


@pytest.mark.parametrize(
    ("mode", "error", "words"),
    [
        ("fail", EngineFailed, "No surface was found"),
        ("unavailable", EngineUnavailable, "not configured"),
        ("bug", EngineFailed, "ZeroDivisionError"),
    ],
)
def test_engine_errors_cross_the_boundary(worker, request_for, mode, error, words):
    with pytest.raises(error) as err:
        worker().generate(request_for(mode))
    assert type(err.value) is error
    assert words in str(err.value)


def test_stdout_chatter_does_not_break_the_protocol(worker, request_for):
    result = worker().generate(request_for("noisy"))
    assert len(result.parts) == 2


def test_unknown_engine_in_child(request_for):
    engine = WorkerEngine(sys.executable, "no-such-engine")
    with pytest.raises(EngineUnavailable) as err:
        engine.generate(request_for())
    assert "Unknown engine 'no-such-engine'" in str(err.value)


def test_missing_interpreter_is_unavailable(tmp_path, request_for):
    engine = WorkerEngine(str(tmp_path / "python-missing"), "partcrafter")
    availability = engine.availability()
    assert not availability.ok and "does not exist" in availability.reason
    with pytest.raises(EngineUnavailable):
        engine.generate(request_for())
    assert engine.label == "PartCrafter (neural, local GPU)" and engine.is_preview is False


def test_the_image_never_touches_the_disk(worker, request_for):
    """The pixels travel over the pipe: the job folder holds only the child's log."""
    request = request_for(num_parts=2)
    result = worker().generate(request)
    assert result.metadata["files"] == ["stderr.log"]
    assert result.metadata["mean"] == pytest.approx(float(request.image.mean()))


def _job_folder(root: Path, name: str, age_s: float = 0.0, log: bool = True) -> Path:
    folder = root / f"partcrafter-worker-{name}"
    folder.mkdir()
    (folder / "image.npy").write_bytes(b"someone's pixels")
    if log:
        (folder / "stderr.log").write_bytes(b"")
    if age_s:
        stamp = time.time() - age_s
        os.utime(folder, (stamp, stamp))
    return folder


@pytest.mark.skipif(os.name != "posix", reason="liveness is a POSIX file lock here")
def test_stale_job_folders_are_removed_at_the_next_start(worker, request_for, tmp_path, monkeypatch):
    import fcntl

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stale = _job_folder(tmp_path, "killed")  # its parent was SIGKILLed: nobody holds the log
    stale_setup = _job_folder(tmp_path, "killed-early", age_s=3600, log=False)
    live = _job_folder(tmp_path, "running")  # another Blender's job, still running
    starting = _job_folder(tmp_path, "starting", log=False)  # another parent, between mkdtemp and its log
    other = tmp_path / "unrelated"
    other.mkdir()
    with (live / "stderr.log").open("ab") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = worker().generate(request_for(num_parts=1))
        assert live.exists() and starting.exists() and other.exists()
    assert not stale.exists() and not stale_setup.exists()
    assert not Path(result.metadata["workdir"]).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["partcrafter-worker-running", "partcrafter-worker-starting", "unrelated"]


@pytest.mark.skipif(os.name != "posix", reason="SIGTERM is POSIX")
def test_cli_stopped_by_sigterm_cancels_and_leaves_no_job_folder(tmp_path, fixture_engines):
    """`timeout` sends SIGTERM: handled like Ctrl+C, so the worker's folder goes too."""
    here = Path(__file__).resolve().parent
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "PARTCRAFTER_WORKER_ENGINES": "fixture=worker_fixture_engines:FixtureEngine",
           "TMPDIR": str(tmp), "PYTHONPATH": os.pathsep.join([str(here.parents[1]), str(here)])}
    image = tmp_path / "in.png"
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(image)
    cmd = [sys.executable, "-m", "partcrafter_blender", "generate", str(image), "--engine", "fixture",
           "--engine-python", sys.executable, "--engine-option", "mode=slow", "--out", str(tmp_path / "o.blend")]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(200):
            if list(tmp.glob("partcrafter-worker-*/stderr.log")) and any(
                "SLOW-FIXTURE-STARTED" in p.read_text() for p in tmp.glob("partcrafter-worker-*/stderr.log")
            ):
                break
            time.sleep(0.1)
        assert list(tmp.glob("partcrafter-worker-*")), "the worker never started"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Cancelled" in err and "Traceback" not in err
    assert list(tmp.iterdir()) == []
    assert not (tmp_path / "o.blend").exists()


def _interpreter_with_only(tmp_path: Path, packages: list[str]) -> str:
    """This Python without site-packages (-S), plus only the named top-level packages."""
    import importlib.util

    keep = tmp_path / "site"
    keep.mkdir()
    for name in packages:
        folder = Path(importlib.util.find_spec(name).origin).parent
        for path in [folder, *folder.parent.glob(f"{name.lower()}*.libs")]:
            (keep / path.name).symlink_to(path)
    wrapper = tmp_path / "python-wrapper"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{keep}:$PYTHONPATH" exec "{sys.executable}" -S "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


PIPELINE = Path(__file__).resolve().parents[2] / ".." / "shared" / "conformance" / "partcrafter" / "pipeline"


@pytest.mark.skipif(os.name != "posix", reason="shell wrapper")
@pytest.mark.parametrize("packages", [[], ["numpy", "PIL"]], ids=["no-numpy", "no-torch"])
def test_generate_with_an_incomplete_interpreter_says_what_check_says(tmp_path, request_for, packages):
    from partcrafter_blender.inference.worker import check_local_engine

    python = _interpreter_with_only(tmp_path, packages)
    engine = WorkerEngine(python, "partcrafter", {"weights_path": str(PIPELINE)})
    with pytest.raises(EngineUnavailable) as caught:
        engine.generate(request_for())
    message = str(caught.value)
    assert "Traceback" not in message and "pip install" in message
    assert message == check_local_engine(python, str(PIPELINE))["problems"][0]
