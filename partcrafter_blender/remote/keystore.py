"""The API key at rest: a 0600 file in the server backend's user folder.

Not an ordinary preferences property, because Blender saves preferences into
userpref.blend and the key must never be written into a .blend file. The
PARTCRAFTER_API_KEY environment variable, when set, is used when no key is stored.
"""

from __future__ import annotations

import os
from pathlib import Path

KEY_FILE = "api_key"


def load_key(directory: Path) -> str:
    try:
        return (directory / KEY_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def store_key(directory: Path, key: str) -> None:
    path = directory / KEY_FILE
    key = key.strip()
    if not key:
        path.unlink(missing_ok=True)
        return
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        # Also when the file existed with wider permissions, and before the key is in it
        # (os.chmod: Blender's Python on Windows has no os.fchmod).
        os.chmod(path, 0o600)
        fh.write(key)
