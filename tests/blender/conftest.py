"""Real Blender (the `bpy` module) for the tests in this folder.

bpy can be imported once per process: it is imported lazily by the `bpy_addon`
fixture, which enables the add-on from the source tree through Blender's own add-on
manager (so AddonPreferences exist), registers the fixture engines, and disables the
add-on at the end of the session. `scene` gives each test an empty scene.

The scene is reset with read_homefile(use_empty=True, use_factory_startup=True):
read_factory_settings would also reset the preferences and so disable the add-on.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = (REPO / ".." / "shared").resolve()
IMAGES = SHARED / "images"
HERE = Path(__file__).resolve().parent
DEMO_IMAGE = IMAGES / "np3_c25308e36b3a4c6d9745e01fb34a93a1.png"

for path in (str(REPO), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

# Blender's per-user folders (config, extension user files) go to a throw-away place,
# never into the home of whoever runs the tests. Must be set before bpy is imported.
os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="partcrafter-blender-user-")
atexit.register(shutil.rmtree, os.environ["BLENDER_USER_RESOURCES"], True)


@pytest.fixture(scope="session")
def bpy_addon() -> Iterator[Any]:
    import bpy  # first: it puts Blender's bundled modules (addon_utils) on sys.path

    import addon_utils
    import blender_fixture_engines

    def raise_error(exc: BaseException) -> None:
        raise exc

    module = addon_utils.enable("partcrafter_blender", default_set=True, handle_error=raise_error)
    assert module is not None, "the add-on did not enable"
    blender_fixture_engines.register_all()
    yield bpy
    addon_utils.disable("partcrafter_blender", default_set=True, handle_error=raise_error)


@pytest.fixture
def scene(bpy_addon: Any) -> Iterator[Any]:
    bpy = bpy_addon
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    yield bpy.context.scene


@pytest.fixture
def demo_image() -> Path:
    assert DEMO_IMAGE.is_file(), f"missing example image {DEMO_IMAGE}"
    return DEMO_IMAGE


@pytest.fixture
def snapshot(bpy_addon: Any) -> Callable[[], dict[str, list[str]]]:
    """Every datablock name an import could add, to prove that nothing changed."""

    def take() -> dict[str, list[str]]:
        return {
            kind: sorted(block.name for block in getattr(bpy_addon.data, kind))
            for kind in ("objects", "meshes", "materials", "collections", "images")
        }

    return take
