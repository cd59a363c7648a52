"""Before anything is uploaded: which server, with what key, and is there consent?

Shared by the generate operator, the resume/data operators and the CLI, so all of
them apply the same rules. No bpy: callers pass in Blender's online-access flag and
the settings they read from the preferences.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..inference.contract import CancelToken
from .client import DEFAULT_TIMEOUT, Policy, ServerClient
from .consent import ConsentLedger
from .endpoint import Endpoint, parse_server_url, require_online_access, resolve_api_key
from .engine import RemoteEngine
from .errors import ConsentRequired
from .minimise import UploadImage, minimise_pixels
from .pending import PendingJobs

POLICY_TIMEOUT = (5.0, 10.0)  # someone is waiting for the consent dialog: fail fast

# How long the server keeps a result, as a person chooses it (minutes; None: the server's own).
RESULT_RETENTION_CHOICES: dict[str, tuple[str, int | None]] = {
    "SERVER": ("As Long as the Server Keeps Them", None),
    "DAY": ("1 Day", 1440),
    "HOUR": ("1 Hour", 60),
    "MINUTES_10": ("10 Minutes", 10),
}
RESULT_RETENTION_ITEMS = [(key, label, label) for key, (label, _minutes) in RESULT_RETENTION_CHOICES.items()]  # for bpy


@dataclass(frozen=True)
class ServerConfig:
    url: str
    api_key: str = ""  # empty: PARTCRAFTER_API_KEY
    ca_bundle: str = ""
    engine: str = ""
    ask_every_time: bool = False
    keep_on_server: bool = False
    result_retention_minutes: int | None = None  # None: as long as the server keeps results


def connect(config: ServerConfig, online_access: bool, timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> ServerClient:
    """A client for the configured server, after the URL and online-access rules."""
    endpoint: Endpoint = parse_server_url(config.url)
    require_online_access(endpoint, online_access)
    return ServerClient(endpoint, resolve_api_key(config.api_key), ca_bundle=config.ca_bundle, timeout=timeout)


@dataclass(frozen=True)
class ConsentQuestion:
    """Everything the consent dialog shows: where, what exactly, and under which policy."""

    host: str
    server: str
    policy: Policy
    upload: UploadImage
    image_sha256: str = ""  # the original file's, recorded with the decision


def consent_question(
    client: ServerClient,
    ledger: ConsentLedger,
    rgba: np.ndarray,
    ask_every_time: bool,
    cancel: CancelToken | None = None,
    image_sha256: str = "",
) -> tuple[ConsentQuestion, bool]:
    """Fetch the policy (no image is sent) and minimise the image; returns the
    question and whether it must be asked (first upload, new policy, or ask-every-time).
    Slow (network, image work): the add-on runs it on its worker thread."""
    cancel = cancel or CancelToken()
    policy = client.policy()
    cancel.raise_if_cancelled()
    upload = minimise_pixels(rgba)
    cancel.raise_if_cancelled()
    question = ConsentQuestion(
        host=client.host, server=client.endpoint.base_url, policy=policy, upload=upload, image_sha256=image_sha256
    )
    return question, ledger.needs_consent(question.server, policy.version, ask_every_time)


def headless_refusal(host: str, flag: str) -> ConsentRequired:
    return ConsentRequired(
        f"Nothing was uploaded: without the interface, PartCrafter sends an image to the server {host} only with "
        f"explicit consent. Read the server's privacy policy, then run again with {flag}."
    )


def remote_engine(
    client: ServerClient,
    config: ServerConfig,
    directory,
    *,
    policy_version: str = "",
    consented_sha256: str | None = None,
    consent_via: str | None = None,
) -> RemoteEngine:
    return RemoteEngine(
        client,
        policy_version=policy_version,
        server_engine=config.engine,
        consented_sha256=consented_sha256,
        consent_via=consent_via,
        pending=PendingJobs(directory),
        ledger=ConsentLedger(directory),
        keep_on_server=config.keep_on_server,
        result_retention_minutes=config.result_retention_minutes,
    )
