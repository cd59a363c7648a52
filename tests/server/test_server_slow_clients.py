"""Slow and greedy clients against a real server process, over raw sockets on 127.0.0.1."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Iterator

import pytest
from server_test_support import Client, ServerProcess, png_bytes

HEADER_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(
        tmp_path_factory.mktemp("guarded"),
        env={"PARTCRAFTER_SERVER_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S), "PARTCRAFTER_SERVER_MAX_BODY_BYTES": "4096"},
    )
    server.start()
    yield server
    server.stop()


def _connect(server: ServerProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=30)


def _closed_after(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset ends it too)."""
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except ConnectionResetError:
        pass
    return got


def test_slow_header_lines_are_closed_after_the_header_timeout(guarded: ServerProcess) -> None:
    socks = [_connect(guarded) for _ in range(5)]
    started = time.monotonic()
    for s in socks:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    deadline = started + 4 * HEADER_TIMEOUT_S
    open_socks = list(socks)
    while open_socks and time.monotonic() < deadline:  # one header line a second, as a slowloris does
        for s in list(open_socks):
            try:
                s.sendall(b"X-Slow: 1\r\n")
            except OSError:
                open_socks.remove(s)
        time.sleep(1.0)
    for s in socks:
        s.settimeout(max(0.1, deadline - time.monotonic()))
        assert _closed_after(s) == b""  # closed, not answered
        s.close()
    assert HEADER_TIMEOUT_S <= time.monotonic() - started < 4 * HEADER_TIMEOUT_S
    assert guarded.healthy()


def test_an_idle_connection_is_closed_after_the_header_timeout(guarded: ServerProcess) -> None:
    with _connect(guarded) as s:
        started = time.monotonic()
        assert _closed_after(s) == b""
        assert HEADER_TIMEOUT_S - 0.1 <= time.monotonic() - started < 3 * HEADER_TIMEOUT_S  # timed from the accept


def _send_head(server: ServerProcess, header_bytes: int) -> bytes:
    """A GET whose X-Big header has this many bytes; what came back before the connection ended."""
    with _connect(server) as s:
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * header_bytes + b"\r\n\r\n")
            return _closed_after(s)
        except (ConnectionResetError, BrokenPipeError):  # closed while our bytes were still being sent
            return b""


def test_a_huge_header_is_refused(guarded: ServerProcess) -> None:
    assert _send_head(guarded, 20_000).startswith(b"HTTP/1.1 431 ")  # just over max_header_bytes (16 KiB)
    assert not _send_head(guarded, 1_000_000).startswith(b"HTTP/1.1 200")  # 1 MB: refused or cut off, never served
    assert _send_head(guarded, 8_000).startswith(b"HTTP/1.1 200 ")  # under the limit: served
    assert guarded.healthy()


def _patch_me_started(server: ServerProcess, framing: bytes, body_start: bytes) -> bytes:
    """A PATCH /v1/me whose body is only begun; the answer, which must come without the rest of the body."""
    with _connect(server) as s:
        s.sendall(
            b"PATCH /v1/me HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + server.new_key().encode()
            + b"\r\nContent-Type: application/json\r\n" + framing + b"\r\n\r\n" + body_start
        )
        s.settimeout(5)
        return _closed_after(s)


def test_an_oversize_patch_body_is_refused_before_it_is_read(guarded: ServerProcess) -> None:
    answer = _patch_me_started(guarded, b"Content-Length: 10000000", b'{"label": "')  # 10 MB announced
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:80]
    assert b"max_body_bytes" in answer and b"application/problem+json" in answer


def test_a_chunked_body_off_the_upload_route_needs_a_length(guarded: ServerProcess) -> None:
    answer = _patch_me_started(guarded, b"Transfer-Encoding: chunked", b'5\r\n{"lab\r\n')
    assert answer.startswith(b"HTTP/1.1 411 "), answer[:80]


def test_ordinary_requests_and_an_upload_over_max_body_bytes_still_work(guarded: ServerProcess) -> None:
    c = Client(guarded, guarded.new_key())
    try:
        assert c.http.patch("/v1/me", json={"label": "studio"}).status_code == 200
        image = png_bytes((256, 256), seed=71, compress_level=0)
        assert len(image) > 4096  # the upload keeps its own limit, max_upload_bytes
        assert c.wait(c.submit(image).json()["id"])["status"] == "succeeded"
    finally:
        c.close()


def test_connections_beyond_max_connections_get_503(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, env={"PARTCRAFTER_SERVER_MAX_CONNECTIONS": "3"})
    server.start()
    held = [_connect(server) for _ in range(3)]
    try:
        time.sleep(0.3)
        with _connect(server) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            s.settimeout(5)
            assert s.recv(65536).startswith(b"HTTP/1.1 503 ")
    finally:
        for s in held:
            s.close()
        server.stop()


def _nginx_size(value: str) -> int:
    units = {"k": 1024, "m": 1024 * 1024}
    return int(value[:-1]) * units[value[-1]] if value[-1] in units else int(value)


def test_nginx_example_matches_the_settings() -> None:
    from partcrafter_server.settings import Settings

    conf = (Path(__file__).resolve().parents[2] / "docs" / "examples" / "nginx-partcrafter.conf").read_text()
    directives: dict[str, list[list[str]]] = {}
    for line in conf.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.endswith(";"):
            name, *args = line[:-1].split()
            directives.setdefault(name, []).append(args)
    s = Settings()
    assert directives["client_header_timeout"] == [[f"{s.header_timeout_s:g}s"]]
    assert directives["client_body_timeout"] == [[f"{s.request_timeout_s:g}s"]]
    ((count, size),) = directives["large_client_header_buffers"]
    assert _nginx_size(size) == s.max_header_bytes
    upload, me = (_nginx_size(a[0]) for a in directives["client_max_body_size"])
    assert s.max_upload_bytes < upload <= s.max_upload_bytes + 2 * 1024 * 1024
    assert me == s.max_body_bytes
    assert all(_seconds(a[0]) > s.request_timeout_s for a in directives["proxy_read_timeout"])
    assert {a[0] for a in directives["proxy_pass"]} == {f"http://{s.host}:{s.port}"}
    assert conf.count("{") == conf.count("}")


def _seconds(value: str) -> float:
    return float(value.removesuffix("s"))
