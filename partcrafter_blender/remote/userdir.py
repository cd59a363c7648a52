"""Where the server backend keeps its files (consent ledger, pending jobs, API key).

PARTCRAFTER_USER_DIR when it is set (tests, shared machines); else, in Blender, the
extension's user folder, which Blender callers pass in (server_backend.server_dir():
this package imports no Blender module); else ~/.config/partcrafter_blender/server.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

USER_DIR_ENV = "PARTCRAFTER_USER_DIR"


def server_user_dir(in_blender: Callable[[], Path] | None = None) -> Path:
    override = os.environ.get(USER_DIR_ENV, "").strip()
    if override:
        path = Path(override).expanduser()
    elif in_blender is not None:
        path = in_blender()
    else:
        path = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "partcrafter_blender" / "server"
    path.mkdir(parents=True, exist_ok=True)
    return path
