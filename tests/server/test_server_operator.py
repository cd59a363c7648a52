"""An operator's daily use: the commands and messages a new operator meets first."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
from partcrafter_server.app import create_app
from partcrafter_server.settings import Settings
from server_test_support import ISSUED_KEYS, Client, ServerProcess


def _run(srv: ServerProcess, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "partcrafter_server", *args],
        env={**srv.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_settings_prints_the_effective_configuration_and_its_sources(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "srv")
    config = tmp_path / "server.toml"
    config.write_text("result_retention_days = 3\nmax_queue = 7\n")
    out = _run(
        srv,
        "settings",
        "--config",
        str(config),
        "--data-dir",
        str(tmp_path / "elsewhere"),
        env={"PARTCRAFTER_SERVER_MAX_QUEUE": "9"},
    )
    assert out.returncode == 0, out.stderr
    lines = {line.split(" = ")[0]: line for line in out.stdout.splitlines() if " = " in line}
    assert lines["data_dir"] == f'data_dir = "{tmp_path / "elsewhere"}"  # command line'
    assert lines["result_retention_days"] == f"result_retention_days = 3.0  # config file {config}"
    assert lines["max_queue"] == "max_queue = 9  # environment PARTCRAFTER_SERVER_MAX_QUEUE"  # env wins over the file
    assert lines["max_steps"] == "max_steps = 200  # default"
    reference = _run(srv, "settings", "--reference")
    assert reference.stdout.startswith("| Setting | Environment variable | Default | Meaning |")


def test_port_zero_prints_the_bound_port_and_a_second_server_says_one_line(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path)
    first = subprocess.Popen(
        [sys.executable, "-m", "partcrafter_server", "serve", "--port", "0"],
        env=srv.env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = ""
        for line in first.stderr:  # type: ignore[union-attr]
            if "PartCrafter server on" in line:
                break
        port = int(re.search(r"http://127\.0\.0\.1:(\d+) ", line).group(1))  # type: ignore[union-attr]
        assert port != 0
        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise AssertionError("the printed port does not answer")

        second = _run(srv, "serve", "--port", "0")
        assert second.returncode != 0
        assert second.stderr.strip().splitlines() == [
            f"Another partcrafter-server is already serving {srv.data_dir}; one server per data folder."
        ]
    finally:
        first.terminate()
        first.wait(20)


def test_keys_list_shows_ids_labels_and_dates_never_a_secret(server: ServerProcess) -> None:
    key = server.cli("keys", "create", "--holder-is-13-or-older", "--label", "Render farm").stdout.strip()
    ISSUED_KEYS.append(key)  # the final scan checks no log holds it
    key_id, secret = key.split("_")[1], key.split("_", 2)[2]
    Client(server, key).http.get("/v1/me")
    table = server.cli("keys", "list").stdout
    row = next(line for line in table.splitlines() if line.startswith(key_id))
    assert "Render farm" in row and "active" in row and "never" not in row  # last used: just now
    assert table.splitlines()[0].split() == ["id", "label", "created", "last", "used", "state"]
    rows = json.loads(server.cli("keys", "list", "--json").stdout)
    mine = next(r for r in rows if r["id"] == key_id)
    assert set(mine) == {"id", "label", "created_at", "last_used_at", "revoked_at"} and mine["last_used_at"]
    for text in (table, json.dumps(rows)):
        assert secret not in text and key not in text


def test_engine_messages_name_the_servers_settings(client: Client, sample_png: bytes) -> None:
    r = client.submit(sample_png, {"engine": "partcrafter"})
    detail = r.json()["detail"]
    assert r.status_code == 422 and "weights_dir" in detail and "PARTCRAFTER_SERVER_WEIGHTS_DIR" in detail
    assert "add-on" not in detail and "PARTCRAFTER_WEIGHTS " not in detail
    unknown = client.submit(sample_png, {"engine": "nope"}).json()["detail"]
    offered = unknown.split("This server offers: ")[1].rstrip(".").split(", ")
    assert "partcrafter" not in offered and "instant" in offered  # only what can run now


def test_refused_types_are_named_with_the_right_article(client: Client) -> None:
    said = {
        "ICO": client.submit(b"\x00\x00\x01\x00" + b"\x00" * 64).json()["detail"],
        "SVG": client.submit(b'<svg xmlns="http://www.w3.org/2000/svg"/>').json()["detail"],
        "GIF": client.submit(b"GIF89a" + b"\x00" * 64).json()["detail"],
    }
    assert said["ICO"].startswith("The upload is an ICO file.")
    assert said["SVG"].startswith("The upload is an SVG file.")
    assert said["GIF"].startswith("The upload is a GIF file.")


def test_swagger_ui_is_off_by_default_the_schema_stays(server: ServerProcess, tmp_path: Path) -> None:
    assert httpx.get(f"{server.url}/docs").status_code == 404
    assert httpx.get(f"{server.url}/redoc").status_code == 404
    assert httpx.get(f"{server.url}/openapi.json").json()["info"]["title"] == "PartCrafter server"
    assert create_app(Settings(data_dir=tmp_path, engine_plugins=[], api_docs=True)).docs_url == "/docs"
