"""HTTP client for the server API v1 (docs/api.md), on `requests` (bundled with Blender).

Every request has a timeout, never follows redirects (a redirect could downgrade to
plain http or carry the key elsewhere), verifies certificates (certifi by default,
or a CA bundle the user sets) and uses proxies from the standard environment
variables, except for loopback servers, which no proxy can reach. Every failure
becomes a `RemoteError` subclass whose message names the host and never the key.
"""

from __future__ import annotations

import email.utils
import json
import os
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from requests.auth import AuthBase

from ..api_v1 import FINISHED_STATES
from ..inference.contract import CancelToken
from ..inference.errors import Cancelled
from .endpoint import API_KEY_ENV, Endpoint, parse_server_url
from .errors import (
    AuthFailed,
    ConsentRequired,
    DownloadFailed,
    InvalidServerURL,
    JobNotFound,
    PolicyOutdated,
    RateLimited,
    RemoteError,
    ResultExpired,
    ServerFailed,
    ServerUnreachable,
    TLSFailed,
    UploadRejected,
)

DEFAULT_TIMEOUT = (5.0, 30.0)  # (connect, read) seconds
UPLOAD_READ_TIMEOUT = 120.0
MAX_RESULT_BYTES = 512 * 1024 * 1024
MAX_EXPORT_BYTES = 4 * 1024 * 1024 * 1024
_CHUNK = 64 * 1024
USER_AGENT = "PartCrafter-for-Blender"


@dataclass(frozen=True)
class Policy:
    version: str
    url: str
    input_retention: str
    result_retention_days: int | None
    max_retention_days: int | None
    encryption: str
    analytics: str
    result_retention_minutes_min: int | None = None  # the range a job may ask for (older servers: none)
    result_retention_minutes_max: int | None = None
    audit_retention_days: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Policy:
        return cls(
            version=str(data["policy_version"]),
            url=str(data.get("policy_url") or ""),
            input_retention=str(data.get("input_retention") or ""),
            result_retention_days=_int_or_none(data.get("result_retention_days")),
            max_retention_days=_int_or_none(data.get("max_retention_days")),
            encryption=str(data.get("encryption") or ""),
            analytics=str(data.get("analytics") or ""),
            result_retention_minutes_min=_int_or_none(data.get("result_retention_minutes_min")),
            result_retention_minutes_max=_int_or_none(data.get("result_retention_minutes_max")),
            audit_retention_days=_int_or_none(data.get("audit_retention_days")),
        )


@dataclass(frozen=True)
class Job:
    id: str
    status: str
    stage: str = ""
    progress: float = 0.0
    queue_position: int | None = None
    engine: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    policy_version: str = ""
    parts: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    retry_after: float | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATES

    @classmethod
    def from_json(cls, data: dict[str, Any], retry_after: float | None = None) -> Job:
        return cls(
            id=str(data["id"]),
            status=str(data["status"]),
            stage=str(data.get("stage") or ""),
            progress=float(data.get("progress") or 0.0),
            queue_position=_int_or_none(data.get("queue_position")),
            engine=str(data.get("engine") or ""),
            params=dict(data.get("params") or {}),
            policy_version=str(data.get("policy_version") or ""),
            parts=list(data.get("parts") or []),
            error=data.get("error") or None,
            raw=data,
            retry_after=retry_after,
        )


class _Bearer(AuthBase):
    """Sets the key explicitly, which also stops requests from applying ~/.netrc."""

    def __init__(self, key: str) -> None:
        self._key = key

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if self._key:
            r.headers["Authorization"] = f"Bearer {self._key}"
        return r


