"""The server backend in real Blender (bpy) against a real server process on loopback."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

_HARNESS = Path(__file__).resolve().parents[1] / "remote" / "remote_harness.py"
if "remote_harness" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("remote_harness", _HARNESS)
    sys.modules["remote_harness"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["remote_harness"])
harness = sys.modules["remote_harness"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    proc = harness.ServerProcess(tmp_path_factory.mktemp("bl-server")).start()
    yield proc
    proc.stop()


@pytest.fixture
def proxy(server: Any) -> Iterator[Any]:
    p = harness.FaultProxy(server.port)
    yield p
    p.close()


@pytest.fixture
def prefs(bpy_addon: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proxy: Any, server: Any) -> Iterator[Any]:
    """Backend Server, pointed at the counting proxy, with a user folder of its own."""
    monkeypatch.setenv("PARTCRAFTER_USER_DIR", str(tmp_path / "user"))
    monkeypatch.delenv("PARTCRAFTER_API_KEY", raising=False)
    p = bpy_addon.context.preferences.addons["partcrafter_blender"].preferences
    p.backend = "SERVER"
    p.server.url = proxy.url
    p.server.api_key = server.key
    p.server.engine = "relief"
    yield p
    p.server.api_key = ""
    p.server.url = ""
    p.backend = "LOCAL"


def part_names(collection: Any) -> list[str]:
    return sorted(o.name.split(".")[0] for o in collection.objects if o.type == "MESH")


def test_generate_through_the_server_like_a_local_run(scene, prefs, proxy, server, demo_image: Path) -> None:
    import bpy

    from partcrafter_blender.remote.client import ServerClient
    from partcrafter_blender.remote.consent import ConsentLedger
    from partcrafter_blender.remote.errors import JobNotFound
    from partcrafter_blender.remote.userdir import server_user_dir

    prefs.backend = "LOCAL"
    assert bpy.ops.partcrafter.generate(filepath=str(demo_image), num_parts=3, quality="draft", engine="relief") == {"FINISHED"}
    local = bpy.data.collections[-1]
    prefs.backend = "SERVER"
    # Loopback works with online access off (the bpy module has it off).
    assert not bpy.app.online_access
    assert bpy.ops.partcrafter.generate(filepath=str(demo_image), num_parts=3, quality="draft", consent_upload=True) == {"FINISHED"}
    remote = next(c for c in bpy.data.collections if c != local)
    assert remote.name.split(".")[0] == local.name  # same collection name, made unique by Blender
    assert part_names(remote) == part_names(local) and len(part_names(remote)) == 3
    obj = next(o for o in remote.objects if o.type == "MESH")
    job_id = obj["partcrafter_job_id"]
    assert obj["partcrafter_server_host"] == f"127.0.0.1:{proxy.port}"
    assert obj["partcrafter_backend"] == "server" and obj["partcrafter_engine"] == "relief"
    assert proxy.count("POST", "/v1/jobs") == 1
    # Deleted on the server after the import (default), and nothing left pending.
    with pytest.raises(JobNotFound):
        ServerClient(server.url, server.key).job(job_id)
    ledger = ConsentLedger(server_user_dir()).entries()
    assert [e.decision for e in ledger] == ["accepted", "uploaded"] and ledger[0].via == "operator property consent_upload"


def test_headless_without_consent_uploads_nothing(scene, prefs, proxy, demo_image: Path, snapshot) -> None:
    import bpy

    before = snapshot()
    with pytest.raises(RuntimeError, match="Nothing was uploaded.*consent_upload=True"):
        bpy.ops.partcrafter.generate(filepath=str(demo_image), num_parts=2)
    assert proxy.count() == 0 and snapshot() == before
    assert not bpy.context.window_manager.partcrafter_job.running


def _consent_args(proxy: Any, demo_image: Path) -> dict[str, Any]:
    from partcrafter_blender.inference.images import load_image
    from partcrafter_blender.remote.minimise import minimise_pixels

    upload = minimise_pixels(load_image(demo_image).rgba)
    return dict(
        host=f"127.0.0.1:{proxy.port}",
        server=proxy.url,
        policy_version="2025-01-13",
        policy_url="https://partcrafter.net/privacy",
        sha256=upload.sha256,
        width=upload.width,
        height=upload.height,
        size=upload.size,
        generate_args=json.dumps({"filepath": str(demo_image), "num_parts": 2, "quality": "draft"}),
    )


def test_consent_dialog_decline_sends_nothing_accept_uploads(scene, prefs, proxy, demo_image: Path, snapshot) -> None:
    import bpy

    from partcrafter_blender.remote.consent import ConsentLedger
    from partcrafter_blender.remote.userdir import server_user_dir

    before = snapshot()
    args = _consent_args(proxy, demo_image)
    assert bpy.ops.partcrafter.server_consent(decision="DECLINE", **args) == {"CANCELLED"}
    assert proxy.count() == 0 and snapshot() == before
    (entry,) = ConsentLedger(server_user_dir()).entries()
    assert (entry.decision, entry.sha256, entry.bytes) == ("declined", args["sha256"], args["size"])

    assert bpy.ops.partcrafter.server_consent(decision="ACCEPT", **args) == {"FINISHED"}
    assert proxy.count("POST", "/v1/jobs") == 1 and len(bpy.data.collections) == len(before["collections"]) + 1
    decisions = [e.decision for e in ConsentLedger(server_user_dir()).entries()]
    assert decisions == ["declined", "accepted", "uploaded"]


def test_consent_for_another_image_is_not_used(scene, prefs, proxy, demo_image: Path, snapshot) -> None:
    import bpy

    args = _consent_args(proxy, demo_image)
    args["sha256"] = hashlib.sha256(b"some other image").hexdigest()
    before = snapshot()
    with pytest.raises(RuntimeError, match="image changed"):
        bpy.ops.partcrafter.server_consent(decision="ACCEPT", **args)
    assert proxy.count("POST") == 0 and snapshot() == before


def test_online_access_off_blocks_a_remote_host(scene, prefs) -> None:
    import bpy

    prefs.server.url = "https://gpu.example.com"
    with pytest.raises(RuntimeError, match="online access is off.*--online-mode"):
        bpy.ops.partcrafter.generate(filepath="x.png", consent_upload=True)
    prefs.server.url = "http://gpu.example.com"
    with pytest.raises(RuntimeError, match="unencrypted"):
        bpy.ops.partcrafter.generate(filepath="x.png", consent_upload=True)


@pytest.mark.parametrize(
    "fault, words",
    [
        (("^POST /v1/jobs$", "status:503:queue_full:30"), r"busy or temporarily unavailable \(503, queue full\)"),
        (("^POST /v1/jobs$", "status:401:unauthorized"), "did not accept the API key"),
        (("/result$", "truncate"), "cut off"),
        (("/result$", "corrupt"), "not a usable model"),
    ],
)
def test_failures_leave_the_scene_unchanged(scene, prefs, proxy, demo_image: Path, snapshot, fault, words) -> None:
    import bpy

    proxy.faults[fault[0]] = fault[1]
    before = snapshot()
    with pytest.raises(RuntimeError, match=words):
        bpy.ops.partcrafter.generate(filepath=str(demo_image), num_parts=2, quality="draft", consent_upload=True)
    assert snapshot() == before and not bpy.context.window_manager.partcrafter_job.running


def test_refused_connection_is_explained(scene, prefs, demo_image: Path) -> None:
    import bpy

    prefs.server.url = f"http://127.0.0.1:{harness.free_port()}"
    with pytest.raises(RuntimeError, match="refused the connection"):
        bpy.ops.partcrafter.generate(filepath=str(demo_image), consent_upload=True)


def test_resume_after_restart_and_cancel_from_the_list(scene, prefs, proxy, server, demo_image: Path) -> None:
    import bpy

    from partcrafter_blender.inference import GenerationRequest
    from partcrafter_blender.inference.images import load_image
    from partcrafter_blender.remote.client import ServerClient
    from partcrafter_blender.remote.gate import ServerConfig, remote_engine
    from partcrafter_blender.remote.pending import PendingJobs
    from partcrafter_blender.remote.userdir import server_user_dir
    from partcrafter_blender.ui.server_panel import PARTCRAFTER_PT_server_jobs

    class Quit(Exception):
        pass

    def quit_blender(event: Any) -> None:
        if event.stage != "upload":
            raise Quit

    rgba = load_image(demo_image).rgba
    for _ in range(2):  # two jobs left behind by a Blender that quit
        engine = remote_engine(
            ServerClient(proxy.url, server.key), ServerConfig(url=proxy.url, engine="remote_slow"), server_user_dir(), consent_via="test"
        )
        with pytest.raises(Quit):
            engine.generate(GenerationRequest(image=rgba, image_name=demo_image.stem, num_parts=2, quality="draft"), quit_blender)
    first, second = PendingJobs(server_user_dir()).list()
    assert PARTCRAFTER_PT_server_jobs.poll(bpy.context)

    assert bpy.ops.partcrafter.server_resume(job_id=first.job_id, server=first.server) == {"FINISHED"}
    obj = next(o for o in bpy.data.objects if o.type == "MESH")
    assert obj["partcrafter_job_id"] == first.job_id and obj.users_collection[0].name == demo_image.stem

    assert bpy.ops.partcrafter.server_cancel_job(job_id=second.job_id, server=second.server) == {"FINISHED"}
    assert proxy.count("POST", f"/v1/jobs/{second.job_id}/cancel") == 1
    assert PendingJobs(server_user_dir()).list() == []
    assert ServerClient(server.url, server.key).job(second.job_id).status in ("canceled", "running")


def test_my_data_export_and_delete_everything(scene, prefs, proxy, server, tmp_path: Path, demo_image: Path) -> None:
    import zipfile

    import bpy

    from partcrafter_blender.operators.server_data import my_data
    from partcrafter_blender.remote.client import ServerClient

    prefs.server.keep_on_server = True
    try:
        assert bpy.ops.partcrafter.generate(filepath=str(demo_image), num_parts=2, quality="draft", consent_upload=True) == {"FINISHED"}
    finally:
        prefs.server.keep_on_server = False
    assert bpy.ops.partcrafter.server_my_data() == {"FINISHED"}
    assert my_data[proxy.url]["jobs"]
    archive = tmp_path / "mine.zip"
    assert bpy.ops.partcrafter.server_export(filepath=str(archive)) == {"FINISHED"}
    with zipfile.ZipFile(archive) as zf:
        assert "metadata.json" in zf.namelist() and any(n.startswith("results/") for n in zf.namelist())
    assert bpy.ops.partcrafter.server_delete_all() == {"FINISHED"}
    me = ServerClient(server.url, server.key).me()
    assert me["jobs"] == [] and me["stored_bytes"] == 0


def test_api_key_is_never_written_into_a_blend_file(scene, prefs, server, tmp_path: Path) -> None:
    import bpy

    from partcrafter_blender.remote.keystore import KEY_FILE
    from partcrafter_blender.remote.userdir import server_user_dir

    assert prefs.server.api_key == server.key  # readable through the preferences field...
    key_file = server_user_dir() / KEY_FILE
    assert key_file.stat().st_mode & 0o777 == 0o600  # ...stored in a file only the user can read
    blend = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), compress=False)
    assert server.key.encode() not in blend.read_bytes()
    assert "api_key" not in prefs.server.keys()  # no ID property holds it (userpref.blend stays clean)
