"""The command line with --server: consent only by flag, nothing sent without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from partcrafter_blender.inference.glb import read_glb_file
from partcrafter_blender.remote.consent import ConsentLedger

REPO = Path(__file__).resolve().parents[2]


def run_cli(args: list[str], user_dir: Path, key: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PARTCRAFTER_USER_DIR": str(user_dir), "PARTCRAFTER_API_KEY": key}
    return subprocess.run(
        [sys.executable, "-m", "partcrafter_blender", "generate", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_headless_without_consent_flag_uploads_nothing(harness, server, proxy, user_dir: Path, tmp_path: Path) -> None:
    out = run_cli([str(harness.SAMPLE_IMAGE), "--server", proxy.url, "--glb", str(tmp_path / "o.glb")], user_dir, server.key)
    assert out.returncode != 0
    assert "Nothing was uploaded" in out.stderr and "--consent-upload" in out.stderr
    assert "Traceback" not in out.stderr and server.key not in out.stderr
    assert proxy.count() == 0 and not (tmp_path / "o.glb").exists()
    assert ConsentLedger(user_dir).entries() == []


def test_headless_with_consent_flag_generates_and_records(harness, server, proxy, user_dir: Path, tmp_path: Path) -> None:
    glb = tmp_path / "o.glb"
    out = run_cli(
        [str(harness.SAMPLE_IMAGE), "--server", proxy.url, "--consent-upload", "--parts", "3", "--quality", "draft", "--glb", str(glb), "--json"],
        user_dir,
        server.key,
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert len(summary["parts"]) == 3 and len(read_glb_file(glb)) == 3
    assert proxy.count("POST", "/v1/jobs") == 1 and proxy.count("DELETE", "/v1/jobs/") == 1  # copy deleted after import
    decisions = [(e.decision, e.via) for e in ConsentLedger(user_dir).entries()]
    assert decisions[0] == ("accepted", "--consent-upload") and decisions[1][0] == "uploaded"


def test_headless_asks_for_a_shorter_result_retention(harness, server, proxy, user_dir: Path, tmp_path: Path) -> None:
    from partcrafter_blender.remote.client import ServerClient

    glb = ["--glb", str(tmp_path / "o.glb")]  # an output in tmp_path: without one the scene lands in the repository
    args = [str(harness.SAMPLE_IMAGE), "--server", proxy.url, "--consent-upload", "--parts", "2", "--quality", "draft", *glb]
    out = run_cli([*args, "--keep-on-server", "--result-retention-minutes", "15"], user_dir, server.key)
    assert out.returncode == 0, out.stderr
    client = ServerClient(server.url, server.key)
    jobs = client.me()["jobs"]  # kept on the server: the newest one is this run's
    assert jobs[-1]["result_retention_minutes"] == 15
    client.delete_job(jobs[-1]["id"])
    refused = run_cli([*args, "--result-retention-minutes", "1"], user_dir, server.key)  # shorter than the server allows
    assert refused.returncode != 0 and "result_retention_minutes must be a whole number from 5" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_without_engine_the_servers_default_engine_runs(harness, tmp_path_factory, user_dir: Path, tmp_path: Path) -> None:
    """No --engine: the CLI names none, so the server's PARTCRAFTER_SERVER_DEFAULT_ENGINE runs,
    and the summary says which engine that was."""
    other = harness.ServerProcess(tmp_path_factory.mktemp("default-engine"), env={"PARTCRAFTER_SERVER_DEFAULT_ENGINE": "remote_slow"})
    other.start()
    try:
        out = run_cli([str(harness.SAMPLE_IMAGE), "--server", other.url, "--consent-upload", "--parts", "2",
                       "--quality", "draft", "--glb", str(tmp_path / "o.glb"), "--json"], user_dir, other.key)
    finally:
        other.stop()
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["engine"] == "remote_slow"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_each_kind_of_server_problem_has_its_own_exit_status(harness, server, proxy, user_dir: Path, tmp_path: Path) -> None:
    """Scripts can tell them apart; the statuses are the ones `generate --help` lists."""
    from partcrafter_blender.cli import EXIT_STATUSES

    image, glb = str(harness.SAMPLE_IMAGE), str(tmp_path / "o.glb")
    cases = {
        5: ([image, "--server", proxy.url, "--glb", glb], server.key),  # no --consent-upload
        6: ([image, "--server", "https://gpu.example.com", "--consent-upload", "--glb", glb], server.key),
        7: ([image, "--server", "http://gpu.example.com", "--online-mode", "--consent-upload", "--glb", glb], server.key),
        8: ([image, "--server", f"http://127.0.0.1:{_free_port()}", "--consent-upload", "--glb", glb], server.key),
        9: ([image, "--server", proxy.url, "--consent-upload", "--glb", glb], "pcs_not_a_valid_key"),
        10: ([image, "--server", proxy.url, "--consent-upload", "--engine", "remote_failing", "--glb", glb], server.key),
    }
    seen = {}
    for code, (args, key) in cases.items():
        out = run_cli(args, user_dir, key)
        seen[code] = out.returncode
        assert "Traceback" not in out.stderr and key not in out.stderr, out.stderr
    assert seen == {code: code for code in cases}, seen
    assert not Path(glb).exists()
    listed = dict(EXIT_STATUSES)
    assert all(code in listed for code in cases)
    helped = subprocess.run([sys.executable, "-m", "partcrafter_blender", "generate", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=60).stdout
    assert all(f"{code:>3}  {listed[code]}" in helped for code in cases)


def test_ledger_links_to_the_objects_by_both_hashes(harness, server, proxy, user_dir: Path, tmp_path: Path) -> None:
    """Each ledger line holds the sent PNG's SHA-256 and the original file's; the result
    carries both too, so an object can be matched with its consent entry."""
    from partcrafter_blender.inference.glb import read_glb_extras

    glb = tmp_path / "o.glb"
    out = run_cli([str(harness.SAMPLE_IMAGE), "--server", proxy.url, "--consent-upload", "--parts", "2",
                   "--quality", "draft", "--glb", str(glb), "--json"], user_dir, server.key)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    extras = read_glb_extras(glb.read_bytes())  # the provenance every part object carries
    entries = ConsentLedger(user_dir).entries()
    assert [e.decision for e in entries] == ["accepted", "uploaded"]
    for entry in entries:
        assert entry.image_sha256 == summary["image_sha256"] == extras["image_sha256"]
        assert entry.sha256 == extras["upload_sha256"] != entry.image_sha256


def test_ledger_command_prints_where_the_ledgers_are(user_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """Blender and the command line keep separate ledgers unless PARTCRAFTER_USER_DIR is set."""
    blender = tmp_path / "blender-user"
    installed = blender / "extensions" / ".user" / "user_default" / "partcrafter" / "server"
    installed.mkdir(parents=True)
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(blender), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    env.pop("PARTCRAFTER_USER_DIR")
    cmd = [sys.executable, "-m", "partcrafter_blender", "ledger", "--json"]
    found = json.loads(subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60).stdout)
    assert found == {
        "command_line": str(tmp_path / "xdg" / "partcrafter_blender" / "server" / "consent_ledger.jsonl"),
        "blender": [str(installed / "consent_ledger.jsonl")],
        "shared": False,
    }
    env["PARTCRAFTER_USER_DIR"] = str(user_dir)
    shared = json.loads(subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60).stdout)
    assert shared["shared"] and shared["command_line"] == str(user_dir / "consent_ledger.jsonl") == shared["blender"][0]
