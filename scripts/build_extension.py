"""Build the installable Blender extension zips, one per platform, with Blender's own tool.

    python scripts/build_extension.py [--out dist] [--platform linux-x64 ...]

The manifest lives at the repository root and the add-on code in partcrafter_blender/,
so both are staged into a temporary folder (without tests and caches) together with the
Pillow wheels, and `blender_ext.py build --split-platforms` runs there. Wheels missing from
./wheels/ are downloaded with pip, and pip's file name must be the one the manifest lists. blender_ext.py
ships inside the bpy wheel and runs with plain Python; no Blender binary is needed.

Importable: `build(out_dir, platforms=None) -> list[Path]`.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "blender_manifest.toml"
PACKAGE = REPO / "partcrafter_blender"
WHEELS = REPO / "wheels"

# The one Pillow the extension bundles; the manifest's `wheels` must name exactly its files.
PILLOW_VERSION = "13.0.0"
# Blender platform -> the pip --platform tag that selects the matching cp311 wheel.
PIP_PLATFORMS = {
    "linux-x64": "manylinux_2_28_x86_64",
    "windows-x64": "win_amd64",
    "macos-arm64": "macosx_11_0_arm64",
    "macos-x64": "macosx_10_13_x86_64",
}
_EXCLUDE = shutil.ignore_patterns("__pycache__", "*.pyc", "tests", ".pytest_cache")


class BuildError(Exception):
    """Something a person must fix before the extension can be built; the message says what."""


def bpy_scripts_dir() -> Path:
    """`<site-packages>/bpy/<major.minor>/scripts` of the installed bpy wheel, found without importing bpy."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        raise BuildError("The bpy module is not installed in this Python; install it with `pip install bpy==4.5.4`.")
    found = sorted(Path(spec.origin).parent.glob("[0-9]*.[0-9]*/scripts"))
    if not found:
        raise BuildError(f"No Blender scripts folder inside {Path(spec.origin).parent}.")
    return found[-1]


def blender_ext_path() -> Path:
    path = bpy_scripts_dir() / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
    if not path.is_file():
        raise BuildError(f"Blender's extension tool is missing: {path}")
    return path


def valid_tags_path() -> Path:
    return bpy_scripts_dir() / "modules" / "_bpy_internal" / "extensions" / "tags.py"


def read_manifest(path: Path = MANIFEST) -> dict:
    with path.open("rb") as fh:
        return tomllib.load(fh)


def manifest_wheel_names(manifest: dict) -> list[str]:
    return [Path(w).name for w in manifest.get("wheels", [])]


def run_blender_ext(*args: str) -> str:
    """Run blender_ext.py; return its output, raise BuildError with that output when it fails."""
    cmd = [sys.executable, str(blender_ext_path()), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise BuildError(f"blender_ext.py {args[0]} failed:\n{output}")
    return output


def validate(path: Path) -> str:
    """Blender's validator on a staged source folder or a built zip."""
    return run_blender_ext("validate", "--valid-tags", str(valid_tags_path()), str(path))


def resolve_wheel(platform: str, dest: Path) -> Path:
    """Download the pinned Pillow wheel pip picks for `platform` into `dest` and return it."""
    if platform not in PIP_PLATFORMS:
        raise BuildError(f"Unknown platform '{platform}'. Choose from: {', '.join(PIP_PLATFORMS)}.")
    with tempfile.TemporaryDirectory(prefix="pc-wheel-") as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
            "--platform", PIP_PLATFORMS[platform], "--python-version", "3.11",
            "--implementation", "cp", "--abi", "cp311",
            "--dest", tmp, f"Pillow=={PILLOW_VERSION}",
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or len(got) != 1:
            raise BuildError(f"Could not download Pillow {PILLOW_VERSION} for {platform}:\n{proc.stderr.strip()}")
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(got[0], dest / got[0].name))


def wheel_platforms(filename: str) -> set[str]:
    """Blender platforms a wheel file serves, from its platform tag (the last dash field)."""
    tag = filename.removesuffix(".whl").split("-")[-1]
    found = set()
    for part in tag.split("."):
        if part.startswith("manylinux") and part.endswith("x86_64"):
            found.add("linux-x64")
        elif part == "win_amd64":
            found.add("windows-x64")
        elif part.startswith("macosx_"):
            if part.endswith(("_arm64", "_universal2")):
                found.add("macos-arm64")
            if part.endswith(("_x86_64", "_universal2")):
                found.add("macos-x64")
    return found


