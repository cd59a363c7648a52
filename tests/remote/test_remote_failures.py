"""Every failure mode gives a specific, human message (and never the API key)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from partcrafter_blender.inference import GenerationRequest
from partcrafter_blender.remote.client import ServerClient
from partcrafter_blender.remote.consent import ConsentLedger
from partcrafter_blender.remote.engine import PollSchedule, RemoteEngine
from partcrafter_blender.remote.errors import (
    AuthFailed,
    DownloadFailed,
    InvalidServerURL,
    JobNotFound,
    OnlineAccessDisabled,
    PolicyOutdated,
    RateLimited,
    ServerFailed,
    ServerUnreachable,
    TLSFailed,
    UploadRejected,
)
from partcrafter_blender.remote.gate import ServerConfig, connect
from partcrafter_blender.remote.pending import PendingJobs
from tls_cert import self_signed_cert

FAST = PollSchedule(first=0.1, factor=1.5, cap=0.5, max_retry_after=0.5)


def engine_for(client: ServerClient, user_dir: Path) -> RemoteEngine:
    version = "2025-01-13"
    ledger = ConsentLedger(user_dir)
    ledger.record(host=client.host, server=client.endpoint.base_url, policy_version=version, decision="accepted")
    return RemoteEngine(client, policy_version=version, server_engine="relief", pending=PendingJobs(user_dir), ledger=ledger, schedule=FAST)


def req(rgba: np.ndarray) -> GenerationRequest:
    return GenerationRequest(image=rgba, image_name="np3", num_parts=2, quality="draft")


def test_connection_refused(harness) -> None:
    port = harness.free_port()
    with pytest.raises(ServerUnreachable, match=f"127.0.0.1:{port} refused the connection"):
        ServerClient(f"http://127.0.0.1:{port}", "k").policy()


def test_dns_failure() -> None:
    with pytest.raises(ServerUnreachable, match="does not resolve") as err:
        ServerClient("https://no-such-host.invalid", "k", timeout=(3, 3)).policy()
    assert "no-such-host.invalid" in str(err.value)


def test_plain_http_to_a_remote_host_is_refused_before_any_connection() -> None:
    with pytest.raises(InvalidServerURL, match="unencrypted"):
        connect(ServerConfig(url="http://gpu.example.com"), online_access=True)


def test_online_access_off_blocks_remote_but_not_loopback(server) -> None:
    with pytest.raises(OnlineAccessDisabled, match="--online-mode"):
        connect(ServerConfig(url="https://gpu.example.com", api_key="k"), online_access=False)
    client = connect(ServerConfig(url=server.url, api_key=server.key), online_access=False)
    assert client.policy().version


def test_wrong_key_is_401_and_never_echoed(server) -> None:
    secret = "pcs_this-is-a-wrong-key-0123456789"
    with pytest.raises(AuthFailed, match="did not accept the API key") as err:
        ServerClient(server.url, secret).me()
    assert secret not in str(err.value)
    with pytest.raises(AuthFailed, match="No API key is set"):
        ServerClient(server.url, "").me()


def test_unknown_job_is_404(server) -> None:
    with pytest.raises(JobNotFound, match="no job nope"):
        ServerClient(server.url, server.key).job("nope")


def test_not_an_image_is_415_and_bad_parameters_422(server) -> None:
    client = ServerClient(server.url, server.key)
    with pytest.raises(UploadRejected, match="415") as err:
        client.submit(b"GIF89a" + b"\0" * 64, {"num_parts": 2}, "2025-01-13")
    assert err.value.status == 415
    png = np.zeros((64, 64, 4), np.uint8)
    png[16:48, 16:48] = 200
    from partcrafter_blender.inference.images import encode_png

    with pytest.raises(UploadRejected, match="422"):
        client.submit(encode_png(png), {"num_parts": 99}, "2025-01-13")


@pytest.mark.parametrize(
    "path, fault, error, words",
    [
        ("^POST /v1/jobs$", "status:413:too_large", UploadRejected, "too large (413)"),
        ("^POST /v1/jobs$", "status:403:forbidden", AuthFailed, "refused this API key access (403)"),
        ("^POST /v1/jobs$", "status:429:rate_limited:7", RateLimited, "Try again in 7 seconds"),
        ("^POST /v1/jobs$", "status:503:queue_full:30", RateLimited, "busy or temporarily unavailable (503, queue full)"),
        ("^POST /v1/jobs$", "status:500", ServerFailed, "internal error (500)"),
        ("/result$", "truncate", DownloadFailed, "cut off"),
        ("/result$", "corrupt", DownloadFailed, "not a usable model"),
    ],
)
def test_injected_failures(server, proxy, user_dir: Path, sample_rgba: np.ndarray, path, fault, error, words) -> None:
    proxy.faults[path] = fault
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")) as err:
        engine_for(ServerClient(proxy.url, server.key), user_dir).generate(req(sample_rgba))
    assert server.key not in str(err.value)
    pending = PendingJobs(user_dir).list()
    if path == "/result$":
        # The job finished on the server; it stays listed so it can be resumed.
        assert len(pending) == 1
        proxy.faults.clear()
        engine = engine_for(ServerClient(proxy.url, server.key), user_dir)
        assert len(engine.resume(pending[0]).parts) == 2
    else:
        assert pending == []


def test_polling_honours_retry_after(server, proxy, user_dir: Path, sample_rgba: np.ndarray) -> None:
    """A 429 while polling is waited out (Retry-After), not reported as a failure."""
    engine = engine_for(ServerClient(proxy.url, server.key), user_dir)
    engine.server_engine = "remote_slow"
    proxy.faults[r"^GET /v1/jobs/[^/]+$"] = "once:status:429:rate_limited:1"
    result = engine.generate(req(sample_rgba))
    assert len(result.parts) == 2
    assert "^GET /v1/jobs/[^/]+$" not in proxy.faults  # the 429 was served, then polling went on
    assert proxy.count("GET", "/v1/jobs/") >= 3


def test_tls_self_signed_refused_then_trusted_with_a_ca_bundle(harness, tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    srv = harness.ServerProcess(tmp_path / "tls", tls=(cert, key)).start()
    try:
        assert srv.url.startswith("https://")
        with pytest.raises(TLSFailed, match="self-signed") as err:
            ServerClient(srv.url, srv.key).policy()
        assert "CA bundle" in str(err.value)
        assert ServerClient(srv.url, srv.key, ca_bundle=str(cert)).policy().version
        with pytest.raises(InvalidServerURL, match="CA bundle file"):
            ServerClient(srv.url, srv.key, ca_bundle=str(tmp_path / "missing.pem"))
    finally:
        srv.stop()


def test_http_to_a_tls_port_is_explained(harness, tmp_path: Path) -> None:
    """A plain server where https is expected: a TLS error, not a hang."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    port = lsock.getsockname()[1]

    def answer() -> None:
        conn, _ = lsock.accept()
        conn.recv(1024)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    with pytest.raises(TLSFailed, match="does not speak HTTPS"):
        ServerClient(f"https://127.0.0.1:{port}", "k", timeout=(3, 3)).policy()
    lsock.close()


