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


def job_ids(me: dict[str, Any]) -> list[str]:
    return [j["id"] for j in me["jobs"]]


def record_job_slot(proxy: Any) -> list[tuple[str, str, bool]]:
    """(method, path, was a PartCrafter job running) for every request the proxy sees:
    a request made from a job's work runs on the worker thread when a person clicked."""
    from partcrafter_blender import job_runner

    seen: list[tuple[str, str, bool]] = []
    proxy.on_request = lambda method, path: seen.append((method, path, job_runner.active() is not None))
    return seen


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


def test_ledger_entries_and_part_objects_share_both_hashes(scene, prefs, proxy, demo_image: Path) -> None:
    """An object links to its consent entry: the original file's SHA-256 and the sent PNG's."""
    import bpy

    from partcrafter_blender.inference.images import load_image
    from partcrafter_blender.remote.consent import ConsentLedger
    from partcrafter_blender.remote.userdir import server_user_dir

    args = _consent_args(proxy, demo_image)
    args["image_sha256"] = load_image(demo_image).sha256  # what the consent check passes on to the dialog
    assert bpy.ops.partcrafter.server_consent(decision="ACCEPT", **args) == {"FINISHED"}
    accepted, uploaded = ConsentLedger(server_user_dir()).entries()[-2:]
    parts = [o for o in bpy.data.objects if o.type == "MESH"]
    assert parts
    for obj in parts:
        assert obj["partcrafter_image_sha256"] == accepted.image_sha256 == uploaded.image_sha256
        assert obj["partcrafter_upload_sha256"] == accepted.sha256 == uploaded.sha256


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
    assert proxy.count("DELETE", f"/v1/jobs/{second.job_id}") == 1  # erased too: copies are not kept
    assert PendingJobs(server_user_dir()).list() == []
    assert second.job_id not in job_ids(ServerClient(server.url, server.key).me())
    assert "erased" in bpy.context.window_manager.partcrafter_job.last_result


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
    seen = record_job_slot(proxy)
    assert bpy.ops.partcrafter.server_my_data() == {"FINISHED"}
    assert my_data[proxy.url]["jobs"]
    archive = tmp_path / "mine.zip"
    assert bpy.ops.partcrafter.server_export(filepath=str(archive)) == {"FINISHED"}
    with zipfile.ZipFile(archive) as zf:
        assert "metadata.json" in zf.namelist() and any(n.startswith("results/") for n in zf.namelist())
    assert bpy.ops.partcrafter.server_delete_all() == {"FINISHED"}
    # Every request was made from inside a job (the worker thread, interactively).
    assert seen == [("GET", "/v1/me", True), ("GET", "/v1/me/export", True), ("DELETE", "/v1/me", True)]
    state = bpy.context.window_manager.partcrafter_job
    assert not state.running and state.last_result.startswith("Deleted")
    assert proxy.url not in my_data
    me = ServerClient(server.url, server.key).me()
    assert me["jobs"] == [] and me["stored_bytes"] == 0


