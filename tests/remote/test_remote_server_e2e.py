"""The server backend against a real server process on loopback running the CPU engine."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from partcrafter_blender.inference import CancelToken, Cancelled, GenerationRequest
from partcrafter_blender.remote.client import ServerClient
from partcrafter_blender.remote.consent import ConsentLedger
from partcrafter_blender.remote.engine import PollSchedule, RemoteEngine
from partcrafter_blender.remote.errors import ConsentRequired, JobNotFound, PolicyOutdated
from partcrafter_blender.remote.gate import ServerConfig, connect, consent_question
from partcrafter_blender.remote.pending import PendingJobs

FAST = PollSchedule(first=0.1, factor=1.5, cap=0.5, max_retry_after=0.5)


def make_engine(client: ServerClient, user_dir: Path, server_engine: str = "relief", **kw) -> RemoteEngine:
    policy = client.policy()
    ledger = ConsentLedger(user_dir)
    ledger.record(host=client.host, server=client.endpoint.base_url, policy_version=policy.version, decision="accepted")
    return RemoteEngine(
        client,
        policy_version=policy.version,
        server_engine=server_engine,
        pending=PendingJobs(user_dir),
        ledger=ledger,
        schedule=FAST,
        **kw,
    )


def request(rgba: np.ndarray, parts: int | None = 3) -> GenerationRequest:
    return GenerationRequest(image=rgba, image_name="np3", image_sha256="f" * 64, num_parts=parts, quality="draft", seed=3)


def test_generate_through_the_server(server, user_dir: Path, sample_rgba: np.ndarray) -> None:
    client = ServerClient(server.url, server.key)
    engine = make_engine(client, user_dir)
    events = []
    result = engine.generate(request(sample_rgba), events.append)
    assert len(result.parts) == 3 and all(len(p.faces) > 0 for p in result.parts)
    assert [p.name for p in result.parts] == ["part_01", "part_02", "part_03"]  # the same names a local run gives
    md = result.metadata
    assert md["backend"] == "server" and md["server_host"] == f"127.0.0.1:{server.port}"
    assert md["upload_pixels"] == [1023, 1024] and md["job_id"]
    assert result.engine == "relief" and result.seed == 3
    stages = {e.stage for e in events}
    assert "upload" in stages and "download" in stages
    assert all(0.0 <= e.fraction <= 1.0 for e in events)
    # Submitted and still pending until the import is confirmed...
    assert [j.job_id for j in PendingJobs(user_dir).list()] == [md["job_id"]]
    ledger = ConsentLedger(user_dir).entries()
    assert ledger[-1].decision == "uploaded" and ledger[-1].sha256 == md["upload_sha256"]
    # ...then the server copy is deleted and the job forgotten.
    assert engine.finish(result) == ""
    assert PendingJobs(user_dir).list() == []
    with pytest.raises(JobNotFound):
        client.job(md["job_id"])


def test_same_result_as_the_local_engine(server, user_dir: Path, sample_rgba: np.ndarray) -> None:
    from partcrafter_blender.inference import create_engine
    from partcrafter_blender.remote.minimise import minimise_pixels
    from partcrafter_blender.inference.images import decode_image

    remote = make_engine(ServerClient(server.url, server.key), user_dir).generate(request(sample_rgba))
    # The server sees the minimised image; run the local engine on exactly that.
    sent = decode_image(minimise_pixels(sample_rgba).png).rgba
    local = create_engine("relief").generate(request(sent))
    assert [p.name for p in remote.parts] == [p.name for p in local.parts]
    for r, loc in zip(remote.parts, local.parts):
        assert r.faces.shape == loc.faces.shape
        np.testing.assert_allclose(r.vertices, loc.vertices, atol=1e-5)
    # The relief preview's picture and UVs travel in the GLB: the same texture as a local run.
    assert remote.texture is not None
    np.testing.assert_array_equal(remote.texture, local.texture)
    for r, loc in zip(remote.parts, local.parts):
        np.testing.assert_allclose(r.uvs, loc.uvs, atol=1e-6)


def test_no_consent_sends_nothing(server, proxy, user_dir: Path, sample_rgba: np.ndarray) -> None:
    client = ServerClient(proxy.url, server.key)
    with pytest.raises(ConsentRequired, match="nothing was sent"):
        RemoteEngine(client, policy_version="", ledger=ConsentLedger(user_dir)).generate(request(sample_rgba))
    ledger = ConsentLedger(user_dir)
    ledger.record(host=client.host, server=client.endpoint.base_url, policy_version="2025-01-13", decision="declined")
    with pytest.raises(ConsentRequired, match="not in the consent ledger"):
        RemoteEngine(client, policy_version="2025-01-13", ledger=ledger).generate(request(sample_rgba))
    assert proxy.count() == 0


def test_consent_covers_only_the_image_shown(server, proxy, user_dir: Path, sample_rgba: np.ndarray) -> None:
    engine = make_engine(ServerClient(proxy.url, server.key), user_dir, consented_sha256="0" * 64)
    proxy.reset()
    with pytest.raises(ConsentRequired, match="image changed"):
        engine.generate(request(sample_rgba))
    assert proxy.count() == 0


def test_cancel_reaches_the_server(server, proxy, user_dir: Path, sample_rgba: np.ndarray) -> None:
    """With server copies kept the job ends as "canceled" there (erasing it: test_remote_cancel)."""
    client = ServerClient(proxy.url, server.key)
    engine = make_engine(client, user_dir, server_engine="remote_slow", keep_on_server=True)
    token = CancelToken()

    def progress(event) -> None:
        if event.stage not in ("upload",):
            token.cancel()  # the job is on the server: press Esc

    with pytest.raises(Cancelled, match="stopped job .* keeps it"):
        engine.generate(request(sample_rgba), progress, token)
    assert proxy.count("POST", "/v1/jobs/") == 1 and proxy.count("DELETE") == 0  # .../cancel only
    job_id = next(p for m, p in proxy.requests if p.endswith("/cancel")).split("/")[3]
    assert PendingJobs(user_dir).list() == []
    direct = ServerClient(server.url, server.key)
    for _ in range(100):
        job = direct.job(job_id)
        if job.finished:
            break
        threading.Event().wait(0.1)
    assert job.status == "canceled"


def test_resume_after_restart(server, user_dir: Path, sample_rgba: np.ndarray) -> None:
    engine = make_engine(ServerClient(server.url, server.key), user_dir, server_engine="remote_slow")

    class BlenderQuit(Exception):
        pass

    def die(event) -> None:
        if event.stage != "upload":
            raise BlenderQuit  # Blender goes away while the job runs on the server

    with pytest.raises(BlenderQuit):
        engine.generate(request(sample_rgba), die)
    # "Restart": nothing in memory survives, only the user folder.
    (pending,) = PendingJobs(user_dir).list()
    assert pending.num_parts == 3 and pending.engine == "remote_slow"
    fresh = RemoteEngine(
        ServerClient(server.url, server.key), policy_version=pending.policy_version, pending=PendingJobs(user_dir), schedule=FAST
    )
    result = fresh.resume(pending)
    assert result.metadata["job_id"] == pending.job_id and len(result.parts) == 3
    assert result.engine == "remote_slow" and result.requested_parts == 3
    fresh.finish(result)
    assert PendingJobs(user_dir).list() == []



def test_policy_change_asks_again(harness, tmp_path: Path, user_dir: Path, sample_rgba: np.ndarray) -> None:
    srv = harness.ServerProcess(tmp_path / "srv", env={"PARTCRAFTER_SERVER_POLICY_VERSION": "2025-01-13"}).start()
    try:
        config = ServerConfig(url=srv.url, api_key=srv.key)
        client = connect(config, online_access=False)  # loopback: works offline
        ledger = ConsentLedger(user_dir)
        question, ask = consent_question(client, ledger, sample_rgba, ask_every_time=False)
        assert ask and question.policy.version == "2025-01-13"
        assert question.policy.result_retention_days == 7 and question.policy.max_retention_days == 30
        assert (question.upload.width, question.upload.height) == (1023, 1024)
        ledger.record(host=question.host, server=question.server, policy_version="2025-01-13", decision="accepted")
        assert consent_question(client, ledger, sample_rgba, ask_every_time=False)[1] is False
        assert consent_question(client, ledger, sample_rgba, ask_every_time=True)[1] is True

        srv.restart(PARTCRAFTER_SERVER_POLICY_VERSION="2026-06-01")
        client = connect(ServerConfig(url=srv.url, api_key=srv.key), online_access=False)
        question, ask = consent_question(client, ledger, sample_rgba, ask_every_time=False)
        assert ask and question.policy.version == "2026-06-01"
        # A job carrying the old consent is refused by the server, and says why.
        stale = RemoteEngine(client, policy_version="2025-01-13", ledger=ledger, schedule=FAST)
        with pytest.raises(PolicyOutdated, match="2026-06-01") as err:
            stale.generate(request(sample_rgba))
        assert "Nothing was uploaded" in str(err.value)
        assert client.me()["jobs"] == []
    finally:
        srv.stop()


def test_variants_are_one_upload_and_one_job_with_every_seed(server, user_dir: Path, sample_rgba: np.ndarray) -> None:
    import dataclasses

    from partcrafter_blender.inference import create_engine, run_engine
    from partcrafter_blender.inference.images import decode_image
    from partcrafter_blender.remote.minimise import minimise_pixels

    engine = make_engine(ServerClient(server.url, server.key), user_dir)
    asked = dataclasses.replace(request(sample_rgba), variants=3, max_triangles=4000)
    result = run_engine(engine, asked)
    assert result.variant_seeds == [3, 4, 5]
    assert [d.decision for d in ConsentLedger(user_dir).entries()].count("uploaded") == 1
    assert len(PendingJobs(user_dir).list()) == 1  # one job
    sent = decode_image(minimise_pixels(sample_rgba).png).rgba
    local = run_engine(create_engine("relief"), dataclasses.replace(asked, image=sent))
    for (seed, remote_parts), (local_seed, local_parts) in zip(result.variants(), local.variants(), strict=True):
        assert seed == local_seed and len(remote_parts) == 3
        assert max(len(p.faces) for p in remote_parts) <= 4000
        for r, loc in zip(remote_parts, local_parts, strict=True):
            np.testing.assert_allclose(r.vertices, loc.vertices, atol=1e-5)
    engine.finish(result)
