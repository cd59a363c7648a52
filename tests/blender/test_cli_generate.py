"""`python -m partcrafter_blender generate` as a subprocess: real bpy, real files."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from partcrafter_blender.inference.glb import read_glb_extras, read_glb_file, read_glb_texture

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DEMO = (REPO / ".." / "shared" / "images" / "np3_c25308e36b3a4c6d9745e01fb34a93a1.png").resolve()

# The real entry point, with the test engines registered first (they are not built in).
WITH_TEST_ENGINES = (
    "import sys; sys.path[:0] = [sys.argv.pop(1), sys.argv.pop(1)];"
    "import blender_fixture_engines; blender_fixture_engines.register_all();"
    "from partcrafter_blender.cli import main; sys.exit(main(sys.argv[1:]))"
)


def cli(*args: str, cwd: Path, test_engines: bool = False, timeout: float = 120) -> subprocess.CompletedProcess:
    if test_engines:
        cmd = [sys.executable, "-c", WITH_TEST_ENGINES, str(REPO), str(HERE), *args]
    else:
        cmd = [sys.executable, "-m", "partcrafter_blender", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def assert_clean_failure(proc: subprocess.CompletedProcess, code: int, message: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def test_generate_writes_blend_and_glb_and_json(tmp_path):
    proc = cli(
        "generate", str(DEMO), "--parts", "4", "--seed", "3", "--engine", "fixed",
        "--out", "out/demo.blend", "--glb", "out/demo.glb", "--json",
        cwd=tmp_path, test_engines=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, "stdout holds the JSON line only"
    summary = json.loads(lines[0])
    names = [f"{DEMO.stem}.part_{i:02d}" for i in range(1, 5)]
    assert summary["collection"] == DEMO.stem
    assert [p["name"] for p in summary["parts"]] == names
    assert {(p["vertices"], p["faces"]) for p in summary["parts"]} == {(8, 12)}
    assert summary["engine"] == "fixed" and summary["seconds"] >= 0
    blend = tmp_path / "out" / "demo.blend"
    # Blender 5.0 writes zstd-compressed .blend files; earlier versions plain ones.
    assert blend.read_bytes()[:7] == b"BLENDER" or blend.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    glb_parts = read_glb_file(tmp_path / "out" / "demo.glb")
    assert [p.name for p in glb_parts] == names
    assert all(len(p.vertices) == 8 and len(p.faces) == 12 for p in glb_parts)
    extras = read_glb_extras((tmp_path / "out" / "demo.glb").read_bytes())
    assert (extras["seed"], extras["requested_parts"], extras["max_triangles"]) == (3, 4, 0)


def test_triangle_budget_reaches_the_engine_and_the_provenance(tmp_path):
    proc = cli(
        "generate", str(DEMO), "--parts", "2", "--engine", "fixed", "--max-triangles", "5000", "--glb", "out.glb",
        cwd=tmp_path, test_engines=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "fixed engine got max_triangles=5000" in proc.stderr
    assert read_glb_extras((tmp_path / "out.glb").read_bytes())["max_triangles"] == 5000


@pytest.mark.parametrize(
    ("make", "code", "message"),
    [
        (lambda d: d / "missing.png", 2, "Image file not found"),
        (lambda d: _write(d / "notes.png", b"just some text, not pixels"), 2, "is not a PNG, JPEG or WEBP image"),
        (lambda d: _write(d / "empty.png", b""), 2, "is empty (0 bytes)"),
        (lambda d: _write(d / "huge.png", png_header_only(20000, 20000)), 2, "is 20000x20000 pixels"),
        (lambda d: d, 2, "Expected an image file but got a folder"),
    ],
)
def test_bad_images_fail_clearly(tmp_path, make, code, message):
    proc = cli("generate", str(make(tmp_path)), "--engine", "fixed", cwd=tmp_path, test_engines=True)
    assert_clean_failure(proc, code, message)
    assert not list(tmp_path.glob("*.blend"))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--engine", "no_such_engine"], 3, "Unknown engine 'no_such_engine'"),
        (["--engine", "unavailable"], 3, "needs hardware this machine does not have"),
        (["--engine", "failing"], 4, "The test engine failed on purpose."),
        (["--engine", "crashing"], 1, "Unexpected error (ZeroDivisionError"),
        (["--engine", "fixed", "--parts", "17"], 2, "--parts must be from 1 to 16 (or auto), got 17"),
        (["--engine", "fixed", "--parts", "many"], 2, "expected a number or 'auto', got 'many'"),
        (["--engine", "fixed", "--out", "scene.txt"], 2, "must end in .blend"),
        (["--engine", "fixed", "--size", "0"], 2, "--size must be positive"),
        (["--engine", "fixed", "--steps", "0"], 2, "--steps must be from 1 to 200, got 0"),
        (["--engine", "fixed", "--steps", "201"], 2, "--steps must be from 1 to 200, got 201"),
        (["--engine", "fixed", "--guidance", "-1"], 2, "--guidance must be from 0 to 20, got -1"),
        (["--engine", "fixed", "--guidance", "20.5"], 2, "--guidance must be from 0 to 20, got 20.5"),
        (["--engine", "fixed", "--seed", "-3"], 2, "--seed must be from 0 to 4294967295, got -3"),
        (["--engine", "fixed", "--max-triangles", "-1"], 2, "--max-triangles must be from 0 to 10000000, got -1"),
    ],
)
def test_engine_and_argument_failures_fail_clearly(tmp_path, args, code, message):
    proc = cli("generate", str(DEMO), *args, cwd=tmp_path, test_engines=True)
    assert_clean_failure(proc, code, message)


def test_ctrl_c_cancels_cleanly(tmp_path):
    cmd = [sys.executable, "-c", WITH_TEST_ENGINES, str(REPO), str(HERE), "generate", str(DEMO), "--engine", "slow"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if "SLOW-ENGINE-STARTED" in line:
                break
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "Cancelled by the user." in rest and "Traceback" not in rest
    assert not list(tmp_path.glob("*.blend"))


def test_readme_job_with_relief(tmp_path):
    """The README's main job, with the real default engine."""
    proc = cli(
        "generate", str(DEMO), "--parts", "3", "--out", "out/demo.blend", "--glb", "out/demo.glb", "--json",
        cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["engine"] == "relief"
    assert 1 <= len(summary["parts"]) <= 3
    assert all(p["vertices"] > 0 and p["faces"] > 0 for p in summary["parts"])
    assert (tmp_path / "out" / "demo.blend").is_file()
    glb_parts = read_glb_file(tmp_path / "out" / "demo.glb")
    assert [p.name for p in glb_parts] == [p["name"] for p in summary["parts"]]
    # The relief preview's picture travels in the GLB, with every part's UVs.
    assert read_glb_texture((tmp_path / "out" / "demo.glb").read_bytes()) is not None
    assert all(p.uvs is not None and len(p.uvs) == len(p.vertices) for p in glb_parts)


def test_script_form_as_blender_runs_it(tmp_path):
    """`blender --background --python partcrafter_blender/cli.py -- generate ...` runs the
    file as a script with its arguments after "--"; the bpy module runs it the same way."""
    script = REPO / "partcrafter_blender" / "cli.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--", "generate", str(tmp_path / "missing.png")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert_clean_failure(proc, 2, "Image file not found")
    proc = subprocess.run(
        [sys.executable, str(script), "--", "generate", str(DEMO), "--parts", "2", "--json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["collection"] == DEMO.stem
    assert (tmp_path / f"{DEMO.stem}.blend").is_file()


def test_non_blender_modules_import_without_bpy(tmp_path):
    code = (
        "import sys\n"
        "import partcrafter_blender, partcrafter_blender.inference, partcrafter_blender.generation\n"
        "import partcrafter_blender.job_runner, partcrafter_blender.cli, partcrafter_blender.scene.sources\n"
        "assert 'bpy' not in sys.modules, 'bpy was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_explode_reaches_the_blend_and_the_glb(tmp_path):
    proc = cli(
        "generate", str(DEMO), "--parts", "3", "--engine", "fixed", "--explode", "1", "--out", "e.blend",
        "--glb", "e.glb", cwd=tmp_path, test_engines=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    flat = cli("generate", str(DEMO), "--parts", "3", "--engine", "fixed", "--glb", "f.glb", cwd=tmp_path,
               test_engines=True)
    assert flat.returncode == 0, flat.stderr
    exploded, generated = read_glb_file(tmp_path / "e.glb"), read_glb_file(tmp_path / "f.glb")
    centres = [p.vertices.mean(axis=0) for p in exploded]
    assert all(np.linalg.norm(p.vertices.mean(axis=0) - q.vertices.mean(axis=0)) > 0.1 for p, q in zip(exploded, generated))
    assert len({tuple(np.round(c, 3)) for c in centres}) == 3
    bad = cli("generate", str(DEMO), "--engine", "fixed", "--explode", "-1", cwd=tmp_path, test_engines=True)
    assert_clean_failure(bad, 2, "--explode must be 0 or more, got -1.0")


def test_variants_from_the_command_line_give_one_glb_node_per_seed(tmp_path):
    proc = cli(
        "generate", str(DEMO), "--parts", "3", "--seed", "8", "--variants", "2", "--quality", "draft",
        "--max-triangles", "3000", "--glb", "out.glb", "--json",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[0])
    assert summary["collection"] == f"{DEMO.stem} variants" and summary["variant_seeds"] == [8, 9]
    assert len(summary["parts"]) == 6 and max(p["faces"] for p in summary["parts"]) <= 3000
    data = (tmp_path / "out.glb").read_bytes()
    parts = read_glb_file(tmp_path / "out.glb")
    assert [p.variant for p in parts] == [0, 0, 0, 1, 1, 1]
    assert read_glb_extras(data)["variant_seeds"] == [8, 9]
    assert "Variant 2 of 2 (seed 9)" in proc.stderr  # one progress line-up for both
    exploded = cli(
        "generate", str(DEMO), "--parts", "3", "--seed", "8", "--variants", "2", "--quality", "draft",
        "--max-triangles", "3000", "--explode", "1", "--glb", "exploded.glb", cwd=tmp_path,
    )  # fmt: skip
    assert exploded.returncode == 0, exploded.stderr
    moved = read_glb_file(tmp_path / "exploded.glb")
    assert [p.variant for p in moved] == [0, 0, 0, 1, 1, 1]  # each variant has its own explode rig
    assert all(np.linalg.norm(p.vertices.mean(axis=0) - q.vertices.mean(axis=0)) > 0.1 for p, q in zip(moved, parts))


def test_variants_out_of_range_are_refused_by_the_flag(tmp_path):
    assert_clean_failure(cli("generate", str(DEMO), "--variants", "9", cwd=tmp_path), 2, "--variants must be from 1 to 8")


def test_part_names_agree_in_objects_properties_and_glb_nodes_with_a_gap(tmp_path):
    """A failed second part leaves part_01 and part_03 everywhere: never renumbered."""
    proc = cli(
        "generate", str(DEMO), "--parts", "3", "--engine", "gappy", "--out", "o.blend", "--glb", "o.glb", "--json",
        cwd=tmp_path, test_engines=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    names = [f"{DEMO.stem}.part_01", f"{DEMO.stem}.part_03"]
    assert [p["name"] for p in summary["parts"]] == names
    assert summary["failed_parts"] == [{"index": 1, "reason": "no surface"}]
    assert [p.name for p in read_glb_file(tmp_path / "o.glb")] == names
    script = (
        "import bpy, json, sys; bpy.ops.wm.open_mainfile(filepath=sys.argv[1]);"
        "print(json.dumps(sorted([o.name, o['partcrafter_part_name']] for o in bpy.data.objects if o.type == 'MESH')))"
    )
    shown = subprocess.run([sys.executable, "-c", script, str(tmp_path / "o.blend")], capture_output=True, text=True, timeout=120)
    assert json.loads(shown.stdout.splitlines()[-1]) == [[n, n.rsplit(".", 1)[1]] for n in names]


def _documented(bullet: str) -> list[str]:
    """The backticked values of one bullet of docs/gpu-engine.md's preferences list."""
    text = (REPO / "docs" / "gpu-engine.md").read_text(encoding="utf-8")
    start = text.index(f"- **{bullet}**")
    end = text.index("\n- **", start + 1)
    return re.findall(r"`([^`\s]+)`", text[start:end])


def test_every_documented_device_is_accepted_and_others_are_refused():
    from partcrafter_blender.cli import build_parser

    values = [v.replace("N", "1") for v in _documented("Device") if not v.startswith(("--", "PARTCRAFTER"))]
    assert {"auto", "cpu", "cuda", "cuda:1"} <= set(values)
    for value in values:
        assert build_parser().parse_args(["generate", "x.png", "--device", value]).device == value
    for bad in ("gpu", "cuda:", "cuda:x", "mps"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["generate", "x.png", "--device", bad])


PIPELINE = (REPO / ".." / "shared" / "conformance" / "partcrafter" / "pipeline").resolve()


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="the in-process engine needs torch in this Python")
@pytest.mark.parametrize(
    ("device", "dtype", "message"),
    [
        # A GPU number reaches the engine, which says why it cannot use it here.
        ("cuda:7", "auto", "Device 'cuda:7' was requested"),
        # The documented rule: the CPU runs float32 only, and a half dtype is refused with a message.
        ("cpu", "float16", "On the CPU the engine runs in float32 only"),
    ],
)
def test_device_and_dtype_behave_as_documented(tmp_path, device, dtype, message):
    env = {**os.environ, "PYTHONPATH": str(REPO), "PARTCRAFTER_WEIGHTS": str(PIPELINE)}
    cmd = [sys.executable, "-m", "partcrafter_blender", "generate", str(DEMO), "--engine", "partcrafter",
           "--device", device, "--dtype", dtype, "--steps", "1", "--engine-option", "num_tokens=64"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert_clean_failure(proc, 3, message)


def test_glb_holds_what_the_blend_holds_scaled_placed_and_y_up(tmp_path):
    """--size and the placement (centred, standing on the ground) reach the GLB too, in
    glTF's Y-up metres: the same vertices as the .blend's objects in world space."""
    proc = cli(
        "generate", str(DEMO), "--parts", "3", "--engine", "fixed", "--size", "3",
        "--out", "o.blend", "--glb", "o.glb", cwd=tmp_path, test_engines=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    import numpy as np

    parts = read_glb_file(tmp_path / "o.glb")
    points = np.concatenate([p.vertices for p in parts]).astype(np.float64)
    lo, hi = points.min(axis=0), points.max(axis=0)
    assert (hi - lo).max() == pytest.approx(3.0, abs=1e-4)  # --size metres across
    assert lo[1] == pytest.approx(0.0, abs=1e-5)  # standing on the ground (glTF's Y is up)
    assert (lo[0] + hi[0]) / 2 == pytest.approx(0.0, abs=1e-5) and (lo[2] + hi[2]) / 2 == pytest.approx(0.0, abs=1e-5)
    script = (
        "import bpy, json, sys; bpy.ops.wm.open_mainfile(filepath=sys.argv[1]);"
        "objs = sorted((o for o in bpy.data.objects if o.type == 'MESH'), key=lambda o: o['partcrafter_part_index']);"
        "print(json.dumps([[o.name, [list(o.matrix_world @ v.co) for v in o.data.vertices]] for o in objs]))"
    )
    shown = subprocess.run([sys.executable, "-c", script, str(tmp_path / "o.blend")], capture_output=True, text=True, timeout=120)
    blend = json.loads(shown.stdout.splitlines()[-1])
    assert [p.name for p in parts] == [name for name, _ in blend]
    for part, (_, world) in zip(parts, blend):
        world = np.array(world)
        np.testing.assert_allclose(part.vertices, np.stack([world[:, 0], world[:, 2], -world[:, 1]], 1), atol=1e-5)


@pytest.mark.parametrize(
    ("engine", "words"),
    [
        ("partcrafter", ["Unknown engine option 'dense_dept' (did you mean 'dense_depth'?)", "num_tokens, dense_depth"]),
        ("relief", ["Unknown engine option 'dense_dept'", "it knows: object_triangle_budget, triangle_budget"]),
    ],
)
def test_unknown_engine_options_are_refused_with_the_known_ones(tmp_path, engine, words):
    proc = cli("generate", str(DEMO), "--engine", engine, "--engine-option", "dense_dept=5", cwd=tmp_path)
    for text in words:
        assert_clean_failure(proc, 2, text)
    assert not list(tmp_path.iterdir())


def test_engine_options_are_refused_with_a_server(tmp_path):
    proc = cli("generate", str(DEMO), "--server", "http://127.0.0.1:9", "--engine-option", "num_tokens=64", cwd=tmp_path)
    assert_clean_failure(proc, 2, "--engine-option is not sent to a server")