def test_proxy_from_environment_is_used_for_remote_hosts_only(server, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bytes] = []
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()

    def proxy_refuses() -> None:
        conn, _ = lsock.accept()
        seen.append(conn.recv(1024))
        conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        conn.close()

    threading.Thread(target=proxy_refuses, daemon=True).start()
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{lsock.getsockname()[1]}")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{lsock.getsockname()[1]}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(ServerUnreachable, match="proxy"):
        ServerClient("https://gpu.example.com", "k", timeout=(3, 3)).policy()
    assert seen and seen[0].startswith(b"CONNECT gpu.example.com:443")
    # Loopback bypasses the proxy (it could not reach this computer's server anyway).
    assert ServerClient(server.url, server.key).policy().version
    lsock.close()


def test_read_timeout_is_named(harness) -> None:
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    port = lsock.getsockname()[1]
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(lsock.accept()[0]), daemon=True).start()
    with pytest.raises(ServerUnreachable, match="did not answer within 1 seconds"):
        ServerClient(f"http://127.0.0.1:{port}", "k", timeout=(1, 1)).policy()
    lsock.close()


@pytest.mark.parametrize(
    ("status", "body", "error", "words"),
    [
        (400, {"code": "too_large", "detail": "8193 px"}, UploadRejected, r"refused the image as too large \(400\): 8193 px"),
        (409, {"code": "policy_outdated", "current_version": "2030-01-01"}, PolicyOutdated, "now version 2030-01-01"),
        (409, {"code": "not_ready"}, ServerFailed, r"not ready yet \(409\)"),
        (502, None, ServerFailed, r"had an internal error \(502\)"),  # a proxy's page, not the server's problem
        (503, {"code": "queue_full"}, RateLimited, r"busy or temporarily unavailable \(503, queue full\)"),
        (418, {"code": "teapot", "detail": "short and stout"}, ServerFailed, "Unexpected answer 418 .*: short and stout"),
    ],
)
def test_errors_follow_the_servers_code_then_the_status(status, body, error, words) -> None:
    """A canned HTTP answer on loopback: the client's error comes from the problem's `code`."""
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = json.dumps(body).encode() if body is not None else b"<html>Bad Gateway</html>"
            self.send_response(status)
            self.send_header("Content-Type", "application/problem+json" if body is not None else "text/html")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with ServerClient(f"http://127.0.0.1:{httpd.server_port}", "pcs_test_key") as client:
            with pytest.raises(error, match=words) as err:
                client.job("job_1")
        assert err.value.status in (status, None) and (body is None or err.value.code == body["code"])
    finally:
        httpd.shutdown()
        httpd.server_close()
