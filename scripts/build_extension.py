"""Build the installable Blender extension zips, one per platform, with Blender's own tool.

    python scripts/build_extension.py [--out dist] [--platform linux-x64 ...]
    python scripts/build_extension.py --fetch      # only fill and verify the wheel cache

The manifest lives at the repository root and the add-on code in partcrafter_blender/,
so both are staged into a temporary folder (without tests and caches) together with the
Pillow wheels, and `blender_ext.py build --split-platforms` runs there. Each zip holds its
platform's Pillow for both Pythons Blender embeds: cp311 (Blender 4.2-5.0) and cp313 (5.1+);
Blender installs the one that matches. Wheels are cached in ./wheels/ (git-ignored) and checked
against the SHA-256 hashes pinned below, so only the first run needs the package registry.
blender_ext.py ships inside the bpy wheel and runs with plain Python; no Blender binary is needed.

Importable: `build(out_dir, platforms=None) -> list[Path]`, `fetch_wheels(platforms, manifest)`.
"""

from __future__ import annotations

import argparse
import hashlib
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
# The Pythons Blender embeds: 3.11 in Blender 4.2-5.0, 3.13 in Blender 5.1 and newer.
PYTHONS = ("3.11", "3.13")
# Blender platform -> the pip --platform tag that selects the matching wheel.
PIP_PLATFORMS = {
    "linux-x64": "manylinux_2_28_x86_64",
    "windows-x64": "win_amd64",
    "macos-arm64": "macosx_11_0_arm64",
    "macos-x64": "macosx_10_13_x86_64",
}
# What the registry served for Pillow 13.0.0; a cached or downloaded file must match byte for byte.
WHEEL_SHA256 = {
    "pillow-13.0.0-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl":
        "a625df9a2a5597fa5e5266e01aefc82604bb85d291e3547981e863560d75da6c",
    "pillow-13.0.0-cp311-cp311-win_amd64.whl": "d7710eb676e9bb68965cb045be0d333b4c0d7f9dfbaa7fbf121385b1588683d3",
    "pillow-13.0.0-cp311-cp311-macosx_11_0_arm64.whl":
        "37290fbef0c73e2d51d594eb78fded7dc7170d1c3ad0a890269e6fd8c8c4e061",
    "pillow-13.0.0-cp311-cp311-macosx_10_10_x86_64.whl":
        "6f38f3f885a09cafc93fd667b1173a92f379e43785d635e7983c893f0da319fb",
    "pillow-13.0.0-cp313-cp313-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl":
        "5f56499c1a74d2b862beb0c33b8016f99d095858455df9d21583bbbc1c15b582",
    "pillow-13.0.0-cp313-cp313-win_amd64.whl": "9dda0788a9932776a75d8bcc020076edc308ce2508b51f6739a45e3158b3fc42",
    "pillow-13.0.0-cp313-cp313-macosx_11_0_arm64.whl":
        "f11a3c1358bb3c68012a7b1f41b223c3db9f7bfde90b481df028cfe1c3363313",
    "pillow-13.0.0-cp313-cp313-macosx_10_13_x86_64.whl":
        "ef5fe6b7db3f501c56000ba8fe7c7e1a35ca1d45824fbeb95a67daa85cff4dbe",
}  # fmt: skip
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


def _abi(python: str) -> str:
    return "cp" + python.replace(".", "")


def resolve_wheel(platform: str, python: str, dest: Path, find_links: Path | None = None) -> Path:
    """The pinned Pillow wheel pip picks for `platform` and `python`, copied into `dest`.

    From the package registry, or with `find_links` from that folder only (no network)."""
    if platform not in PIP_PLATFORMS:
        raise BuildError(f"Unknown platform '{platform}'. Choose from: {', '.join(PIP_PLATFORMS)}.")
    if python not in PYTHONS:
        raise BuildError(f"Unknown Python '{python}'. Blender embeds {', '.join(PYTHONS)}.")
    source = ["--no-index", "--find-links", str(find_links)] if find_links else []
    with tempfile.TemporaryDirectory(prefix="pc-wheel-") as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", *source,
            "--platform", PIP_PLATFORMS[platform], "--python-version", python,
            "--implementation", "cp", "--abi", _abi(python),
            "--dest", tmp, f"Pillow=={PILLOW_VERSION}",
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or len(got) != 1:
            raise BuildError(
                f"Could not download Pillow {PILLOW_VERSION} for {platform} / Python {python} "
                f"(the first build needs the package registry):\n{proc.stderr.strip()}"
            )
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