def test_my_data_correct_restrict_and_object_from_the_panel(scene, prefs, proxy, server, demo_image: Path, snapshot) -> None:
    import bpy

    from partcrafter_blender.operators.server_data import my_data, summary
    from partcrafter_blender.remote.client import ServerClient

    seen = record_job_slot(proxy)
    assert bpy.ops.partcrafter.server_my_data() == {"FINISHED"}
    assert bpy.ops.partcrafter.server_correct(label="Studio laptop", contact="artist@example.com") == {"FINISHED"}
    assert my_data[proxy.url]["key"]["contact"] == "artist@example.com"  # the panel shows the answer
    assert "Label: Studio laptop   Contact: artist@example.com" in summary(my_data[proxy.url])
    on_server = ServerClient(server.url, server.key).me()
    assert (on_server["key"]["label"], on_server["key"]["contact"]) == ("Studio laptop", "artist@example.com")

    assert bpy.ops.partcrafter.server_restrict(restrict=True) == {"FINISHED"}
    assert "Processing restricted: no new job is accepted or started" in summary(my_data[proxy.url])
    before = snapshot()
    try:
        with pytest.raises(RuntimeError, match="You restricted processing on .*nothing was uploaded"):
            bpy.ops.partcrafter.generate(filepath=str(demo_image), num_parts=2, quality="draft", consent_upload=True)
        assert snapshot() == before and not bpy.context.window_manager.partcrafter_job.running
    finally:
        assert bpy.ops.partcrafter.server_restrict(restrict=False) == {"FINISHED"}
    assert my_data[proxy.url]["processing_restricted"] is False

    assert bpy.ops.partcrafter.server_object(objecting=True) == {"FINISHED"}
    assert ServerClient(server.url, server.key).me()["analytics_objection"] is True
    assert bpy.ops.partcrafter.server_object(objecting=False) == {"FINISHED"}
    state = bpy.context.window_manager.partcrafter_job
    assert state.last_result.startswith("Objection withdrawn") and not state.running
    patches = [(m, p, in_job) for m, p, in_job in seen if m == "PATCH"]
    assert len(patches) == 5 and all(in_job for _, _, in_job in patches)  # each one from inside a job


def test_consent_dialog_offers_a_shorter_result_retention(scene, prefs, proxy, server, demo_image: Path) -> None:
    import bpy

    from partcrafter_blender.remote.client import ServerClient

    args = _consent_args(proxy, demo_image)
    prefs.server.keep_on_server = True
    try:
        assert bpy.ops.partcrafter.server_consent(decision="ACCEPT", result_retention="HOUR", **args) == {"FINISHED"}
        assert prefs.server.result_retention == "HOUR"  # the choice stays for the next upload
        jobs = ServerClient(server.url, server.key).me()["jobs"]
        assert jobs[-1]["result_retention_minutes"] == 60
    finally:
        prefs.server.keep_on_server = False
        prefs.server.result_retention = "SERVER"
        ServerClient(server.url, server.key).delete_me()


def test_export_does_not_replace_an_existing_file_unless_told(scene, prefs, proxy, tmp_path: Path) -> None:
    import zipfile

    import bpy

    archive = tmp_path / "mine.zip"
    archive.write_bytes(b"an older export the user wants to keep")
    with pytest.raises(RuntimeError, match="already exists; nothing was downloaded.*overwrite=True"):
        bpy.ops.partcrafter.server_export(filepath=str(archive))
    assert archive.read_bytes() == b"an older export the user wants to keep"
    assert proxy.count("GET", "/v1/me/export") == 0  # refused before anything was asked
    assert not (tmp_path / "mine.zip.part").exists()
    assert bpy.ops.partcrafter.server_export(filepath=str(archive), overwrite=True) == {"FINISHED"}
    with zipfile.ZipFile(archive) as zf:
        assert "metadata.json" in zf.namelist()


def test_data_requests_cancel_and_fail_without_getting_stuck(scene, prefs, proxy, tmp_path: Path) -> None:
    import bpy

    from partcrafter_blender import job_runner

    state = bpy.context.window_manager.partcrafter_job
    proxy.on_request = lambda method, path: job_runner.cancel_active() if path == "/v1/me/export" else None
    out = tmp_path / "out"
    out.mkdir()
    assert bpy.ops.partcrafter.server_export(filepath=str(out / "mine.zip")) == {"CANCELLED"}
    assert list(out.iterdir()) == [] and not state.running  # no archive, no partial file
    assert state.last_result.startswith("Export cancelled; nothing was saved")
    prefs.server.api_key = "pcs_not-a-valid-key-0123456789"
    with pytest.raises(RuntimeError, match="did not accept the API key"):
        bpy.ops.partcrafter.server_my_data()
    assert not state.running and job_runner.active() is None


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


@pytest.fixture
def dialogs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, bool, dict[str, Any]]]:
    """The consent dialog needs a person at a window: record what it would show instead."""
    from partcrafter_blender.operators import server_consent

    shown: list[tuple[Any, bool, dict[str, Any]]] = []

    def show(_context: Any, question: Any, ask_every_time: bool, args: dict[str, Any]) -> set[str]:
        shown.append((question, ask_every_time, args))
        return {"FINISHED"}

    monkeypatch.setattr(server_consent, "open_consent_dialog", show)
    return shown


