"""The whole job life cycle over real HTTP against a real server process."""

from __future__ import annotations

import gzip
import json
import sqlite3

import httpx
from server_test_support import IMAGES, POLICY, Client, ServerProcess, png_bytes

from partcrafter_blender.inference.glb import read_glb


def test_lifecycle_submit_poll_download_delete(client: Client, server: ServerProcess, sample_png: bytes) -> None:
    r = client.submit(sample_png, {"num_parts": 5, "seed": 3})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running", "succeeded")
    assert r.headers["location"] == f"/v1/jobs/{job['id']}" == job["links"]["self"]
    assert job["policy_version"] == POLICY and job["params"]["num_parts"] == 5 and job["engine"] == "instant"

    done = client.wait(job["id"])
    assert done["status"] == "succeeded", done
    assert [p["name"] for p in done["parts"]] == [f"part_{i:02d}" for i in range(5)]
    assert all(p["status"] == "ok" and p["faces"] == 12 for p in done["parts"])
    assert done["input_deleted_at"] is not None  # the input went away when the job ended
    assert done["result_expires_at"] > done["finished_at"]
    assert "Retry-After" not in client.job(job["id"]).headers

    res = client.http.get(done["links"]["result"], headers={"Accept-Encoding": "identity"})
    assert res.status_code == 200 and res.headers["content-type"] == "model/gltf-binary"
    parts = read_glb(res.content)
    assert [p.name for p in parts] == [f"part_{i:02d}" for i in range(5)]

    # no input blob key is left for this job; exactly one (result) key
    with sqlite3.connect(server.data_dir / "partcrafter.sqlite3") as con:
        kinds = [k for (k,) in con.execute("SELECT kind FROM blob_keys WHERE job_id=?", (job["id"],))]
    assert kinds == ["result"]

    assert client.http.delete(f"/v1/jobs/{job['id']}").status_code == 204
    gone = client.job(job["id"])
    assert gone.status_code == 404 and gone.json()["code"] == "not_found"
    assert client.http.get(done["links"]["result"]).status_code == 404


