"""Encryption in transit: HTTPS served directly; plain HTTP only on loopback or behind a TLS proxy."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
from partcrafter_server.settings import Settings
from server_test_support import Client, ServerProcess, png_bytes
from tls_cert import self_signed_cert


def test_serves_https_from_certificate(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    srv = ServerProcess(
        tmp_path / "srv", env={"PARTCRAFTER_SERVER_SSL_CERTFILE": str(cert), "PARTCRAFTER_SERVER_SSL_KEYFILE": str(key)}
    )
    srv.scheme = "https"
    trust = ssl.create_default_context(cafile=str(cert))
    srv.start(client_kwargs={"verify": trust})
    try:
        c = Client(srv, srv.new_key())
        c.http = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {c.key}"}, verify=trust, timeout=30)
        assert c.wait(c.submit(png_bytes(seed=31)).json()["id"])["status"] == "succeeded"
        with pytest.raises(httpx.HTTPError):  # no plaintext listener on the same port
            httpx.get(f"http://127.0.0.1:{srv.port}/healthz", timeout=5).raise_for_status()
        c.close()
    finally:
        srv.stop()


def test_listen_rules() -> None:
    assert Settings(host="127.0.0.1").listen_problem() is None
    assert Settings(host="::1").listen_problem() is None
    assert "Refusing" in Settings(host="0.0.0.0").listen_problem()
    assert "Refusing" in Settings(host="192.168.1.20").listen_problem()
    assert Settings(host="0.0.0.0", behind_tls_proxy=True).listen_problem() is None
    assert Settings(host="0.0.0.0", ssl_certfile="c.pem", ssl_keyfile="k.pem").listen_problem() is None
    with pytest.raises(ValueError):
        Settings(ssl_certfile="c.pem")
    with pytest.raises(ValueError):
        Settings(result_retention_days=31)
