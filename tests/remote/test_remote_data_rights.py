"""Your data on this server: see it, export it, delete all of it."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from partcrafter_blender.inference import GenerationRequest
from partcrafter_blender.remote.client import ServerClient
from partcrafter_blender.remote.consent import ConsentLedger
from partcrafter_blender.remote.engine import PollSchedule, RemoteEngine
from partcrafter_blender.remote.errors import RemoteError


def test_export_then_delete_everything(harness, tmp_path: Path, user_dir: Path, sample_rgba: np.ndarray) -> None:
    srv = harness.ServerProcess(tmp_path / "srv").start()  # a key of its own: nothing else on it
    try:
        client = ServerClient(srv.url, srv.key)
        version = client.policy().version
        ledger = ConsentLedger(user_dir)
        ledger.record(host=client.host, server=client.endpoint.base_url, policy_version=version, decision="accepted")
        engine = RemoteEngine(client, policy_version=version, ledger=ledger, keep_on_server=True, schedule=PollSchedule(0.1, 1.5, 0.5, 0.5))
        result = engine.generate(GenerationRequest(image=sample_rgba, num_parts=2, quality="draft"))
        assert engine.finish(result) == ""  # kept: the option to keep the server copy
        job_id = result.metadata["job_id"]

        me = client.me()
        assert [j["id"] for j in me["jobs"]] == [job_id] and me["stored_bytes"] > 0

        with pytest.raises(RemoteError, match="not a folder"):
            client.export_me(tmp_path)
        archive = tmp_path / "my-data.zip"
        size = client.export_me(archive)
        assert size == archive.stat().st_size and not (tmp_path / "my-data.zip.part").exists()
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            assert "metadata.json" in names and f"results/{job_id}.glb" in names
            assert json.loads(zf.read("metadata.json"))

        assert client.delete_me() == 1
        after = client.me()
        assert after["jobs"] == [] and after["stored_bytes"] == 0
    finally:
        srv.stop()


def test_correct_restrict_object_and_a_shorter_retention(harness, tmp_path: Path, user_dir: Path, sample_rgba: np.ndarray) -> None:
    from partcrafter_blender.remote.errors import UploadRejected

    srv = harness.ServerProcess(tmp_path / "srv").start()
    try:
        client = ServerClient(srv.url, srv.key)
        policy = client.policy()
        assert (policy.result_retention_minutes_min, policy.result_retention_minutes_max) == (5, 7 * 1440)
        assert policy.audit_retention_days == 30
        me = client.update_me(label="Laptop", contact="me@example.com")
        assert (me["key"]["label"], me["key"]["contact"]) == ("Laptop", "me@example.com")

        ledger = ConsentLedger(user_dir)
        ledger.record(host=client.host, server=client.endpoint.base_url, policy_version=policy.version, decision="accepted")
        engine = RemoteEngine(
            client,
            policy_version=policy.version,
            ledger=ledger,
            keep_on_server=True,
            result_retention_minutes=30,
            schedule=PollSchedule(0.1, 1.5, 0.5, 0.5),
        )
        result = engine.generate(GenerationRequest(image=sample_rgba, num_parts=2, quality="draft"))
        (job,) = client.me()["jobs"]
        assert job["id"] == result.metadata["job_id"] and job["result_retention_minutes"] == 30

        assert client.update_me(processing_restricted=True)["processing_restricted"] is True
        with pytest.raises(UploadRejected, match="You restricted processing on 127.0.0.1.*nothing was uploaded"):
            engine.generate(GenerationRequest(image=sample_rgba, num_parts=2, quality="draft"))
        assert len(client.me()["jobs"]) == 1
        assert client.update_me(processing_restricted=False, analytics_objection=True)["analytics_objection"] is True
    finally:
        srv.stop()
