"""Why an engine cannot run, in the server's words.

Engines word their problems for the add-on ("set it in the add-on preferences"); a
client of the server can do nothing with that, and the server's operator configures
it differently. So clients are told which *server* setting is missing, and never a
path on the server.
"""

from __future__ import annotations

from partcrafter_blender.inference import Availability

_SERVER_FIX = {
    "weights_path": "its weights folder is not configured or does not verify; the server's operator sets "
    "weights_dir (PARTCRAFTER_SERVER_WEIGHTS_DIR)",
    "packages": "the server's Python lacks the engine's packages; the server's operator installs them",
}


def unavailable_reason(availability: Availability) -> str:
    """The reason for a client (and the server's log), without the add-on's advice."""
    return _SERVER_FIX.get(availability.setting) or availability.reason or "not available"
