"""A headless `bpy` script as a pipeline TD writes one, in its own process: progress on
stdout, throttled, and Ctrl+C (SIGINT) cancelling cleanly with the scene unchanged."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DEMO = (REPO / ".." / "shared" / "images" / "np3_c25308e36b3a4c6d9745e01fb34a93a1.png").resolve()

SCRIPT = """
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import bpy, addon_utils
addon_utils.enable("partcrafter_blender", default_set=True)
import blender_fixture_engines
blender_fixture_engines.register_all()
bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
before = sorted(o.name for o in bpy.data.objects), sorted(c.name for c in bpy.data.collections)
error = None
try:
    result = sorted(bpy.ops.partcrafter.generate(filepath=sys.argv[3], engine=sys.argv[4], num_parts=2))
except RuntimeError as exc:
    result, error = None, str(exc)
after = sorted(o.name for o in bpy.data.objects), sorted(c.name for c in bpy.data.collections)
print("SUMMARY " + json.dumps({"result": result, "error": error, "unchanged": before == after,
                               "objects": len(bpy.data.objects), "running": bpy.context.window_manager.partcrafter_job.running}))
"""


def start(tmp_path: Path, engine: str) -> subprocess.Popen:
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "user"), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-c", SCRIPT, str(REPO), str(HERE), str(DEMO), engine]
    return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def summary(stdout: str) -> dict:
    (line,) = [l for l in stdout.splitlines() if l.startswith("SUMMARY ")]
    return json.loads(line.removeprefix("SUMMARY "))


def progress_lines(stdout: str) -> list[str]:
    return [l for l in stdout.splitlines() if re.match(r"PartCrafter: Generating parts: \[ *\d+%\]", l)]


@pytest.mark.skipif(os.name != "posix", reason="SIGINT to a child process")
def test_ctrl_c_cancels_a_headless_script_cleanly_and_progress_is_throttled(tmp_path):
    proc = start(tmp_path, "slow")
    try:
        for line in proc.stderr:
            if "SLOW-ENGINE-STARTED" in line:
                break
        # The slow engine reports progress every 10 ms: in this time it sends a hundred events or more.
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=50)  # the engine would give up and return parts after 60 s
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    result = summary(out)
    assert result["result"] is None and "Cancelled by Ctrl+C" in result["error"]
    assert result["unchanged"] and result["objects"] == 0 and not result["running"]
    lines = progress_lines(out)
    assert 1 <= len(lines) <= 8, lines  # one per stage, else one a second
    assert any("Waiting to be cancelled" in l for l in lines)
    assert "KeyboardInterrupt" not in err


def test_headless_run_prints_progress_to_stdout(tmp_path):
    proc = start(tmp_path, "relief")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    result = summary(out)
    assert result["result"] == ["FINISHED"] and result["objects"] == 3  # the parent empty and two parts
    lines = progress_lines(out)
    assert lines and lines[-1].endswith("Done")
    stages = [l for l in lines if "%]" in l]
    assert len(stages) <= 20


def _documented_snippets() -> list[str]:
    """The Python blocks of docs/blender-extension.md's "Enabling the extension" section."""
    text = (REPO / "docs" / "blender-extension.md").read_text(encoding="utf-8")
    start = text.index("## Enabling the extension in a script")
    section = text[start : text.index("\n## ", start + 1)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_enabling_from_a_script_as_documented(tmp_path):
    zip_install, checkout, online = _documented_snippets()
    assert "package_install_files" in zip_install  # run by tests/packaging with a built zip
    script = "\n".join([
        checkout.replace("/path/to/partcrafter-blender", str(REPO)),
        "print('BEFORE', bpy.app.online_access)",
        online,
        "import json",
        "print('SUMMARY ' + json.dumps({'operator': bpy.ops.partcrafter.generate.get_rna_type().identifier,",
        "    'enabled': 'partcrafter_blender' in bpy.context.preferences.addons.keys(),",
        "    'online': bpy.app.online_access}))",
    ])  # fmt: skip
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "user")}
    env.pop("PYTHONPATH", None)  # only what the snippet puts on sys.path
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "BEFORE False" in proc.stdout  # off until the script turns it on, as the docs say
    assert summary(proc.stdout) == {
        "operator": "PARTCRAFTER_OT_generate", "enabled": True, "online": True,
    }  # fmt: skip
