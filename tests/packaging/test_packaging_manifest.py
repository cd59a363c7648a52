"""The manifest at the repository root: its promises, its wheels, and Blender's validator."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest


def test_packaging_manifest_declares_what_the_issue_requires(build_ext):
    m = build_ext.read_manifest()
    assert (m["schema_version"], m["id"], m["type"], m["name"]) == ("1.0.0", "partcrafter", "add-on", "PartCrafter")
    assert m["license"] == ["SPDX:GPL-3.0-or-later"]
    assert set(m["permissions"]) == {"files", "network"}
    assert "consent" in m["permissions"]["network"]
    assert sorted(m["platforms"]) == sorted(build_ext.PIP_PLATFORMS)
    # The claim must be one docs/blender-versions.md backs with a passing run.
    versions_doc = (build_ext.REPO / "docs" / "blender-versions.md").read_text(encoding="utf-8")
    assert f"`blender_version_min = \"{m['blender_version_min']}\"`" in versions_doc
    assert f"`blender_version_max = \"{m['blender_version_max']}\"`" in versions_doc


def test_packaging_manifest_wheels_are_what_pip_picks_for_each_platform(build_ext, resolved_wheels):
    manifest = build_ext.read_manifest()
    names = build_ext.manifest_wheel_names(manifest)
    assert all(w.startswith("./wheels/") for w in manifest["wheels"])
    assert all(
        n.startswith((f"pillow-{build_ext.PILLOW_VERSION}-cp311-cp311-", f"pillow-{build_ext.PILLOW_VERSION}-cp313-cp313-"))
        for n in names
    )
    build_ext.check_wheels(resolved_wheels, manifest)
    # One wheel per platform and Python (both Pythons Blender embeds), no extra, none missing.
    assert build_ext.PYTHONS == ("3.11", "3.13")
    assert sorted(w.name for w in resolved_wheels.values()) == sorted(names)
    assert {key: (build_ext.wheel_platforms(w.name), build_ext.wheel_python(w.name)) for key, w in resolved_wheels.items()} == {
        (platform, python): ({platform}, python) for platform, python in resolved_wheels
    }
    # Each is the very file whose hash is pinned.
    assert sorted(build_ext.WHEEL_SHA256) == sorted(names)
    for wheel in resolved_wheels.values():
        build_ext.check_hash(wheel)


def test_packaging_wheel_cache_refuses_a_file_that_is_not_the_pinned_one(build_ext, resolved_wheels, tmp_path):
    """A cached wheel that differs from the pinned hash (a truncated download, a tampered file) stops the build."""
    good = resolved_wheels[("linux-x64", "3.13")]
    bad = tmp_path / good.name
    bad.write_bytes(good.read_bytes()[:-1] + b"x")
    with pytest.raises(build_ext.BuildError, match="SHA-256 .* but .* is pinned"):
        build_ext.fetch_wheels(["linux-x64"], build_ext.read_manifest(), dest=tmp_path)
    (tmp_path / "pillow-13.0.0-cp313-cp313-linux_x86_64.whl").write_bytes(b"")
    with pytest.raises(build_ext.BuildError, match="no pinned SHA-256"):
        build_ext.check_hash(tmp_path / "pillow-13.0.0-cp313-cp313-linux_x86_64.whl")


def test_packaging_wheel_check_rejects_a_manifest_that_disagrees_with_pip(build_ext, resolved_wheels, tmp_path):
    manifest = build_ext.read_manifest()
    stale = dict(manifest, wheels=["./wheels/pillow-10.0.0-cp311-cp311-win_amd64.whl"])
    key = ("windows-x64", "3.11")
    with pytest.raises(build_ext.BuildError, match="for windows-x64 / Python 3.11, but blender_manifest.toml lists"):
        build_ext.check_wheels({key: resolved_wheels[key]}, stale)
    with pytest.raises(build_ext.BuildError, match="exactly one wheel for linux-x64 / Python 3.11"):
        build_ext.fetch_wheels(["linux-x64"], stale, dest=tmp_path)
    # A manifest without the cp313 wheel would not install in Blender 5.1+: refused, too.
    cp311_only = dict(manifest, wheels=[w for w in manifest["wheels"] if "-cp311-" in w])
    with pytest.raises(build_ext.BuildError, match="exactly one wheel for linux-x64 / Python 3.13"):
        build_ext.fetch_wheels(["linux-x64"], cp311_only, dest=tmp_path)


def test_packaging_validator_passes_on_the_staged_source(build_ext, resolved_wheels, tmp_path):
    src = build_ext.stage(tmp_path / "partcrafter", resolved_wheels)
    out = build_ext.validate(src)
    assert "Success" in out
    assert (src / "__init__.py").is_file()
    assert not list(src.rglob("__pycache__")) and not (src / "tests").exists()
    assert len(list((src / "wheels").glob("*.whl"))) == 8
    # Staging keeps the manifest as written when every platform is built.
    assert build_ext.read_manifest(src / "blender_manifest.toml") == build_ext.read_manifest()


def test_packaging_validator_is_not_a_rubber_stamp(build_ext, resolved_wheels, tmp_path):
    """A manifest Blender would refuse (over-long permission text) fails the same check."""
    key = ("linux-x64", "3.11")
    src = build_ext.stage(tmp_path / "partcrafter", {key: resolved_wheels[key]})
    manifest = src / "blender_manifest.toml"
    text = manifest.read_text(encoding="utf-8")
    manifest.write_text(re.sub(r'(?m)^network = ".*"$', 'network = "' + "x" * 80 + '"', text), encoding="utf-8")
    with pytest.raises(build_ext.BuildError, match="64 characters"):
        build_ext.validate(src)


def test_packaging_build_script_reports_bad_platform_without_traceback(build_ext):
    proc = subprocess.run(
        [sys.executable, str(Path(build_ext.__file__)), "--platform", "amiga-68k"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr and "Traceback" not in proc.stderr
