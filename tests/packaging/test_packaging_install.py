"""Install the built zip into a throw-away Blender user folder and use it the way a user's
Blender would: no repository checkout importable, Pillow only from the bundled wheel.

bpy reads BLENDER_USER_RESOURCES once, when it is imported, so the install runs in a fresh
interpreter. Blender's online access is off in the bpy module; installing from a file works.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_INSTALL = r"""
import importlib.machinery, json, sys

zip_path, site_dir, image_path = sys.argv[1:4]


class UsersBlender:
    # The dev environment can import the checkout (editable install) and has its own
    # Pillow; a user's Blender has neither, so the extension must bring and use its own.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "partcrafter_blender":
            raise ModuleNotFoundError(f"No module named {name!r} (the repository is not on a user's sys.path)")
        if name == "PIL":
            spec = importlib.machinery.PathFinder.find_spec(name, [site_dir])
            if spec is None:
                raise ModuleNotFoundError("PIL is not in the extension's site-packages")
            return spec
        return None


sys.meta_path.insert(0, UsersBlender())
import bpy

result = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
module = "bl_ext.user_default.partcrafter"
op = bpy.ops.partcrafter.generate.get_rna_type()  # KeyError when the operator is not registered

# The default engine, run from the installed files on a real image decoded by the bundled Pillow.
inference = __import__(module + ".inference", fromlist=["*"])
images = __import__(module + ".inference.images", fromlist=["*"])
loaded = images.load_image(image_path)
engine = inference.create_engine()
outcome = engine.generate(inference.GenerationRequest(image=loaded.rgba, image_name=loaded.name, num_parts=2))

# What a user does: the operator, from the installed extension, on the image file.
generated = bpy.ops.partcrafter.generate(filepath=image_path, num_parts=2)
stem = image_path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
objects = sorted(o.name for o in bpy.data.collections[stem].objects if o.type == "MESH")

import PIL, PIL._imaging
print("RESULT " + json.dumps({
    "generated": sorted(generated),
    "objects": objects,
    "result": sorted(result),
    "enabled": module in bpy.context.preferences.addons.keys(),
    "operator": op.identifier,
    "extension_file": sys.modules[module].__file__,
    "pil_file": PIL.__file__,
    "pil_imaging": PIL._imaging.__file__,
    "engine": outcome.engine,
    "parts": [[len(p.vertices), len(p.faces)] for p in outcome.parts],
}))
"""


def _site_packages(user_dir: Path) -> Path:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return user_dir / "extensions" / ".local" / "lib" / version / "site-packages"


def test_packaging_built_zip_installs_enables_and_runs_on_its_own(linux_zip, example_image, tmp_path):
    user_dir = tmp_path / "blender-user"
    user_dir.mkdir()
    site = _site_packages(user_dir)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["BLENDER_USER_RESOURCES"] = str(user_dir)
    proc = subprocess.run(
        [sys.executable, "-c", _INSTALL, str(linux_zip), str(site), str(example_image)],
        cwd=user_dir, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    info = json.loads(lines[-1][len("RESULT ") :])

    assert info["result"] == ["FINISHED"]
    assert info["enabled"]
    assert info["operator"] == "PARTCRAFTER_OT_generate"
    assert Path(info["extension_file"]) == user_dir / "extensions" / "user_default" / "partcrafter" / "__init__.py"
    # Blender unpacked the bundled wheel into the extensions' site-packages, and that is the Pillow in use.
    assert list(site.glob("pillow-*.dist-info"))
    assert Path(info["pil_file"]) == site / "PIL" / "__init__.py"
    # ... built for this Blender's Python: cp311 in 4.2-5.0, cp313 in 5.1 and newer.
    tag = f"cpython-{sys.version_info.major}{sys.version_info.minor}-"
    assert Path(info["pil_imaging"]).name.startswith(f"_imaging.{tag}"), info["pil_imaging"]
    assert [p.name for p in site.glob("pillow-*.dist-info")] == ["pillow-13.0.0.dist-info"]
    assert info["engine"] == "relief"
    stem = example_image.stem
    assert info["generated"] == ["FINISHED"]
    assert info["objects"] == [f"{stem}.part_01", f"{stem}.part_02"]
    assert info["parts"] and all(v > 0 and f > 0 for v, f in info["parts"])
