"""A client that is done closes its kept-alive connections at once, rather than
leaving them open until the garbage collector finds the session."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from partcrafter_blender.remote.client import ServerClient
from partcrafter_blender.remote.engine import RemoteEngine


class KeepAliveServer:
    """Answers every GET with `{}` over HTTP/1.1 keep-alive and counts open connections."""

    def __init__(self) -> None:
        self.open = 0
        self.all_closed = threading.Event()
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle(self) -> None:
                with lock:
                    outer.open += 1
                    outer.all_closed.clear()
                try:
                    super().handle()  # serves requests until the client closes the connection
                finally:
                    with lock:
                        outer.open -= 1
                        if outer.open == 0:
                            outer.all_closed.set()

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *_args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def keep_alive() -> Iterator[KeepAliveServer]:
    srv = KeepAliveServer()
    yield srv
    srv.close()


def test_a_client_closes_its_connection_when_done(keep_alive: KeepAliveServer) -> None:
    with ServerClient(keep_alive.url, "pcs_test-key") as client:
        client.health()
        client.me()
        assert keep_alive.open == 1  # kept alive and reused while the client is in use
    assert keep_alive.all_closed.wait(10), "the connection stayed open after the client was done"


def test_an_engine_closes_its_client(keep_alive: KeepAliveServer) -> None:
    with RemoteEngine(ServerClient(keep_alive.url, "pcs_test-key"), policy_version="") as engine:
        engine.client.me()
        assert keep_alive.open == 1
    assert keep_alive.all_closed.wait(10), "the connection stayed open after the engine was done"
