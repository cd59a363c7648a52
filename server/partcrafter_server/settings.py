"""Every server setting, typed and documented.

Sources, highest priority first: keyword arguments (tests, `create_app`), environment
variables prefixed `PARTCRAFTER_SERVER_`, then the optional config file named by
`PARTCRAFTER_SERVER_CONFIG` (TOML when it ends in `.toml`, JSON otherwise), then the
defaults below. docs/server.md is generated from the same descriptions.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from partcrafter_blender.inference.params import param_specs

_STEPS, _GUIDANCE = param_specs()["steps"], param_specs()["guidance"]
POLICY_VERSION = "2025-01-13"  # "Last updated" of the privacy policy the consent dialog shows
HARD_MAX_RETENTION_DAYS = 30  # the policy's promise; no setting can exceed it
MIN_RESULT_RETENTION_MINUTES = 5  # the shortest result retention a job may ask for: time to download it
CONFIG_ENV = "PARTCRAFTER_SERVER_CONFIG"


class RayDeployment(BaseModel):
    """The Ray Serve deployment of one engine (`ray_deployments`); every field has a default."""

    model_config = ConfigDict(extra="forbid")

    num_gpus: float = Field(0.0, ge=0, description="GPUs each replica reserves (PartCrafter: 1).")
    num_cpus: float = Field(1.0, ge=0, description="CPUs each replica reserves (relief runs on these).")
    min_replicas: int = Field(1, ge=0, description="Replicas kept running when the queue is empty.")
    max_replicas: int = Field(2, ge=1, description="Most replicas the autoscaler starts when jobs queue up.")
    max_ongoing_requests: int = Field(1, ge=1, description="Jobs one replica runs at a time.")
    target_ongoing_requests: float = Field(
        1.0, gt=0, description="Queued plus running jobs per replica the autoscaler aims for."
    )
    upscale_delay_s: float = Field(5.0, ge=0, description="How long the queue must stay long before a replica is added.")
    downscale_delay_s: float = Field(300.0, ge=0, description="How long replicas must stay idle before one is removed.")
    health_check_period_s: float = Field(10.0, gt=0, description="Period of each replica's health check.")
    health_check_timeout_s: float = Field(30.0, gt=0, description="A health check slower than this counts as failed.")

    @model_validator(mode="after")
    def _bounds(self) -> RayDeployment:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas cannot exceed max_replicas")
        return self


# the PartCrafter network needs a GPU per replica; every other engine gets RayDeployment()'s defaults
RAY_ENGINE_DEFAULTS: dict[str, dict[str, Any]] = {"partcrafter": {"num_gpus": 1.0}}


def ray_deployment(engine: str, given: RayDeployment | None) -> RayDeployment:
    """The replica options of one engine: its defaults, overridden by the options given."""
    return RayDeployment(**{**RAY_ENGINE_DEFAULTS.get(engine, {}), **(given.model_dump(exclude_unset=True) if given else {})})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARTCRAFTER_SERVER_", extra="forbid")

    # --- network -----------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address to listen on. Anything but loopback needs TLS or `behind_tls_proxy`.")
    port: int = Field(8765, ge=0, le=65535, description="TCP port to listen on (0 picks a free port).")
    ssl_certfile: Path | None = Field(None, description="PEM certificate (chain) to serve HTTPS directly.")
    ssl_keyfile: Path | None = Field(None, description="PEM private key matching `ssl_certfile`.")
    behind_tls_proxy: bool = Field(
        False,
        description="Set when a reverse proxy terminates TLS in front of this server; allows plain HTTP on a non-loopback address.",
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1", description="Proxy addresses whose X-Forwarded-* headers are trusted (uvicorn `forwarded_allow_ips`)."
    )
    request_timeout_s: float = Field(
        60.0, gt=0, description="Longest time one HTTP request (upload included) may take before 408."
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Longest time a client may take to send a request's line and headers (and an idle new connection to send anything) before it is closed.",
    )
    max_connections: int = Field(
        256, ge=1, description="Concurrent connections; requests beyond it get 503 (uvicorn `limit_concurrency`)."
    )
    max_header_bytes: int = Field(
        16384, ge=1024, description="Largest request line plus headers in bytes; beyond it 431 and the connection is closed."
    )
    max_body_bytes: int = Field(
        65536,
        ge=1024,
        description="Largest request body on every route but the image upload (`POST /v1/jobs`, bounded by `max_upload_bytes`): 413 from its Content-Length, before it is read.",
    )
    api_docs: bool = Field(
        False,
        description="Serve the interactive API page at /docs (Swagger UI: the viewer's browser loads its scripts from a CDN). /openapi.json is always served.",
    )
    access_log: bool = Field(
        False, description="Log one line per request (method, route template, status, duration; never paths, IPs or keys)."
    )

    # --- storage -----------------------------------------------------------------
    data_dir: Path = Field(Path("./partcrafter-data"), description="Folder for the SQLite database and the encrypted blobs.")
    key_dir: Path | None = Field(
        None,
        description="Folder for the master key ring (default `<data_dir>/keys`). Put it on another volume or a secrets mount.",
    )

    # --- engines and workers -----------------------------------------------------
    default_engine: str = Field("relief", description="Engine used when a job names none.")
    allowed_engines: list[str] = Field(
        default_factory=lambda: ["relief", "partcrafter"],
        description="Engines clients may ask for (plugin engines must be listed too).",
    )
    engine_plugins: list[str] = Field(
        default_factory=list, description="Python modules imported at start (server and workers) that call `register_engine`."
    )
    weights_dir: Path | None = Field(
        None,
        description="PartCrafter weights folder; exported as PARTCRAFTER_WEIGHTS to the engines (an existing PARTCRAFTER_WEIGHTS also counts).",
    )
    workers: int | None = Field(
        None, ge=1, le=64, description="Worker processes. Default: one per GPU when GPUs are present, else `cpu_workers`."
    )
    cpu_workers: int = Field(1, ge=1, le=64, description="Worker processes on a machine without GPUs.")
    job_timeout_s: float = Field(1800.0, gt=0, description="A job running longer than this is stopped and failed.")
    cancel_grace_s: float = Field(10.0, gt=0, description="How long a worker may ignore a cancel before it is killed.")
    lease_s: float = Field(30.0, gt=0, description="Job lease length; workers renew it by heartbeat while they run the job.")
    heartbeat_s: float = Field(2.0, gt=0, description="Heartbeat period of a worker holding a lease.")
    max_attempts: int = Field(2, ge=1, le=5, description="Tries per job when its worker dies (2 = retried once, then failed).")

    # --- dispatch ----------------------------------------------------------------
    dispatch: Literal["local", "ray"] = Field(
        "local",
        description="`local`: worker processes on this machine. `ray`: Ray Serve replicas on a cluster (needs `pip install \"./server[ray]\"`; docs/server-ray.md).",
    )
    ray_address: str = Field(
        "auto", description="Ray cluster to join with `dispatch = \"ray\"`: `auto` (the cluster this node belongs to) or its GCS address `host:port`."
    )
    ray_deploy: bool = Field(
        True,
        description="Deploy one Ray Serve application per allowed engine at start. False when a KubeRay RayService (`serveConfigV2`) deploys them.",
    )
    ray_app_prefix: str = Field(
        "partcrafter-", min_length=1, max_length=40, description="Name prefix of the Ray Serve applications (`<prefix><engine>`)."
    )
    ray_deployments: dict[str, RayDeployment] = Field(
        default_factory=dict,
        description="Per-engine replica options (num_gpus, num_cpus, min/max_replicas, max_ongoing_requests, target_ongoing_requests, upscale/downscale_delay_s, health_check_period/timeout_s), over the defaults (`partcrafter`: 1 GPU; others: 1 CPU; 1 to 2 replicas).",
    )
    ray_allow_plaintext_transport: bool = Field(
        False,
        description="Allow cluster nodes off loopback without Ray's TLS (`RAY_USE_TLS=1`). Off: the server refuses, since per-job data keys travel with the requests.",
    )

    # --- limits ------------------------------------------------------------------
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="Largest accepted image upload in bytes.")
    min_free_disk_mb: int = Field(
        256,
        ge=0,
        description="Free space the data folder's file system must keep: below it new jobs are refused (507 `insufficient_storage`) and `/readyz` says why, so running jobs can still record their end. 0: no floor.",
    )
    max_pixels: int = Field(
        4096 * 4096, ge=64, description="Largest accepted image area (width x height), checked before decoding."
    )
    max_side: int = Field(8192, ge=8, description="Largest accepted image width or height in pixels.")
    min_side: int = Field(16, ge=1, description="Smallest accepted image width or height in pixels.")
    max_steps: int = Field(
        _STEPS.maximum, ge=1, le=_STEPS.maximum, description="Largest accepted `steps` parameter (at most the parameter's own limit)."
    )
    max_guidance: float = Field(
        _GUIDANCE.maximum,
        gt=0,
        le=_GUIDANCE.maximum,
        description="Largest accepted `guidance` parameter (at most the parameter's own limit).",
    )
    max_queue: int = Field(100, ge=1, description="Queued jobs across all keys; beyond it submissions get 503 queue_full.")
    max_active_jobs_per_key: int = Field(4, ge=1, description="Unfinished jobs one key may have; beyond it 429 rate_limited.")
    submit_rate_per_minute: int = Field(30, ge=1, description="Job submissions one key may make per minute.")
    request_rate_per_minute: int = Field(1200, ge=1, description="Requests of any kind one key may make per minute.")

    # --- privacy -----------------------------------------------------------------
    policy_version: str = Field(POLICY_VERSION, description="Privacy policy version clients must have consented to.")
    policy_url: str = Field(
        "https://partcrafter.net/privacy", description="Where the client's consent dialog links to the policy."
    )
    result_retention_days: float = Field(7.0, gt=0, le=HARD_MAX_RETENTION_DAYS, description="Days a finished result is kept.")
    max_retention_days: float = Field(
        30.0,
        gt=0,
        le=HARD_MAX_RETENTION_DAYS,
        description="Days after submission when everything about a job is erased (at most 30).",
    )
    audit_retention_days: float = Field(
        30.0,
        gt=0,
        le=HARD_MAX_RETENTION_DAYS,
        description="Days an audit log entry is kept before it leaves the front of the chain (at most 30).",
    )
    idempotency_hours: float = Field(24.0, gt=0, le=24 * 30, description="Hours an Idempotency-Key is remembered.")
    sweep_interval_s: float = Field(60.0, gt=0, description="Period of the retention sweeper (it also runs at start-up).")

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.result_retention_days > self.max_retention_days:
            raise ValueError("result_retention_days cannot exceed max_retention_days")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile must be given together")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = os.environ.get(CONFIG_ENV)
        if config:
            path = Path(config)
            if not path.is_file():
                raise ValueError(f"Config file not found: {path}")
            if path.suffix == ".toml":
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            else:
                sources.append(JsonConfigSettingsSource(settings_cls, json_file=path))
        return tuple(sources)

    # --- derived -----------------------------------------------------------------
    @property
    def result_retention_minutes_range(self) -> tuple[int, int]:
        """What a job may ask for instead of `result_retention_days`: only ever shorter."""
        longest = int(self.result_retention_days * 1440)
        return min(MIN_RESULT_RETENTION_MINUTES, longest), longest

    @property
    def db_path(self) -> Path:
        return self.data_dir / "partcrafter.sqlite3"

    @property
    def keys_path(self) -> Path:
        return self.key_dir or self.data_dir / "keys"

    @property
    def tls(self) -> bool:
        return self.ssl_certfile is not None

    def worker_count(self) -> tuple[int, list[int | None]]:
        """Number of worker processes and the GPU index each one owns (None: CPU)."""
        gpus = count_gpus() if (self.weights_dir or os.environ.get("PARTCRAFTER_WEIGHTS")) else 0
        if self.workers is not None:
            n = self.workers
        else:
            n = gpus or self.cpu_workers
        return n, [i if i < gpus else None for i in range(n)]

    def ray_deployment(self, engine: str) -> RayDeployment:
        return ray_deployment(engine, self.ray_deployments.get(engine))

    def listen_problem(self) -> str | None:
        """Why this configuration must not listen, or None when it may."""
        if self.tls or self.behind_tls_proxy or is_loopback(self.host):
            return None
        return (
            f"Refusing to serve plain HTTP on {self.host}: images would cross the network unencrypted. "
            "Give ssl_certfile and ssl_keyfile, or set behind_tls_proxy=true when a TLS reverse proxy is in front."
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def count_gpus() -> int:
    """NVIDIA GPUs visible to this machine, without importing torch."""
    dev = Path("/dev")
    return sum(1 for p in dev.glob("nvidia[0-9]*")) if dev.is_dir() else 0


def setting_sources(given: set[str]) -> dict[str, str]:
    """Where each setting's value comes from, in the order Settings reads them."""
    config = os.environ.get(CONFIG_ENV)
    in_file: set[str] = set()
    if config and Path(config).is_file():
        text = Path(config).read_text(encoding="utf-8")
        in_file = set(tomllib.loads(text) if config.endswith(".toml") else json.loads(text))
    env = {k.upper() for k in os.environ}
    out = {}
    for name in Settings.model_fields:
        var = f"PARTCRAFTER_SERVER_{name.upper()}"
        if name in given:
            out[name] = "command line"
        elif var in env:
            out[name] = f"environment {var}"
        elif name in in_file:
            out[name] = f"config file {config}"
        else:
            out[name] = "default"
    return out


def describe_settings() -> list[dict[str, Any]]:
    """(name, env var, default, description) rows for the settings reference."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
        rows.append(
            {"name": name, "env": f"PARTCRAFTER_SERVER_{name.upper()}", "default": default, "description": field.description}
        )
    return rows