def test_consent_check_reads_the_policy_inside_a_job_then_asks(scene, prefs, proxy, server, demo_image: Path, dialogs) -> None:
    import bpy

    from partcrafter_blender.inference.images import load_image
    from partcrafter_blender.remote.client import ServerClient
    from partcrafter_blender.remote.consent import ConsentLedger
    from partcrafter_blender.remote.minimise import minimise_pixels
    from partcrafter_blender.remote.userdir import server_user_dir

    args = {"filepath": str(demo_image), "num_parts": 2, "quality": "draft"}
    seen = record_job_slot(proxy)
    assert bpy.ops.partcrafter.server_consent_check(generate_args=json.dumps(args)) == {"FINISHED"}
    # Only the policy was fetched, from inside the job (the worker thread when a person clicked).
    assert seen == [("GET", "/v1/policy", True)]
    ((question, ask_every_time, dialog_args),) = dialogs
    assert question.policy.version == ServerClient(server.url).policy().version
    assert question.upload.sha256 == minimise_pixels(load_image(demo_image).rgba).sha256
    assert (ask_every_time, dialog_args) == (False, args)
    assert ConsentLedger(server_user_dir()).entries() == [] and not bpy.context.window_manager.partcrafter_job.running

    upload = question.upload
    answer = dict(host=question.host, server=question.server, policy_version=question.policy.version, sha256=upload.sha256)
    answer.update(width=upload.width, height=upload.height, size=upload.size, generate_args=json.dumps(dialog_args))
    assert bpy.ops.partcrafter.server_consent(decision="ACCEPT", **answer) == {"FINISHED"}
    assert proxy.count("POST", "/v1/jobs") == 1

    # A standing consent: the check goes straight on to generate, without a dialog.
    assert bpy.ops.partcrafter.server_consent_check(generate_args=json.dumps(args)) == {"FINISHED"}
    assert len(dialogs) == 1 and proxy.count("POST", "/v1/jobs") == 2
    assert len([c for c in bpy.data.collections if c.name.startswith(demo_image.stem)]) == 2
    assert [e.decision for e in ConsentLedger(server_user_dir()).entries()] == ["accepted", "uploaded", "uploaded"]


def test_consent_check_cancelled_or_unreachable_sends_nothing(scene, prefs, proxy, demo_image: Path, dialogs, snapshot) -> None:
    import bpy

    from partcrafter_blender import job_runner

    state = bpy.context.window_manager.partcrafter_job
    args = json.dumps({"filepath": str(demo_image), "num_parts": 2})
    before = snapshot()
    proxy.on_request = lambda method, path: job_runner.cancel_active() if path == "/v1/policy" else None
    assert bpy.ops.partcrafter.server_consent_check(generate_args=args) == {"CANCELLED"}
    assert dialogs == [] and proxy.count("POST") == 0 and not state.running and snapshot() == before

    prefs.server.url = f"http://127.0.0.1:{harness.free_port()}"
    with pytest.raises(RuntimeError, match="refused the connection"):
        bpy.ops.partcrafter.server_consent_check(generate_args=args)
    with pytest.raises(RuntimeError, match="no image named 'missing'"):
        bpy.ops.partcrafter.server_consent_check(generate_args=json.dumps({"image_name": "missing"}))
    assert dialogs == [] and not state.running and job_runner.active() is None and snapshot() == before


