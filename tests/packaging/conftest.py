"""Fixtures for the extension packaging tests: the build script as a module and one built zip."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = (REPO / ".." / "shared").resolve()


def _load_build_script() -> ModuleType:
    path = REPO / "scripts" / "build_extension.py"
    spec = importlib.util.spec_from_file_location("partcrafter_build_extension", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def build_ext() -> ModuleType:
    return _load_build_script()


@pytest.fixture(scope="session")
def linux_zip(build_ext: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The linux-x64 extension zip, built once for the whole session."""
    (zip_path,) = build_ext.build(tmp_path_factory.mktemp("dist"), platforms=["linux-x64"])
    return zip_path


@pytest.fixture(scope="session")
def resolved_wheels(build_ext: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """The wheel pip picks for every manifest platform and Python, resolved offline from the wheel cache
    (./wheels/, filled and hash-checked by `./dev setup`), so the tests need no registry."""
    manifest = build_ext.read_manifest()
    build_ext.fetch_wheels(manifest["platforms"], manifest)  # a no-op once the cache is full
    dest = tmp_path_factory.mktemp("wheels")
    return {
        (platform, python): build_ext.resolve_wheel(platform, python, dest, find_links=build_ext.WHEELS)
        for python in build_ext.PYTHONS  # the manifest's order
        for platform in manifest["platforms"]
    }


@pytest.fixture(scope="session")
def example_image() -> Path:
    """A 3-part example render from ../shared/images (the teapot)."""
    path = SHARED / "images" / "np3_7ba4129133dc46d0818930adb53c0315.png"
    assert path.is_file(), f"missing example image {path} (the `shared` folder sits next to the checkout)"
    return path
