"""Settings: config file + environment, and a documented reference that matches the code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from partcrafter_server.settings import Settings, describe_settings
from server_test_support import REPO


def test_config_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "server.toml"
    toml.write_text('port = 9100\nresult_retention_days = 3\nallowed_engines = ["relief"]\n')
    monkeypatch.setenv("PARTCRAFTER_SERVER_CONFIG", str(toml))
    monkeypatch.setenv("PARTCRAFTER_SERVER_PORT", "9200")
    s = Settings()
    assert (s.port, s.result_retention_days, s.allowed_engines) == (9200, 3, ["relief"])  # env wins over the file

    as_json = tmp_path / "server.json"
    as_json.write_text(json.dumps({"max_queue": 7}))
    monkeypatch.setenv("PARTCRAFTER_SERVER_CONFIG", str(as_json))
    assert Settings().max_queue == 7

    as_json.write_text(json.dumps({"no_such_setting": 1}))
    with pytest.raises(ValueError):
        Settings()
    monkeypatch.setenv("PARTCRAFTER_SERVER_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ValueError, match="not found"):
        Settings()


def test_every_setting_is_described_and_documented() -> None:
    doc = (REPO / "docs" / "server.md").read_text()
    for row in describe_settings():
        assert row["description"], row["name"]
        assert f"`{row['env']}`" in doc, (
            f"{row['name']} is missing from docs/server.md (regenerate with `partcrafter-server settings`)"
        )


def test_dispatch_and_ray_deployments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().dispatch == "local"  # as before: Ray only when asked for
    with pytest.raises(ValueError):
        Settings(dispatch="kubernetes")
    toml = tmp_path / "server.toml"
    toml.write_text('dispatch = "ray"\n[ray_deployments.partcrafter]\nmax_replicas = 8\n[ray_deployments.relief]\nnum_cpus = 2\n')
    monkeypatch.setenv("PARTCRAFTER_SERVER_CONFIG", str(toml))
    s = Settings()
    pc, relief, other = s.ray_deployment("partcrafter"), s.ray_deployment("relief"), s.ray_deployment("plugin_engine")
    assert (pc.num_gpus, pc.max_replicas, pc.min_replicas) == (1.0, 8, 1)  # the GPU default survives an override
    assert (relief.num_gpus, relief.num_cpus) == (0.0, 2.0) and other.num_cpus == 1.0
    monkeypatch.setenv("PARTCRAFTER_SERVER_RAY_DEPLOYMENTS", '{"relief": {"min_replicas": 3, "max_replicas": 2}}')
    with pytest.raises(ValueError, match="min_replicas cannot exceed max_replicas"):
        Settings()
    monkeypatch.setenv("PARTCRAFTER_SERVER_RAY_DEPLOYMENTS", '{"relief": {"gpus": 1}}')
    with pytest.raises(ValueError):
        Settings()  # a misspelt option is refused, not ignored
