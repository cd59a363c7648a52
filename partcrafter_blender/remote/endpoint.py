"""Which server, and whether we may talk to it: URL rules, loopback, online access, API key.

The rules, in one place so the operators, the CLI and the engine agree:
- HTTPS is required for every host that is not loopback (the image and the key
  would otherwise cross the network in clear text).
- A loopback server is "this computer": it works with Blender's online access off.
- Any other host needs `bpy.app.online_access` (the caller passes it in; no bpy here).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import InvalidServerURL, OnlineAccessDisabled

API_KEY_ENV = "PARTCRAFTER_API_KEY"

ONLINE_ACCESS_HINT = (
    "Blender's online access is off, so PartCrafter will not contact {host}. "
    "Enable it in Preferences > System > Network > Allow Online Access, "
    "or start Blender with --online-mode (also in background mode). "
    "A server on this computer (localhost / 127.0.0.1) works without it."
)


@dataclass(frozen=True)
class Endpoint:
    base_url: str  # scheme://host[:port][/prefix], no trailing slash
    scheme: str
    hostname: str
    port: int | None
    is_loopback: bool

    @property
    def host(self) -> str:
        """What a person reads as "the server": host, with the port when one is given."""
        shown = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return f"{shown}:{self.port}" if self.port else shown

    def url(self, path: str) -> str:
        return self.base_url + path


def is_loopback_host(hostname: str) -> bool:
    """True for names that cannot leave this computer. No DNS lookups: a name is
    judged by what it says, so a hosts-file trick cannot turn it into a remote host."""
    name = hostname.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def parse_server_url(url: str) -> Endpoint:
    """Validate a server URL. Raises InvalidServerURL with the reason."""
    text = (url or "").strip()
    if not text:
        raise InvalidServerURL("No server URL is set. Enter it in the PartCrafter preferences (Server URL).")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidServerURL(f"The server URL '{text}' is not valid ({exc}).") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidServerURL(
            f"The server URL '{text}' must start with https:// (or http:// for a server on this computer)."
        )
    if parts.username is not None or parts.password is not None:
        # Credentials in a URL end up in logs and history; the key has its own field.
        raise InvalidServerURL("The server URL must not contain a user name or password; put the API key in its own field.")
    hostname = (parts.hostname or "").lower()
    if not hostname:
        raise InvalidServerURL(f"The server URL '{text}' has no host name.")
    if parts.query or parts.fragment:
        raise InvalidServerURL(f"The server URL '{text}' must not contain '?' or '#' parts.")
    loopback = is_loopback_host(hostname)
    if scheme == "http" and not loopback:
        raise InvalidServerURL(
            f"Refusing to use plain http:// for {hostname}: your image and API key would travel unencrypted. "
            "Use https:// (plain http is allowed only for a server on this computer)."
        )
    netloc_host = f"[{hostname}]" if ":" in hostname else hostname
    netloc = f"{netloc_host}:{port}" if port else netloc_host
    base = f"{scheme}://{netloc}{parts.path.rstrip('/')}"
    return Endpoint(base_url=base, scheme=scheme, hostname=hostname, port=port, is_loopback=loopback)


def online_access_problem(endpoint: Endpoint, online_access: bool) -> str | None:
    """The reason this endpoint may not be used now, or None when it may."""
    if endpoint.is_loopback or online_access:
        return None
    return ONLINE_ACCESS_HINT.format(host=endpoint.host)


def require_online_access(endpoint: Endpoint, online_access: bool) -> None:
    problem = online_access_problem(endpoint, online_access)
    if problem:
        raise OnlineAccessDisabled(problem)


def resolve_api_key(configured: str = "") -> str:
    """The key from the preferences, else from the PARTCRAFTER_API_KEY environment variable."""
    key = (configured or "").strip()
    return key or os.environ.get(API_KEY_ENV, "").strip()


def destination_label(backend: str, server_url: str) -> str:
    """The panel badge: where the next run sends the image."""
    if backend != "SERVER":
        return "this computer"
    try:
        endpoint = parse_server_url(server_url)
    except InvalidServerURL:
        return "server (URL not valid)"
    return f"this computer ({endpoint.host})" if endpoint.is_loopback else endpoint.host
