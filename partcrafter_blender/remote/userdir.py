"""Where the server backend keeps its files (consent ledger, pending jobs, API key).

PARTCRAFTER_USER_DIR when it is set (tests, shared machines); else, in Blender, the
extension's user folder, which Blender callers pass in (server_backend.server_dir():
this package imports no Blender module); else ~/.config/partcrafter_blender/server.
Blender and the command line thus keep two ledgers unless PARTCRAFTER_USER_DIR is set;
`python -m partcrafter_blender ledger` prints where both are.
"""

from __future__ import annotations

import os
import sys
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
        path = command_line_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


def command_line_dir() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "partcrafter_blender" / "server"


def blender_dirs() -> list[Path]:
    """The server folders of this extension in every Blender version's user folders that
    have one (as Blender lays them out: extensions/.user/<repository>/partcrafter/server for
    an installed extension, config/partcrafter_blender/server when run from a checkout)."""
    roots: list[Path] = []
    if os.environ.get("BLENDER_USER_RESOURCES"):
        roots.append(Path(os.environ["BLENDER_USER_RESOURCES"]))
    else:
        home = Path.home()
        if sys.platform == "darwin":
            parent = home / "Library" / "Application Support" / "Blender"
        elif os.name == "nt":
            parent = Path(os.environ.get("APPDATA") or home) / "Blender Foundation" / "Blender"
        else:
            parent = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "blender"
        roots.extend(sorted(p for p in parent.glob("*") if p.is_dir()))
    found: list[Path] = []
    for root in roots:
        found.extend(sorted(root.glob("extensions/.user/*/partcrafter/server")))
        found.extend(sorted(root.glob("config/partcrafter_blender/server")))
    return [p for p in found if p.is_dir()]