def test_result_etag_and_gzip(client: Client, sample_png: bytes) -> None:
    job = client.wait(client.submit(sample_png, {"num_parts": 2}).json()["id"])
    plain = client.http.get(job["links"]["result"], headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    etag = plain.headers["etag"]
    assert (
        client.http.get(job["links"]["result"], headers={"If-None-Match": etag, "Accept-Encoding": "identity"}).status_code == 304
    )
    # gzip when accepted, read raw to prove the wire bytes are compressed
    with client.http.stream("GET", job["links"]["result"], headers={"Accept-Encoding": "gzip"}) as raw:
        assert raw.headers["content-encoding"] == "gzip"
        wire = b"".join(raw.iter_raw())
    assert gzip.decompress(wire) == plain.content
    assert raw.headers["etag"] != etag


def test_retry_after_while_unfinished_and_not_ready(client: Client, sample_png: bytes) -> None:
    job = client.submit(sample_png, {"engine": "slow", "steps": 30}).json()
    r = client.job(job["id"])
    assert r.json()["status"] in ("queued", "running") and int(r.headers["retry-after"]) >= 1
    res = client.http.get(job["links"]["result"])
    assert res.status_code == 409 and res.json()["code"] == "not_ready" and "retry-after" in res.headers
    assert client.http.post(job["links"]["cancel"]).status_code == 202
    assert client.wait(job["id"])["status"] == "canceled"


def test_cancel_queued_and_running(client: Client, sample_png: bytes) -> None:
    running = client.submit(sample_png, {"engine": "slow", "steps": 200}).json()
    queued = client.submit(sample_png, {"engine": "slow", "steps": 200}).json()
    client.wait(running["id"], until=("running",))
    q = client.http.post(f"/v1/jobs/{queued['id']}/cancel")
    assert q.status_code == 202 and q.json()["status"] == "canceled" and q.json()["input_deleted_at"]
    assert client.http.post(f"/v1/jobs/{running['id']}/cancel").status_code == 202
    final = client.wait(running["id"])
    assert final["status"] == "canceled" and final["error"] is None and final["input_deleted_at"]
    assert client.http.get(final["links"]["result"]).json()["code"] == "not_ready"


def test_idempotency_key(client: Client, sample_png: bytes) -> None:
    h = {"Idempotency-Key": "retry-me-1"}
    first = client.submit(sample_png, {"seed": 9}, headers=h)
    again = client.submit(sample_png, {"seed": 9}, headers=h)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    other = client.submit(sample_png, {"seed": 10}, headers=h)
    assert other.status_code == 422 and other.json()["code"] == "invalid_parameters"


def test_consent_is_required_and_must_be_current(client: Client, sample_png: bytes) -> None:
    missing = client.submit(sample_png, policy=None)
    assert missing.status_code == 428 and missing.json()["code"] == "consent_required"
    assert missing.headers["content-type"] == "application/problem+json"
    stale = client.submit(sample_png, policy="2023-01-01")
    assert stale.status_code == 409 and stale.json()["code"] == "policy_outdated"
    assert stale.json()["current_version"] == POLICY
    policy = httpx.get(f"{client.server.url}/v1/policy").json()
    assert policy["policy_version"] == POLICY and policy["result_retention_days"] == 7 and policy["max_retention_days"] == 30


def test_parameters_are_bounded(client: Client, sample_png: bytes) -> None:
    for params in (
        {"num_parts": 0},
        {"num_parts": 17},
        {"steps": 10_000},
        {"guidance": -1},
        {"seed": -1},
        {"quality": "ultra"},
        {"surprise": 1},
        {"engine": "nope"},
        {"steps": 201},
    ):
        r = client.submit(sample_png, params)
        assert r.status_code == 422 and r.json()["code"] == "invalid_parameters", (params, r.text)
    bad_json = client.http.post(
        "/v1/jobs", files={"image": ("a.png", sample_png, "image/png")}, data={"params": "{not json", "policy_version": POLICY}
    )
    assert bad_json.status_code == 400 and bad_json.json()["code"] == "bad_request"
    not_multipart = client.http.post("/v1/jobs", json={"image": "x"})
    assert not_multipart.status_code == 400
    auto = client.wait(client.submit(sample_png, {"num_parts": None}).json()["id"])
    assert auto["status"] == "succeeded" and len(auto["parts"]) == 3  # the engine chose


def test_per_part_outcome_and_engine_failures(client: Client, sample_png: bytes) -> None:
    half = client.wait(client.submit(sample_png, {"engine": "halfway", "num_parts": 2}).json()["id"])
    assert half["status"] == "succeeded"
    assert [(p["index"], p["status"]) for p in half["parts"]] == [(0, "ok"), (1, "failed")]
    assert half["parts"][1]["reason"] == "no surface found for this part"
    probe = client.wait(client.submit(sample_png, {"engine": "offline_probe"}).json()["id"])
    assert probe["status"] == "succeeded", probe["error"]  # workers run with the model hub offline


def test_me_export_and_erase(server: ServerProcess) -> None:
    c = Client(server, server.new_key())
    try:
        a = c.wait(c.submit(png_bytes(seed=5), {"num_parts": 2}).json()["id"])
        b = c.wait(c.submit(png_bytes(seed=6), {"num_parts": 3}).json()["id"])
        me = c.http.get("/v1/me").json()
        assert {j["id"] for j in me["jobs"]} == {a["id"], b["id"]}
        assert me["stored_bytes"] > 0 and me["key"]["id_hint"].startswith("pcs_")
        assert {"job.created", "job.succeeded", "input.deleted"} <= {e["event"] for e in me["audit_events"]}
        export = c.http.get("/v1/me/export")
        assert export.headers["content-type"] == "application/zip"
        import io
        import zipfile

        z = zipfile.ZipFile(io.BytesIO(export.content))
        assert sorted(z.namelist()) == sorted(["metadata.json", f"results/{a['id']}.glb", f"results/{b['id']}.glb"])
        meta = json.loads(z.read("metadata.json"))
        assert {j["id"] for j in meta["jobs"]} == {a["id"], b["id"]} and meta["policy_version"] == POLICY
        assert len(read_glb(z.read(f"results/{b['id']}.glb"))) == 3
        erased = c.http.delete("/v1/me")
        assert erased.status_code == 200 and erased.json() == {"deleted_jobs": 2}
        after = c.http.get("/v1/me").json()
        assert after["jobs"] == [] and after["stored_bytes"] == 0
        assert c.job(a["id"]).status_code == 404
    finally:
        c.close()


def test_openapi_health_metrics(server: ServerProcess, client: Client, sample_png: bytes) -> None:
    schema = httpx.get(f"{server.url}/openapi.json").json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/result", "/v1/me", "/v1/me/export", "/v1/policy"} <= set(
        schema["paths"]
    )
    job = client.wait(client.submit(sample_png).json()["id"])
    text = httpx.get(f"{server.url}/metrics").text
    assert (
        "partcrafter_jobs_submitted_total" in text
        and 'partcrafter_http_requests_total{method="GET",route="/v1/jobs/{job_id}"' in text
    )
    assert job["id"] not in text and "127.0.0.1" not in text and client.key.split("_")[1] not in text
    unknown = httpx.get(f"{server.url}/v1/nothing-here")
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"


def test_relief_engine_on_a_real_image(client: Client) -> None:
    """The real CPU engine behind the server, on one of the example renders."""
    image = sorted(IMAGES.glob("np3_*.png"))[0].read_bytes()
    job = client.wait(client.submit(image, {"engine": "relief", "num_parts": 3, "quality": "draft"}).json()["id"], timeout=120)
    assert job["status"] == "succeeded", job["error"]
    ok = [p for p in job["parts"] if p["status"] == "ok"]
    assert ok and all(p["faces"] > 0 for p in ok)
    parts = read_glb(client.http.get(job["links"]["result"]).content)
    assert [p.name for p in parts] == [p["name"] for p in ok]


def test_partcrafter_without_weights_is_refused_clearly(client: Client, sample_png: bytes) -> None:
    r = client.submit(sample_png, {"engine": "partcrafter"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_parameters"
    assert "partcrafter" in r.json()["detail"]