class ServerClient:
    def __init__(
        self,
        endpoint: Endpoint | str,
        api_key: str = "",
        ca_bundle: str = "",
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        self.endpoint = endpoint if isinstance(endpoint, Endpoint) else parse_server_url(endpoint)
        self._key = api_key or ""
        self.timeout = timeout
        self._verify: bool | str = True
        if ca_bundle:
            bundle = Path(ca_bundle).expanduser()
            if not bundle.is_file():
                raise InvalidServerURL(f"The CA bundle file set in the preferences does not exist: {bundle}")
            self._verify = str(bundle)
        self._session = requests.Session()
        self._session.headers["User-Agent"] = USER_AGENT
        # A proxy cannot reach this computer's loopback; elsewhere honour HTTPS_PROXY & co.
        self._session.trust_env = not self.endpoint.is_loopback

    @property
    def host(self) -> str:
        return self.endpoint.host

    def close(self) -> None:
        """Close the pooled connections; call when done (or use `with ServerClient(...)`)."""
        self._session.close()

    def __enter__(self) -> ServerClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- API routes ----

    def health(self) -> None:
        self._json("GET", "/healthz", auth=False)

    def policy(self) -> Policy:
        data = self._json("GET", "/v1/policy", auth=False)
        try:
            return Policy.from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ServerFailed(f"The server {self.host} sent a privacy policy without a version; it cannot be used.") from exc

    def submit(
        self,
        png: bytes,
        params: dict[str, Any],
        policy_version: str,
        idempotency_key: str = "",
        result_retention_minutes: int | None = None,
    ) -> Job:
        """Upload one image; `result_retention_minutes` asks the server to keep the result shorter."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        form = {"params": json.dumps(params), "policy_version": policy_version}
        if result_retention_minutes:
            form["result_retention_minutes"] = str(int(result_retention_minutes))
        resp = self._request(
            "POST",
            "/v1/jobs",
            expected=(200, 201, 202),
            files={"image": ("image.png", png, "image/png")},
            data=form,
            headers=headers,
            timeout=(self.timeout[0], max(self.timeout[1], UPLOAD_READ_TIMEOUT)),
        )
        return self._job(resp)

    def job(self, job_id: str) -> Job:
        return self._job(self._request("GET", f"/v1/jobs/{job_id}", job_id=job_id))

    def cancel(self, job_id: str) -> Job:
        return self._job(self._request("POST", f"/v1/jobs/{job_id}/cancel", expected=(200, 202), job_id=job_id))

    def delete_job(self, job_id: str) -> None:
        self._request("DELETE", f"/v1/jobs/{job_id}", expected=(200, 202, 204), job_id=job_id)

    def result(self, job_id: str) -> bytes:
        """The job's GLB, complete (a cut-off download raises DownloadFailed)."""
        resp = self._request(
            "GET", f"/v1/jobs/{job_id}/result", job_id=job_id, stream=True, headers={"Accept-Encoding": "gzip"}
        )
        with resp:
            data = self._read_body(resp, MAX_RESULT_BYTES, f"the result of job {job_id}")
        return data

    def me(self) -> dict[str, Any]:
        return self._json("GET", "/v1/me")

    def export_me(self, destination: str | os.PathLike[str], cancel: CancelToken | None = None) -> int:
        """Save the export archive to `destination` (atomically); returns its size in bytes.
        Cancelling stops the download between chunks and leaves no file behind."""
        dest = Path(destination)
        if dest.is_dir():
            raise RemoteError(f"Choose a file name for the export, not a folder: {dest}")
        if not dest.parent.is_dir():
            raise RemoteError(f"The folder for the export does not exist: {dest.parent}")
        partial = dest.with_name(dest.name + ".part")
        resp = self._request("GET", "/v1/me/export", stream=True)
        try:
            with resp, open(partial, "wb") as fh:
                size = self._copy_body(resp, fh, MAX_EXPORT_BYTES, "the export archive", cancel)
            if not zipfile.is_zipfile(partial):
                raise DownloadFailed(f"The export from {self.host} is not a valid ZIP archive; nothing was saved.")
            os.replace(partial, dest)
        except OSError as exc:
            raise RemoteError(f"Cannot save the export to {dest}: {exc.strerror or exc}") from exc
        except Cancelled:
            raise Cancelled(f"Export cancelled; nothing was saved to {dest}.") from None
        finally:
            partial.unlink(missing_ok=True)
        return size

    def update_me(self, **changes: Any) -> dict[str, Any]:
        """Correct label/contact, set processing_restricted or analytics_objection; returns /v1/me."""
        return self._decode_json(self._request("PATCH", "/v1/me", json=changes))

    def delete_me(self) -> int:
        data = self._json("DELETE", "/v1/me", expected=(200,))
        return int(data.get("deleted_jobs") or 0)

    # ---- plumbing ----

    def _job(self, resp: requests.Response) -> Job:
        data = self._decode_json(resp)
        try:
            return Job.from_json(data, retry_after=parse_retry_after(resp.headers.get("Retry-After")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ServerFailed(f"The server {self.host} sent a job description without an id or status.") from exc

    def _json(self, method: str, path: str, expected: tuple[int, ...] = (200,), auth: bool = True) -> dict[str, Any]:
        return self._decode_json(self._request(method, path, expected=expected, auth=auth))

    def _decode_json(self, resp: requests.Response) -> dict[str, Any]:
        try:
            data = resp.json()
        except ValueError as exc:
            raise ServerFailed(
                f"The server {self.host} answered {resp.request.path_url} with something that is not JSON; "
                "is the URL pointing at a PartCrafter server?"
            ) from exc
        if not isinstance(data, dict):
            raise ServerFailed(f"The server {self.host} sent an unexpected answer to {resp.request.path_url}.")
        return data

    def _request(
        self,
        method: str,
        path: str,
        expected: tuple[int, ...] = (200,),
        auth: bool = True,
        job_id: str = "",
        timeout: tuple[float, float] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        if auth and not self._key:
            raise AuthFailed(
                f"No API key is set for {self.host}. Enter it in the PartCrafter preferences "
                f"or set the {API_KEY_ENV} environment variable."
            )
        timeout = timeout or self.timeout
        try:
            resp = self._session.request(
                method,
                self.endpoint.url(path),
                auth=_Bearer(self._key if auth else ""),
                timeout=timeout,
                verify=self._verify,
                allow_redirects=False,
                **kwargs,
            )
        except requests.exceptions.RequestException as exc:
            raise self._transport_error(exc, timeout) from None
        if resp.status_code in expected:
            return resp
        try:
            raise self._http_error(resp, job_id)
        finally:
            resp.close()

    def _transport_error(self, exc: requests.exceptions.RequestException, timeout: tuple[float, float]) -> RemoteError:
        host = self.host
        if isinstance(exc, requests.exceptions.SSLError):
            reason = _tls_reason(exc)
            return TLSFailed(
                f"Could not open a secure connection to {host}: {reason}. If the server uses a private "
                "certificate authority, set its CA bundle in the PartCrafter preferences."
            )
        if isinstance(exc, requests.exceptions.ProxyError):
            return ServerUnreachable(
                f"The proxy from the HTTPS_PROXY/HTTP_PROXY environment variables could not reach {host}. "
                "Check the proxy settings."
            )
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return ServerUnreachable(f"The server {host} did not accept a connection within {timeout[0]:g} seconds.")
        if isinstance(exc, requests.exceptions.ReadTimeout):
            return ServerUnreachable(f"The server {host} did not answer within {timeout[1]:g} seconds.")
        text = _chain_text(exc)
        if "NameResolutionError" in text or "Name or service not known" in text or "getaddrinfo" in text or (
            "nodename nor servname" in text
        ):
            return ServerUnreachable(
                f"Cannot find the server {host}: the name does not resolve (DNS). Check the server URL and your network."
            )
        if "Connection refused" in text or "ConnectionRefusedError" in text or "Errno 111" in text:
            return ServerUnreachable(
                f"The server {host} refused the connection. Check that it is running and that the URL's port is right."
            )
        if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
            return DownloadFailed(f"The answer from {host} was cut off or damaged in transit. Try again.")
        return ServerUnreachable(f"Cannot connect to the server {host}. Check the URL and your network.")

    def _http_error(self, resp: requests.Response, job_id: str) -> RemoteError:
        """The error for a refused request, chosen by the answer's stable `code` (docs/api.md),
        or by its status where the answer is not the server's (a proxy, another program)."""
        status = resp.status_code
        if 300 <= status < 400:
            where = self._clean(resp.headers.get("Location", ""))
            return ServerFailed(
                f"The server {self.host} answered with a redirect ({status}) to {where or 'another address'}; "
                "PartCrafter does not follow redirects. Put the final address in the Server URL.",
                status=status,
            )
        problem = _problem(resp)
        code = str(problem.get("code") or "")
        known = code if code in _PROBLEMS else _STATUS_CODES.get(status, "internal_error" if status >= 500 else "")
        if not known:
            detail = self._clean(str(problem.get("detail") or problem.get("title") or ""))
            said = f": {detail}" if detail else "."
            return ServerFailed(f"Unexpected answer {status} from the server {self.host}{said}", status=status, code=code)
        if known == "not_found" and not job_id:
            known = "no_api"
        cls, text = _PROBLEMS[known]
        detail = self._clean(str(problem.get("detail") or problem.get("title") or ""))
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        message = text.format(
            host=self.host,
            status=status,
            said=f": {detail}" if detail else ".",
            job=job_id or "?",
            base=self.endpoint.base_url,
            env=API_KEY_ENV,
            current=self._clean(str(problem.get("current_version") or "")) or "unknown",
            wait=f" Try again in {retry_after:.0f} seconds." if retry_after else " Try again later.",
            queue=", queue full" if code == "queue_full" else "",
        )
        if cls is PolicyOutdated:
            return PolicyOutdated(message, current_version=str(problem.get("current_version") or ""), code=code)
        if cls is RateLimited:
            return RateLimited(message, retry_after=retry_after, status=status, code=code)
        return cls(message, status=status, code=code)

    def _read_body(self, resp: requests.Response, limit: int, what: str) -> bytes:
        chunks: list[bytes] = []

        class _Sink:
            def write(self, b: bytes) -> None:
                chunks.append(b)

        self._copy_body(resp, _Sink(), limit, what)
        return b"".join(chunks)

    def _copy_body(self, resp: requests.Response, sink: Any, limit: int, what: str, cancel: CancelToken | None = None) -> int:
        declared = resp.headers.get("Content-Length")
        encoded = resp.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
        total = 0
        try:
            for chunk in resp.iter_content(_CHUNK):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                total += len(chunk)
                if total > limit:
                    raise DownloadFailed(f"{what.capitalize()} from {self.host} is larger than {limit} bytes; refusing it.")
                sink.write(chunk)
        except requests.exceptions.RequestException as exc:
            raise DownloadFailed(
                f"The download of {what} from {self.host} was cut off after {total} bytes. Try again; "
                "the result stays on the server until it expires."
            ) from exc
        if declared is not None and not encoded and declared.isdigit() and int(declared) != total:
            raise DownloadFailed(
                f"The download of {what} from {self.host} was cut off ({total} of {declared} bytes). Try again; "
                "the result stays on the server until it expires."
            )
        return total

    def _clean(self, text: str) -> str:
        """Server-supplied text, shortened, without control characters, never echoing the key."""
        text = re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()[:300]
        if self._key:
            text = text.replace(self._key, "***")
        return text


# The server's stable problem codes (docs/api.md) -> the error and what it says. Fields:
# {host}, {status}, {said} (": detail" or "."), {job}, {base}, {env}, {current}, {wait}, {queue}.
_PROBLEMS: dict[str, tuple[type[RemoteError], str]] = {
    "unauthorized": (
        AuthFailed,
        "The server {host} did not accept the API key ({status}). Check the key in the PartCrafter preferences "
        "or the {env} environment variable.",
    ),
    "forbidden": (AuthFailed, "The server {host} refused this API key access ({status}){said}"),
    "not_found": (
        JobNotFound,
        "The server {host} has no job {job} for this API key ({status}): it was deleted, or it was created with another key.",
    ),
    "no_api": (JobNotFound, "{base} has no PartCrafter API here ({status}). Check the server URL."),
    "policy_outdated": (
        PolicyOutdated,
        "The privacy policy of {host} changed (now version {current}) since you agreed to it. "
        "Nothing was uploaded; run again to review the new policy.",
    ),
    "processing_restricted": (
        UploadRejected,
        "You restricted processing on {host}, so it accepts no new job; nothing was uploaded. "
        "Lift the restriction under 'Your Data on This Server' to generate there again.",
    ),
    "not_ready": (ServerFailed, "The server {host} says the job is not ready yet ({status}){said}"),
    "expired": (
        ResultExpired,
        "The result of job {job} on {host} was erased by the server's retention policy ({status}). Run the generation again.",
    ),
    "result_damaged": (
        ResultExpired,
        "The result of job {job} on {host} was damaged in the server's storage and cannot be recovered ({status}). "
        "Run the generation again.",
    ),
    "too_large": (UploadRejected, "The server {host} refused the image as too large ({status}){said}"),
    "unsupported_media_type": (UploadRejected, "The server {host} does not accept this kind of file ({status}){said}"),
    "invalid_image": (UploadRejected, "The server {host} rejected the input ({status}){said}"),
    "invalid_parameters": (UploadRejected, "The server {host} rejected the input ({status}){said}"),
    "bad_request": (UploadRejected, "The server {host} could not read the request ({status}){said}"),
    "consent_required": (ConsentRequired, "The server {host} requires consent to its privacy policy before an upload ({status})."),
    "rate_limited": (
        RateLimited,
        "The server {host} is limiting requests for this API key ({status}: too many requests or jobs at once).{wait}",
    ),
    "queue_full": (RateLimited, "The server {host} is busy or temporarily unavailable ({status}{queue}).{wait}"),
    "unavailable": (RateLimited, "The server {host} is busy or temporarily unavailable ({status}{queue}).{wait}"),
    "internal_error": (
        ServerFailed,
        "The server {host} had an internal error ({status}). Try again later; if it keeps happening, "
        "tell the server's operator.",
    ),
}
# An answer without a code we know (a proxy's, an older server's): its status decides.
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "not_ready",
    410: "expired",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_parameters",
    428: "consent_required",
    429: "rate_limited",
    503: "unavailable",
}


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _problem(resp: requests.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _chain_text(exc: BaseException) -> str:
    """Types and messages of an exception and everything it wraps (requests nests urllib3 errors)."""
    seen: list[str] = []
    stack: list[Any] = [exc]
    while stack and len(seen) < 20:
        e = stack.pop()
        if not isinstance(e, BaseException):
            continue
        seen.append(f"{type(e).__name__}: {e}")
        stack.extend(a for a in e.args if isinstance(a, BaseException))
        for attr in ("reason", "__cause__", "__context__"):
            inner = getattr(e, attr, None)
            if isinstance(inner, BaseException):
                stack.append(inner)
    return " | ".join(seen)


def _tls_reason(exc: BaseException) -> str:
    text = _chain_text(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        if "self-signed" in text or "self signed" in text:
            return "its certificate is self-signed and not trusted"
        if "expired" in text:
            return "its certificate has expired"
        if "Hostname mismatch" in text or "doesn't match" in text or "IP address mismatch" in text:
            return "its certificate is for a different host name"
        return "its certificate could not be verified"
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
        return "it does not speak HTTPS on this port (try http:// for a local server, or check the port)"
    return "the TLS handshake failed"


def _int_or_none(value: Any) -> int | None:
    if value is None or value == "":
        return None
    return int(value)
