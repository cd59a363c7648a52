"""The built linux-x64 zip: Blender's validator accepts it and it holds only what it should."""

from __future__ import annotations

import tomllib
import zipfile


def test_packaging_zip_passes_blenders_validator(build_ext, linux_zip):
    assert linux_zip.name == f"partcrafter-{build_ext.read_manifest()['version']}-linux_x64.zip"
    assert "Success" in build_ext.validate(linux_zip)


def test_packaging_zip_holds_its_platform_wheel_only_and_no_tests_or_caches(build_ext, linux_zip):
    names = zipfile.ZipFile(linux_zip).namelist()
    wheels = [n for n in names if n.endswith(".whl")]
    linux = "manylinux_2_27_x86_64.manylinux_2_28_x86_64"
    assert sorted(wheels) == [
        f"wheels/pillow-{build_ext.PILLOW_VERSION}-{abi}-{abi}-{linux}.whl" for abi in ("cp311", "cp313")
    ]
    assert "__init__.py" in names and "blender_manifest.toml" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or n.split("/")[0] == "tests"]
    # Every module of the add-on package is in the zip, at the zip's root.
    package = build_ext.PACKAGE
    expected = {
        p.relative_to(package).as_posix()
        for p in package.rglob("*.py")
        if "__pycache__" not in p.parts and "tests" not in p.relative_to(package).parts
    }
    assert expected <= set(names)


def test_packaging_zip_manifest_is_narrowed_to_its_platform(linux_zip):
    with zipfile.ZipFile(linux_zip) as zf:
        manifest = tomllib.loads(zf.read("blender_manifest.toml").decode("utf-8"))
    assert manifest["build"]["generated"]["platforms"] == ["linux-x64"]
    assert len(manifest["build"]["generated"]["wheels"]) == 2  # cp311 and cp313
