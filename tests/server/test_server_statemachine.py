"""A Hypothesis state machine over create / poll / cancel / delete / export / erase, against a real server."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule
from server_test_support import Client, ServerProcess, png_bytes

FINAL = {"succeeded", "failed", "canceled"}
IMAGE = png_bytes((48, 40), seed=7)


@pytest.fixture()
def machine_server(server: ServerProcess) -> ServerProcess:
    return server


def test_job_state_machine(machine_server: ServerProcess) -> None:
    srv = machine_server

    class Jobs(RuleBasedStateMachine):
        jobs = Bundle("jobs")

        def __init__(self) -> None:
            super().__init__()
            self.client = Client(srv, srv.new_key())
            self.alive: dict[str, str] = {}  # job id -> last status seen
            self.deleted: set[str] = set()

        @rule(
            target=jobs,
            engine=st.sampled_from(["instant", "slow"]),
            parts=st.one_of(st.none(), st.integers(1, 16)),
            seed=st.integers(0, 2**32 - 1),
        )
        def create(self, engine: str, parts: int | None, seed: int) -> str:
            r = self.client.submit(IMAGE, {"engine": engine, "num_parts": parts, "seed": seed, "steps": 4})
            assert r.status_code == 202, r.text
            job = r.json()
            assert job["params"]["num_parts"] == parts and job["params"]["seed"] == seed
            self.alive[job["id"]] = job["status"]
            return job["id"]

        def _seen(self, job_id: str, status: str) -> None:
            before = self.alive[job_id]
            if before in FINAL:
                assert status == before, f"{job_id} went from {before} to {status}"
            self.alive[job_id] = status

        @rule(job_id=jobs)
        def poll(self, job_id: str) -> None:
            r = self.client.job(job_id)
            if job_id in self.deleted:
                assert r.status_code == 404
                return
            assert r.status_code == 200
            job = r.json()
            self._seen(job_id, job["status"])
            assert ("retry-after" in r.headers) == (job["status"] in ("queued", "running"))
            if job["status"] == "succeeded":
                assert len(job["parts"]) == (job["params"]["num_parts"] or (3 if job["engine"] == "instant" else 1))
            if job["status"] in FINAL:
                assert job["input_deleted_at"] is not None

        @rule(job_id=jobs)
        def cancel(self, job_id: str) -> None:
            r = self.client.http.post(f"/v1/jobs/{job_id}/cancel")
            if job_id in self.deleted:
                assert r.status_code == 404
                return
            assert r.status_code == 202
            self._seen(job_id, r.json()["status"])

        @rule(job_id=consumes(jobs))
        def delete(self, job_id: str) -> None:
            r = self.client.http.delete(f"/v1/jobs/{job_id}")
            assert r.status_code == (404 if job_id in self.deleted else 204)
            self.deleted.add(job_id)
            self.alive.pop(job_id, None)

        @rule()
        def export(self) -> None:
            z = zipfile.ZipFile(io.BytesIO(self.client.http.get("/v1/me/export").content))
            meta = json.loads(z.read("metadata.json"))
            listed = {j["id"]: j["status"] for j in meta["jobs"]}
            assert set(listed) == set(self.alive)
            results = {n.removeprefix("results/").removesuffix(".glb") for n in z.namelist() if n.startswith("results/")}
            assert results == {jid for jid, status in listed.items() if status == "succeeded"}

        @invariant()
        def me_lists_exactly_the_live_jobs(self) -> None:
            me = self.client.http.get("/v1/me").json()
            assert {j["id"] for j in me["jobs"]} == set(self.alive)

        def teardown(self) -> None:
            for job_id in list(self.alive):
                assert self.client.wait(job_id, timeout=60)["status"] in FINAL
            erased = self.client.http.delete("/v1/me").json()
            assert erased["deleted_jobs"] == len(self.alive)
            self.client.close()

    Jobs.TestCase.settings = settings(
        max_examples=10, stateful_step_count=10, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    Jobs.TestCase().runTest()