def check_wheels(resolved: dict[str, Path], manifest: dict) -> None:
    """The wheel pip picks for each platform must be exactly the file the manifest lists for it."""
    listed = manifest_wheel_names(manifest)
    for platform, wheel in resolved.items():
        if wheel.name not in listed:
            raise BuildError(
                f"pip picked {wheel.name} for {platform}, but blender_manifest.toml lists {listed}. "
                "Update the manifest's `wheels` (or PILLOW_VERSION) so they agree."
            )


def fetch_wheels(platforms: list[str], manifest: dict, dest: Path = WHEELS) -> dict[str, Path]:
    """Each platform's wheel: the manifest's file from `dest` when already there (names are
    pinned to the version), else downloaded with pip and checked against the manifest."""
    wheels: dict[str, Path] = {}
    for platform in platforms:
        listed = [n for n in manifest_wheel_names(manifest) if platform in wheel_platforms(n)]
        if len(listed) != 1:
            raise BuildError(f"blender_manifest.toml must list exactly one wheel for {platform}, found {listed}.")
        cached = dest / listed[0]
        if cached.is_file():
            wheels[platform] = cached
            continue
        resolved = {platform: resolve_wheel(platform, dest)}
        check_wheels(resolved, manifest)
        wheels.update(resolved)
    return wheels


def _replace_array(text: str, key: str, values: list[str]) -> str:
    body = "".join(f'  "{v}",\n' for v in values)
    new, count = re.subn(rf"(?ms)^{key} = \[.*?\]", f"{key} = [\n{body}]", text)
    if count != 1:
        raise BuildError(f"blender_manifest.toml must have exactly one `{key} = [...]` array.")
    return new


def stage(dest: Path, wheels: dict[str, Path]) -> Path:
    """Lay out manifest + add-on package + the given platforms' wheels as one extension source folder."""
    shutil.copytree(PACKAGE, dest, ignore=_EXCLUDE)
    text = MANIFEST.read_text(encoding="utf-8")
    # A one-platform build lists only that platform and its wheel; blender_ext needs every listed wheel.
    text = _replace_array(text, "platforms", list(wheels))
    text = _replace_array(text, "wheels", [f"./wheels/{w.name}" for w in wheels.values()])
    (dest / "blender_manifest.toml").write_text(text, encoding="utf-8")
    (dest / "wheels").mkdir()
    for wheel in wheels.values():
        shutil.copy2(wheel, dest / "wheels" / wheel.name)
    return dest


def build(out_dir: str | Path, platforms: list[str] | None = None) -> list[Path]:
    """Build one zip per platform (all manifest platforms by default) into `out_dir`; return their paths."""
    manifest = read_manifest()
    platforms = list(platforms or manifest["platforms"])
    unknown = [p for p in platforms if p not in manifest["platforms"]]
    if unknown:
        raise BuildError(f"Platform(s) {unknown} are not in the manifest's platforms {manifest['platforms']}.")
    wheels = fetch_wheels(platforms, manifest)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pc-ext-") as tmp:
        src = stage(Path(tmp) / manifest["id"], wheels)
        validate(src)
        run_blender_ext(
            "build", "--split-platforms", "--valid-tags", str(valid_tags_path()),
            "--source-dir", str(src), "--output-dir", str(out),
        )  # fmt: skip
    version = manifest["version"]
    zips = [out / f"{manifest['id']}-{version}-{p.replace('-', '_')}.zip" for p in platforms]
    missing = [z.name for z in zips if not z.is_file()]
    if missing:
        raise BuildError(f"blender_ext.py did not produce {missing} in {out}.")
    return zips


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "dist"), help="output folder (default: dist/)")
    parser.add_argument(
        "--platform", action="append", choices=sorted(PIP_PLATFORMS), help="build only this platform (repeatable)"
    )
    args = parser.parse_args(argv)
    try:
        for path in build(args.out, args.platform):
            print(path)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
