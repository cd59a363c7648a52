"""Fixtures for the server backend's bpy-free tests: a real server, a proxy, a user folder."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("remote_harness", Path(__file__).with_name("remote_harness.py"))
harness = importlib.util.module_from_spec(_spec)
sys.modules["remote_harness"] = harness  # dataclasses look their module up by name
_spec.loader.exec_module(harness)


@pytest.fixture(scope="session", name="harness")
def harness_fixture():
    return harness


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    proc = harness.ServerProcess(tmp_path_factory.mktemp("server-data"))
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture()
def proxy(server) -> Iterator:
    p = harness.FaultProxy(server.port)
    yield p
    p.close()


@pytest.fixture()
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "user"
    d.mkdir()
    monkeypatch.setenv("PARTCRAFTER_USER_DIR", str(d))
    monkeypatch.delenv("PARTCRAFTER_API_KEY", raising=False)
    return d


@pytest.fixture(scope="session")
def sample_rgba():
    from partcrafter_blender.inference.images import load_image

    return load_image(harness.SAMPLE_IMAGE).rgba
