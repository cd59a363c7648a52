"""The server backend for the command line: same rules, consent only by flag."""

from __future__ import annotations

import sys
from pathlib import Path

from ..inference import GenerationResult
from .engine import RemoteEngine
from .gate import ServerConfig, connect, headless_refusal, remote_engine
from .userdir import server_user_dir


def blender_online_access() -> bool:
    """Blender's online-access switch when running inside Blender (bpy already loaded)."""
    bpy = sys.modules.get("bpy")
    return bool(bpy is not None and getattr(bpy.app, "online_access", False))


class HeadlessServerRun:
    """Checks URL, online access and the consent flag before anything is sent; the
    engine records the consent (with the image hash) in the ledger as it uploads."""

    def __init__(self, config: ServerConfig, consent_upload: bool, online_access: bool, directory: Path | None = None) -> None:
        """`directory`: where the ledger and pending jobs go (default: remote/userdir.py's choice)."""
        client = connect(config, online_access)
        if not consent_upload:
            raise headless_refusal(client.host, "--consent-upload")
        folder = directory or server_user_dir()
        self.engine: RemoteEngine = remote_engine(client, config, folder, consent_via="--consent-upload")

    def factory(self) -> RemoteEngine:
        return self.engine

    def finish(self, result: GenerationResult) -> str:
        return self.engine.finish(result)

    def close(self) -> None:
        self.engine.close()