@pytest.mark.parametrize("keep", [False, True], ids=["erase", "keep"])
def test_cancel_stops_and_erases_the_job_on_the_server(scene, prefs, proxy, server, demo_image: Path, snapshot, keep: bool) -> None:
    import bpy

    from partcrafter_blender import job_runner
    from partcrafter_blender.remote.client import ServerClient
    from partcrafter_blender.remote.pending import PendingJobs
    from partcrafter_blender.remote.userdir import server_user_dir

    prefs.server.engine = "remote_slow"  # still running when the first poll comes
    prefs.server.keep_on_server = keep
    polls: list[str] = []

    def cancel_at_first_poll(method: str, path: str) -> None:
        if method == "GET" and path.startswith("/v1/jobs/") and not polls:
            polls.append(path.rsplit("/", 1)[-1])
            job_runner.cancel_active()  # what Esc or the Cancel button do

    proxy.on_request = cancel_at_first_poll
    before = snapshot()
    try:
        result = bpy.ops.partcrafter.generate(filepath=str(demo_image), num_parts=2, quality="draft", consent_upload=True)
    finally:
        prefs.server.keep_on_server = False
    assert result == {"CANCELLED"} and snapshot() == before
    (job_id,) = polls
    state = bpy.context.window_manager.partcrafter_job
    assert not state.running and PendingJobs(server_user_dir()).list() == []
    assert proxy.count("POST", f"/v1/jobs/{job_id}/cancel") == 1
    me = ServerClient(server.url, server.key).me()
    if keep:
        assert proxy.count("DELETE") == 0 and job_id in job_ids(me) and "keeps it" in state.last_result
    else:
        assert proxy.count("DELETE", f"/v1/jobs/{job_id}") == 1 and "erased" in state.last_result
        assert job_id not in job_ids(me)  # the server holds nothing for it any more


def test_generate_with_the_interface_checks_consent_before_sending(scene, prefs, proxy, demo_image: Path, dialogs, monkeypatch) -> None:
    import bpy

    from partcrafter_blender import server_backend

    monkeypatch.setattr(server_backend, "interactive", lambda _context: True)  # as if a person clicked Generate
    seen = record_job_slot(proxy)
    assert bpy.ops.partcrafter.generate(filepath=str(demo_image), num_parts=2, seed=5) == {"CANCELLED"}
    assert seen == [("GET", "/v1/policy", True)] and not bpy.context.window_manager.partcrafter_job.running
    ((question, _, args),) = dialogs
    assert question.host == f"127.0.0.1:{proxy.port}"
    assert (args["filepath"], args["num_parts"], args["seed"]) == (str(demo_image), 2, 5)


def test_data_panel_offers_the_rights_for_the_state_the_server_reported(scene, prefs, proxy) -> None:
    """Blender cannot make a UILayout without a window, so the panel draws into a recorder here."""
    import bpy
    from types import SimpleNamespace

    from partcrafter_blender.operators.server_data import my_data
    from partcrafter_blender.ui.server_panel import PARTCRAFTER_PT_server_data

    class Recorder:
        def __init__(self) -> None:
            self.ops: list[tuple[str, str, SimpleNamespace]] = []
            self.labels: list[str] = []

        def label(self, text: str = "", icon: str = "") -> None:
            self.labels.append(text)

        def operator(self, idname: str, text: str = "", icon: str = "") -> SimpleNamespace:
            props = SimpleNamespace()
            self.ops.append((idname, text, props))
            return props

        def row(self, align: bool = False) -> "Recorder":
            return self

        column = row

    def draw() -> Recorder:
        layout = Recorder()
        PARTCRAFTER_PT_server_data.draw(SimpleNamespace(layout=layout), bpy.context)
        return layout

    my_data.pop(proxy.url, None)
    assert [op for op, _, _ in draw().ops] == [
        "partcrafter.server_my_data",
        "partcrafter.server_export",
        "partcrafter.server_delete_all",
    ]  # nothing known yet: refresh first
    assert bpy.ops.partcrafter.server_my_data() == {"FINISHED"}
    assert bpy.ops.partcrafter.server_restrict(restrict=True) == {"FINISHED"}
    try:
        ops = {op: (text, props) for op, text, props in draw().ops}
        assert ops["partcrafter.server_restrict"][0] == "Lift the Restriction"
        assert ops["partcrafter.server_restrict"][1].restrict is False
        assert ops["partcrafter.server_object"][1].objecting is True
        assert "partcrafter.server_correct" in ops
    finally:
        assert bpy.ops.partcrafter.server_restrict(restrict=False) == {"FINISHED"}
