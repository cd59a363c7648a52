"""Keys, owner scoping and the limits that keep the service up."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from server_test_support import ISSUED_KEYS, Client, ServerProcess


def test_keys_need_age_confirmation_and_are_stored_as_hashes(server: ServerProcess) -> None:
    refused = server.cli("keys", "create", check=False)
    assert refused.returncode == 2 and "13" in refused.stderr and "pcs_" not in refused.stdout
    key = server.cli("keys", "create", "--holder-is-13-or-older").stdout.strip()
    ISSUED_KEYS.append(key)
    key_id, secret = key.split("_")[1], key.split("_", 2)[2]
    db = (server.data_dir / "partcrafter.sqlite3").read_bytes()
    assert secret.encode() not in db and key.encode() not in db
    with sqlite3.connect(server.data_dir / "partcrafter.sqlite3") as con:
        row = con.execute("SELECT secret_hash, age_confirmed_at FROM api_keys WHERE id=?", (key_id,)).fetchone()
    assert len(row[0]) == 32 and row[1] is not None


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer nonsense", "Bearer pcs_0123456789abcdef_" + "A" * 43, "Basic dXNlcjpwYXNz"],
)
def test_unauthorised_requests(server: ServerProcess, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    for method, path in (("GET", "/v1/me"), ("GET", "/v1/jobs/job_x"), ("POST", "/v1/jobs"), ("DELETE", "/v1/me")):
        r = httpx.request(method, f"{server.url}{path}", headers=headers)
        assert r.status_code == 401 and r.json()["code"] == "unauthorized", (method, path, r.text)


def test_wrong_secret_for_a_real_key_id(server: ServerProcess, server_keys: list[str]) -> None:
    prefix, key_id, secret = server_keys[2].split("_", 2)
    forged = f"{prefix}_{key_id}_{'B' if secret[0] != 'B' else 'C'}{secret[1:]}"
    assert httpx.get(f"{server.url}/v1/me", headers={"Authorization": f"Bearer {forged}"}).status_code == 401


def test_revoked_key_is_refused(server: ServerProcess) -> None:
    c = Client(server, server.new_key())
    try:
        assert c.http.get("/v1/me").status_code == 200
        server.cli("keys", "revoke", c.key.split("_")[1])
        assert c.http.get("/v1/me").status_code == 401
    finally:
        c.close()


def test_revoke_with_erase_removes_everything_of_a_holder(server: ServerProcess, sample_png: bytes) -> None:
    """For a holder found to be under 13: key revoked and every job erased at once."""
    c = Client(server, server.new_key())
    try:
        job = c.wait(c.submit(sample_png).json()["id"])
        key_id = c.key.split("_")[1]
        out = server.cli("keys", "revoke", key_id, "--erase")
        assert "1 job(s) erased" in out.stderr
        assert c.http.get("/v1/me").status_code == 401
        with sqlite3.connect(server.data_dir / "partcrafter.sqlite3") as con:
            assert con.execute("SELECT COUNT(*) FROM jobs WHERE owner=?", (key_id,)).fetchone()[0] == 0
            assert con.execute("SELECT COUNT(*) FROM blob_keys WHERE job_id=?", (job["id"],)).fetchone()[0] == 0
    finally:
        c.close()


def test_other_owners_jobs_answer_404(client: Client, other_client: Client, sample_png: bytes) -> None:
    mine = client.wait(client.submit(sample_png).json()["id"])
    jid = mine["id"]
    for method, path in (
        ("GET", f"/v1/jobs/{jid}"),
        ("GET", f"/v1/jobs/{jid}/result"),
        ("POST", f"/v1/jobs/{jid}/cancel"),
        ("DELETE", f"/v1/jobs/{jid}"),
    ):
        r = other_client.http.request(method, path)
        assert r.status_code == 404 and r.json()["code"] == "not_found", (method, path)
        never = other_client.http.request(method, path.replace(jid, "job_000000000000000000000000"))
        assert never.json() == r.json()  # indistinguishable from a job that never existed
    assert jid not in other_client.http.get("/v1/me").text
    assert jid not in other_client.http.get("/v1/me/export").content.decode("latin-1")
    other_client.http.delete("/v1/me")
    assert client.job(jid).status_code == 200  # the other owner's erasure did not touch mine
    # same Idempotency-Key under two owners: two different jobs
    a = client.submit(sample_png, headers={"Idempotency-Key": "shared"}).json()
    b = other_client.submit(sample_png, headers={"Idempotency-Key": "shared"}).json()
    assert a["id"] != b["id"]


@pytest.fixture(scope="module")
def tight_server(tmp_path_factory: pytest.TempPathFactory):
    srv = ServerProcess(
        tmp_path_factory.mktemp("tight"),
        env={
            "PARTCRAFTER_SERVER_SUBMIT_RATE_PER_MINUTE": "3",
            "PARTCRAFTER_SERVER_MAX_ACTIVE_JOBS_PER_KEY": "2",
            "PARTCRAFTER_SERVER_MAX_QUEUE": "2",
            "PARTCRAFTER_SERVER_REQUEST_RATE_PER_MINUTE": "40",
            "PARTCRAFTER_SERVER_REQUEST_TIMEOUT_S": "2",
        },
    )
    srv.start()
    yield srv
    srv.stop()


def test_rate_concurrency_and_queue_limits(tight_server: ServerProcess, sample_png: bytes) -> None:
    a, b, c = (Client(tight_server, tight_server.new_key()) for _ in range(3))
    try:
        slow = {"engine": "slow", "steps": 200}
        first = a.submit(sample_png, slow)
        assert first.status_code == 202
        assert a.submit(sample_png, slow).status_code == 202
        a.wait(first.json()["id"], until=("running",))
        busy = a.submit(sample_png, slow)  # third unfinished job of this key
        assert busy.status_code == 429 and busy.json()["code"] == "rate_limited" and int(busy.headers["retry-after"]) >= 1
        rate = a.submit(sample_png, slow)  # fourth submission within the minute
        assert rate.status_code == 429 and "submissions" in rate.json()["detail"]
        # one running + queue of 2 from another key fills the bounded queue
        assert b.submit(sample_png, slow).status_code == 202
        full = c.submit(sample_png, slow)
        assert full.status_code == 503 and full.json()["code"] == "queue_full" and full.headers["retry-after"]
        # per-key request rate: 40 a minute
        codes = [c.http.get("/v1/me").status_code for _ in range(45)]
        assert 429 in codes and codes[0] == 200
        assert tight_server.healthy()
        for cl in (a, b):
            for job in cl.http.get("/v1/me").json()["jobs"]:
                cl.http.delete(f"/v1/jobs/{job['id']}")
    finally:
        for cl in (a, b, c):
            cl.close()


def test_slow_upload_times_out(tight_server: ServerProcess) -> None:
    key = tight_server.new_key()

    def trickle():
        yield b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
        for _ in range(5):
            time.sleep(0.5)
            yield b"\x89PNG"

    r = httpx.post(
        f"{tight_server.url}/v1/jobs",
        content=trickle(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "multipart/form-data; boundary=xyz"},
        timeout=30,
    )
    assert r.status_code == 408 and r.json()["code"] == "request_timeout"
    assert tight_server.healthy()


def test_plain_http_refused_off_loopback(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path)
    out = subprocess_serve(srv, "0.0.0.0")
    assert out.returncode == 2 and "Refusing to serve plain HTTP" in out.stderr


def subprocess_serve(srv: ServerProcess, host: str):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "partcrafter_server", "serve", "--host", host, "--port", str(srv.port)],
        env=srv.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
