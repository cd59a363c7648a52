"""Every way talking to a server can fail, each with a sentence a person can act on.

Messages name the host, never the API key (the client redacts it defensively too).
"""

from __future__ import annotations

from ..inference.errors import PartCrafterError


class RemoteError(PartCrafterError):
    """Base for server-backend failures. `status`/`code` are set for HTTP answers."""

    def __init__(self, message: str, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class InvalidServerURL(RemoteError):
    """The configured URL is malformed or would send data unencrypted."""


class OnlineAccessDisabled(RemoteError):
    """Blender's online access is off and the server is not on this computer."""


class ConsentRequired(RemoteError):
    """No recorded consent covers this upload (declined, outdated, or headless without the flag)."""


class ServerUnreachable(RemoteError):
    """Connection refused, DNS failure, proxy failure or timeout."""


class TLSFailed(RemoteError):
    """The TLS handshake or certificate verification failed."""


class AuthFailed(RemoteError):
    """401/403: the API key is missing, wrong or not allowed."""


class JobNotFound(RemoteError):
    """404: the job does not exist for this key (or was deleted)."""


class UploadRejected(RemoteError):
    """413/415/422/400: the server refused the image or the parameters."""


class PolicyOutdated(RemoteError):
    """409 policy_outdated: the server's policy changed since consent was given."""

    def __init__(self, message: str, current_version: str = "", status: int | None = 409, code: str = "") -> None:
        super().__init__(message, status=status, code=code)
        self.current_version = current_version


class RateLimited(RemoteError):
    """429 or 503 with Retry-After: try again later."""

    def __init__(self, message: str, retry_after: float | None, status: int | None = None, code: str = "") -> None:
        super().__init__(message, status=status, code=code)
        self.retry_after = retry_after


class ServerFailed(RemoteError):
    """5xx or an answer that is not what the API promises."""


class ResultExpired(RemoteError):
    """410: the job's result is gone: erased by the server's retention policy, or damaged in its storage."""


class DownloadFailed(RemoteError):
    """The result arrived truncated or is not a readable multi-part GLB."""


class RemoteJobFailed(RemoteError):
    """The server ran the job and reported that it failed."""