def wheel_python(filename: str) -> str:
    """The Python a CPython wheel is for, from its ABI tag: cp313 -> "3.13"."""
    abi = filename.removesuffix(".whl").split("-")[-2]
    match = re.fullmatch(r"cp(\d)(\d+)", abi)
    if not match:
        raise BuildError(f"{filename} is not a CPython wheel for one Python version (ABI tag {abi}).")
    return f"{match[1]}.{match[2]}"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_hash(path: Path) -> None:
    """The wheel must be the very file pinned in WHEEL_SHA256."""
    want = WHEEL_SHA256.get(path.name)
    if want is None:
        raise BuildError(f"{path.name} has no pinned SHA-256 in WHEEL_SHA256 ({Path(__file__).name}).")
    got = sha256(path)
    if got != want:
        raise BuildError(f"{path} has SHA-256 {got}, but {want} is pinned. Delete it to download it again.")


def check_wheels(resolved: dict[tuple[str, str], Path], manifest: dict) -> None:
    """The wheel pip picks for each (platform, Python) must be exactly the file the manifest lists for it."""
    listed = manifest_wheel_names(manifest)
    for (platform, python), wheel in resolved.items():
        if wheel.name not in listed:
            raise BuildError(
                f"pip picked {wheel.name} for {platform} / Python {python}, but blender_manifest.toml lists "
                f"{listed}. Update the manifest's `wheels` (or PILLOW_VERSION) so they agree."
            )


def manifest_wheel(manifest: dict, platform: str, python: str) -> str:
    """The one wheel file the manifest lists for `platform` and `python`."""
    listed = [
        n for n in manifest_wheel_names(manifest) if platform in wheel_platforms(n) and wheel_python(n) == python
    ]
    if len(listed) != 1:
        raise BuildError(
            f"blender_manifest.toml must list exactly one wheel for {platform} / Python {python}, found {listed}."
        )
    return listed[0]


def fetch_wheels(platforms: list[str], manifest: dict, dest: Path = WHEELS) -> dict[tuple[str, str], Path]:
    """Each (platform, Python)'s wheel: the manifest's file from `dest` when already there, else downloaded
    with pip and checked against the manifest; either way checked against its pinned hash."""
    wheels: dict[tuple[str, str], Path] = {}
    for python in PYTHONS:  # the manifest's order: every platform's cp311 wheel, then cp313
        for platform in platforms:
            cached = dest / manifest_wheel(manifest, platform, python)
            if not cached.is_file():
                resolved = {(platform, python): resolve_wheel(platform, python, dest)}
                check_wheels(resolved, manifest)
            check_hash(cached)
            wheels[(platform, python)] = cached
    return wheels


def _replace_array(text: str, key: str, values: list[str]) -> str:
    body = "".join(f'  "{v}",\n' for v in values)
    new, count = re.subn(rf"(?ms)^{key} = \[.*?\]", f"{key} = [\n{body}]", text)
    if count != 1:
        raise BuildError(f"blender_manifest.toml must have exactly one `{key} = [...]` array.")
    return new


def stage(dest: Path, wheels: dict[tuple[str, str], Path]) -> Path:
    """Lay out manifest + add-on package + the given platforms' wheels as one extension source folder."""
    shutil.copytree(PACKAGE, dest, ignore=_EXCLUDE)
    text = MANIFEST.read_text(encoding="utf-8")
    # A one-platform build lists only that platform and its wheels; blender_ext needs every listed wheel.
    text = _replace_array(text, "platforms", list(dict.fromkeys(platform for platform, _ in wheels)))
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
    parser.add_argument("--fetch", action="store_true", help="only download and verify the wheel cache (./wheels/)")
    args = parser.parse_args(argv)
    try:
        if args.fetch:
            manifest = read_manifest()
            for path in fetch_wheels(list(args.platform or manifest["platforms"]), manifest).values():
                print(path)
            return 0
        for path in build(args.out, args.platform):
            print(path)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
