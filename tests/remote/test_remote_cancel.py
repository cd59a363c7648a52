"""A user's cancel stops the job on the server and erases it there (unless copies are
kept); when the server cannot be reached the job stays listed, so nothing is lost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from partcrafter_blender.remote.client import ServerClient
from partcrafter_blender.remote.engine import RemoteEngine
from partcrafter_blender.remote.errors import JobNotFound, RateLimited
from partcrafter_blender.remote.minimise import minimise_pixels
from partcrafter_blender.remote.pending import PendingJob, PendingJobs


def submit_running_job(client: ServerClient, rgba: np.ndarray, pending: PendingJobs) -> str:
    """A job on the slow engine, listed as unfinished (as after a Blender restart)."""
    version = client.policy().version
    job = client.submit(minimise_pixels(rgba).png, {"num_parts": 2, "quality": "draft", "engine": "remote_slow"}, version)
    pending.add(PendingJob(job_id=job.id, server=client.endpoint.base_url, host=client.host, policy_version=version))
    return job.id


def ids(me: dict) -> list[str]:
    return [j["id"] for j in me["jobs"]]


def test_cancel_erases_explains_a_failed_erase_and_keeps_the_job_listed_when_unreachable(
    server, proxy, user_dir: Path, sample_rgba: np.ndarray
) -> None:
    client = ServerClient(proxy.url, server.key)
    pending = PendingJobs(user_dir)
    engine = RemoteEngine(client, policy_version="", pending=pending)
    direct = ServerClient(server.url, server.key)

    job_id = submit_running_job(client, sample_rgba, pending)
    assert engine.cancel_on_server(job_id) == f"Cancelled; job {job_id} was stopped and erased on the server {client.host}."
    assert job_id not in ids(direct.me()) and pending.list() == []
    assert engine.cancel_on_server(job_id).startswith(f"Job {job_id} is no longer on the server")

    # The erase fails: still cancelled and forgotten here, and the message says what is left.
    job_id = submit_running_job(client, sample_rgba, pending)
    proxy.faults["^DELETE /v1/jobs/"] = "once:status:500"
    outcome = engine.cancel_on_server(job_id)
    assert "erasing it there failed" in outcome and "Delete Everything" in outcome and pending.list() == []
    assert job_id in ids(direct.me())
    direct.delete_job(job_id)

    # The server cannot be told at all: the job stays in the Unfinished list to cancel later.
    job_id = submit_running_job(client, sample_rgba, pending)
    proxy.faults["/cancel$"] = "once:status:503:unavailable:5"
    with pytest.raises(RateLimited):
        engine.cancel_on_server(job_id)
    assert [j.job_id for j in pending.list()] == [job_id]
    assert proxy.count("DELETE", f"/v1/jobs/{job_id}") == 0
    engine.cancel_on_server(job_id)
    with pytest.raises(JobNotFound):
        direct.job(job_id)
