"""Retry-After while queued follows the measured job time and the busy workers, not the queue position alone."""

from __future__ import annotations

import math
import time
from pathlib import Path

from partcrafter_server.clock import FixedClock
from partcrafter_server.context import build_context
from partcrafter_server.pacing import MAX_WAIT_S, PRIOR_RUN_S
from partcrafter_server.settings import Settings
from server_test_support import Client, ServerProcess, png_bytes

PARAMS = {"engine": "instant", "num_parts": 1, "seed": 0, "steps": 1, "guidance": 1.0, "quality": "draft"}


def test_queued_wait_is_measured_run_time_over_busy_workers(tmp_path: Path) -> None:
    clock = FixedClock(1_700_000_000.0)
    ctx = build_context(Settings(data_dir=tmp_path / "data", engine_plugins=[]), clock)
    svc, pace = ctx.service, ctx.pace
    assert pace.queued_wait(3) == (3 + 1) * PRIOR_RUN_S  # nothing measured yet

    for run_s in (0.2, 0.4):  # two finished jobs: mean run time 0.3 s
        job = svc.submit("owner", png_bytes(), PARAMS, "2025-01-13")
        svc.lease_next("w")
        clock.advance(run_s)
        svc.succeed(job.id, "w", b"glTF-result", [], {})
    clock.advance(2)  # past the measurement's cache
    assert math.isclose(pace.run_seconds(), 0.3, abs_tol=1e-5)
    assert math.isclose(pace.queued_wait(5), (5 + 1) * 0.3, abs_tol=1e-5)  # one busy worker

    for _ in range(2):  # two workers busy: the jobs ahead share them
        svc.submit("owner", png_bytes(), PARAMS, "2025-01-13")
        svc.lease_next("w")
    assert math.isclose(pace.queued_wait(5), (5 / 2 + 1) * 0.3, abs_tol=1e-5)

    # a canceled job stopped early and says nothing about how long jobs take
    running = ctx.db.all("SELECT id FROM jobs WHERE status='running'")[0]["id"]
    clock.advance(100)
    svc.fail(running, "w", "canceled", "")
    clock.advance(2)
    assert math.isclose(pace.run_seconds(), 0.3, abs_tol=1e-5)

    # a very long queue is capped
    assert pace.queued_wait(10_000) == MAX_WAIT_S


def test_short_jobs_are_not_told_to_wait_for_their_queue_position(tmp_path: Path) -> None:
    """A real server with one worker and 0.25 s jobs: the last of 8 queued jobs was told to wait
    1 + its position seconds; it is now told (position + 1) x the measured run time at most.
    Its own server, so that other tests' jobs do not enter the measurement."""
    server = ServerProcess(tmp_path)
    server.start()
    c = Client(server, server.new_key())
    try:
        first = c.wait(c.submit(png_bytes(seed=21), {"engine": "slow", "steps": 5}).json()["id"])
        ids = [c.submit(png_bytes(seed=22 + i), {"engine": "slow", "steps": 5}).json()["id"] for i in range(8)]
        time.sleep(1.1)  # past the measurement's cache, so it includes the first run
        r = c.job(ids[-1])
        view = r.json()
        assert view["status"] == "queued", view  # 8 x 0.25 s on one worker: still waiting after 1.1 s
        position, told = view["queue_position"], int(r.headers["retry-after"])
        done = [c.wait(i) for i in ids]
        assert all(j["status"] == "succeeded" for j in done)
        longest = max(j["timings"]["run_seconds"] for j in [first, *done])
        assert told < 1 + position  # the old rule's answer
        assert 1 <= told <= math.ceil((position + 1) * longest)
    finally:
        c.close()
        server.stop()
