"""Encryption in transit: HTTPS served directly; plain HTTP only on loopback or behind a TLS proxy."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from partcrafter_server.settings import Settings
from server_test_support import Client, ServerProcess, png_bytes


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_serves_https_from_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
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
