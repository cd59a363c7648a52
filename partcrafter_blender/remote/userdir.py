"""Where the server backend keeps its files (consent ledger, pending jobs, API key).

Blender: the extension's user directory (via preferences.user_directory). Outside
Blender (the CLI with the bpy module) or when PARTCRAFTER_USER_DIR is set (tests,
shared machines): that folder, else ~/.config/partcrafter_blender.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

USER_DIR_ENV = "PARTCRAFTER_USER_DIR"


def server_user_dir() -> Path:
    override = os.environ.get(USER_DIR_ENV, "").strip()
    if override:
        path = Path(override).expanduser()
    elif "bpy" in sys.modules:
        from ..preferences import user_directory

        path = user_directory("server")
    else:
        path = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "partcrafter_blender" / "server"
    path.mkdir(parents=True, exist_ok=True)
    return path
