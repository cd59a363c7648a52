"""RemoteEngine: the Engine contract, fulfilled by an inference server.

generate(): minimise the image, check it is what the user consented to, submit,
poll (honouring Retry-After, backing off otherwise), download, verify, parse.
Cancelling the token cancels the job on the server too, and erases it there unless
the user keeps server copies. The job stays in the pending list until `finish()` is
called after a successful import (which also deletes the server copy unless the user
keeps it), so a crash or restart in between loses nothing: `resume()` picks the job
up again.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from ..inference.contract import (
    Availability,
    CancelToken,
    FailedPart,
    GenerationRequest,
    GenerationResult,
    ProgressCallback,
    ProgressEvent,
)
from ..inference.errors import Cancelled
from ..inference.glb import GLBError, read_glb, read_glb_extras, read_glb_texture
from .client import Job, ServerClient
from .consent import ConsentLedger
from .errors import (
    ConsentRequired,
    DownloadFailed,
    JobNotFound,
    RateLimited,
    RemoteError,
    RemoteJobFailed,
    ResultExpired,
    ServerFailed,
    ServerUnreachable,
    TLSFailed,
)
from .minimise import UploadImage, minimise_pixels
from .pending import PendingJob, PendingJobs


@dataclass(frozen=True)
class PollSchedule:
    """How `_poll` waits between status requests. Not urllib3's Retry: that one sleeps
    inside the request, out of reach of the user's cancel, and a 429's Retry-After may be
    a minute; here every wait is cut into short slices that check the cancel token."""

    first: float = 0.25
    factor: float = 1.5
    cap: float = 5.0
    max_retry_after: float = 60.0
    transient_failures: int = 3  # consecutive network hiccups tolerated while polling


class RemoteEngine:
    name = "server"
    generates_variants = True  # one upload, one job; the server runs the variants

    def __init__(
        self,
        client: ServerClient,
        *,
        policy_version: str,
        server_engine: str = "",
        consented_sha256: str | None = None,
        consent_via: str | None = None,
        pending: PendingJobs | None = None,
        ledger: ConsentLedger | None = None,
        keep_on_server: bool = False,
        result_retention_minutes: int | None = None,
        schedule: PollSchedule = PollSchedule(),
    ) -> None:
        self.client = client
        self.policy_version = policy_version
        self.server_engine = server_engine
        self.consented_sha256 = consented_sha256
        self.consent_via = consent_via
        self.pending = pending
        self.ledger = ledger
        self.keep_on_server = keep_on_server
        self.result_retention_minutes = result_retention_minutes
        self.schedule = schedule
        self.label = f"Server ({client.host})"
        self.is_preview = server_engine != "partcrafter"

    def availability(self) -> Availability:
        return Availability(True)

    def close(self) -> None:
        """Close the client's connections; call when done (or use `with engine:`)."""
        self.client.close()

    def __enter__(self) -> RemoteEngine:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- the Engine contract ----

    def generate(
        self,
        request: GenerationRequest,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> GenerationResult:
        report = progress or (lambda _e: None)
        cancel = cancel or CancelToken()
        upload = minimise_pixels(request.image)
        self._check_consent(upload, request.image_sha256)
        cancel.raise_if_cancelled()
        report(ProgressEvent("upload", 0.02, f"Uploading {upload.width}x{upload.height} PNG ({upload.size:,} bytes) to {self.client.host}"))
        job = self.client.submit(
            upload.png,
            self._params(request),
            self.policy_version,
            idempotency_key=str(uuid.uuid4()),
            result_retention_minutes=self.result_retention_minutes,
        )
        self._record("uploaded", upload, f"job {job.id}", request.image_sha256)
        pending = PendingJob(
            job_id=job.id,
            server=self.client.endpoint.base_url,
            host=self.client.host,
            policy_version=self.policy_version,
            image_name=request.image_name,
            image_sha256=request.image_sha256,
            upload_sha256=upload.sha256,
            engine=self.server_engine,
            **request.params.to_wire(),
        )
        if self.pending is not None:
            self.pending.add(pending)
        return self._follow(job, pending, upload, report, cancel)

    def resume(
        self,
        pending: PendingJob,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> GenerationResult:
        """Continue a job submitted earlier (e.g. before Blender restarted)."""
        report = progress or (lambda _e: None)
        job = self.client.job(pending.job_id)
        return self._follow(job, pending, None, report, cancel or CancelToken())

    def finish(self, result: GenerationResult) -> str:
        """After a successful import: delete the server copy (unless kept) and forget the job.
        Returns a warning to show, or "" (the import already succeeded, so this never raises)."""
        job_id = str(result.metadata.get("job_id", ""))
        warning = ""
        if not self.keep_on_server:
            try:
                self.client.delete_job(job_id)
            except RemoteError as exc:
                if getattr(exc, "status", None) != 404:
                    warning = f"The model was imported, but deleting the copy on the server failed: {exc}"
        if self.pending is not None:
            self.pending.remove(self.client.endpoint.base_url, job_id)
        return warning

    def cancel_on_server(self, job_id: str) -> str:
        """A user's cancel: stop the job on the server, erase it there unless copies are
        kept, and forget it locally. Returns a sentence saying what happened; raises
        RemoteError (job still listed) only when the server could not be told to stop."""
        host = self.client.host
        try:
            self.client.cancel(job_id)
        except JobNotFound:
            self._forget_id(job_id)
            return f"Job {job_id} is no longer on the server {host}; nothing was left to cancel."
        self._forget_id(job_id)
        if self.keep_on_server:
            return f"Cancelled; the server {host} stopped job {job_id} and keeps it until its retention ends (preferences)."
        try:
            self.client.delete_job(job_id)
        except JobNotFound:
            pass  # erased already (e.g. by Delete Everything)
        except RemoteError as exc:
            return (
                f"Cancelled; the server {host} stopped job {job_id}, but erasing it there failed ({exc}). "
                "It is erased when its retention ends, or now with Delete Everything under Your Data."
            )
        return f"Cancelled; job {job_id} was stopped and erased on the server {host}."

    # ---- internals ----

    def _check_consent(self, upload: UploadImage, image_sha256: str) -> None:
        """Upload only under a recorded acceptance of the server's current policy version."""
        host, server = self.client.host, self.client.endpoint.base_url
        if self.consent_via:
            # Explicit consent given up front (--consent-upload, consent_upload=True): record it
            # against the policy the server states now, with the exact image about to be sent.
            self.policy_version = self.client.policy().version
            self._record("accepted", upload, self.consent_via, image_sha256)
            return
        if not self.policy_version:
            raise ConsentRequired(f"No consent to the privacy policy of {host} is recorded; nothing was sent.")
        if self.ledger is not None and self.ledger.latest_decision(server, self.policy_version) != "accepted":
            raise ConsentRequired(
                f"Your consent to policy {self.policy_version} of {host} is not in the consent ledger; nothing was sent."
            )
        if self.consented_sha256 is not None and self.consented_sha256 != upload.sha256:
            raise ConsentRequired(
                "The image changed after you agreed to upload it; nothing was sent. Run again to review it."
            )

    def _record(self, decision: str, upload: UploadImage, via: str, image_sha256: str) -> None:
        if self.ledger is not None:
            where = (self.client.host, self.client.endpoint.base_url)
            self.ledger.record_image(decision, *where, self.policy_version, upload, via, image_sha256)

    def _params(self, request: GenerationRequest) -> dict[str, Any]:
        params = request.params.to_wire()
        if self.server_engine:
            params["engine"] = self.server_engine
        return params

    def _follow(
        self,
        job: Job,
        pending: PendingJob,
        upload: UploadImage | None,
        report: ProgressCallback,
        cancel: CancelToken,
    ) -> GenerationResult:
        started = time.monotonic()
        job = self._poll(job, report, cancel)
        if job.status == "canceled":
            self._forget(pending)
            raise Cancelled(f"The job was cancelled on the server {self.client.host}.")
        if job.status == "expired":
            self._forget(pending)
            raise ResultExpired(f"The result of job {job.id} on {self.client.host} expired before it was downloaded.")
        if job.status == "failed":
            self._forget(pending)
            err = job.error or {}
            reason = str(err.get("message") or err.get("code") or "no reason given")
            raise RemoteJobFailed(f"The server {self.client.host} could not generate the model: {reason}")
        report(ProgressEvent("download", 0.96, f"Downloading the result from {self.client.host}"))
        data = self.client.result(job.id)
        try:
            parts = read_glb(data, name=f"The result of job {job.id}")
            texture = read_glb_texture(data)  # the relief preview's picture, when the server sent one
        except GLBError as exc:
            raise DownloadFailed(
                f"The result downloaded from {self.client.host} is not a usable model ({exc}). "
                "The job stays in the Unfinished jobs list; try resuming it."
            ) from exc
        params = job.params or {}
        failed = [
            FailedPart(index=int(p.get("index", i)), reason=str(p.get("reason") or "failed on the server"))
            for i, p in enumerate(job.parts)
            if p.get("status") == "failed"
        ]
        extras = read_glb_extras(data)
        metadata: dict[str, Any] = {
            "backend": "server",
            "server": self.client.endpoint.base_url,
            "server_host": self.client.host,
            "job_id": job.id,
            "policy_version": job.policy_version or pending.policy_version,
            "upload_sha256": pending.upload_sha256,
            "image_sha256": pending.image_sha256,
        }
        if upload is not None:
            metadata.update(upload_pixels=[upload.width, upload.height], upload_bytes=upload.size)
        if extras:
            metadata["server_extras"] = extras
        report(ProgressEvent("done", 1.0, f"Received {len(parts)} parts from {self.client.host}"))
        engine = job.engine or str(params.get("engine") or pending.engine or "server")
        self.is_preview = engine != "partcrafter"  # the engine that ran, which may be the server's default
        return GenerationResult(
            parts=parts,
            engine=engine,
            engine_version=str(extras.get("engine_version") or job.raw.get("engine_version") or ""),
            requested_parts=pending.num_parts,
            seed=int(params.get("seed", pending.seed)),
            steps=int(params.get("steps", pending.steps)),
            guidance=float(params.get("guidance", pending.guidance)),
            seconds=time.monotonic() - started,
            failed_parts=failed,
            metadata=metadata,
            variant_seeds=[int(s) for s in extras.get("variant_seeds", [])],
            texture=texture,
        )

    def _poll(self, job: Job, report: ProgressCallback, cancel: CancelToken) -> Job:
        delay = self.schedule.first
        hiccups = 0
        while not job.finished:
            report(self._progress_event(job))
            wait = job.retry_after if job.retry_after is not None else delay
            delay = min(delay * self.schedule.factor, self.schedule.cap)
            if self._sleep(min(wait, self.schedule.max_retry_after), cancel):
                return self._cancel_on_server(job)
            try:
                job = self.client.job(job.id)
                hiccups = 0
            except RateLimited as exc:
                job = Job(**{**job.__dict__, "retry_after": exc.retry_after or delay})
            except (ServerUnreachable, TLSFailed, ServerFailed) as exc:
                hiccups += 1
                if hiccups > self.schedule.transient_failures:
                    raise type(exc)(
                        f"{exc} The job {job.id} continues on the server; resume it from the Unfinished jobs list.",
                        status=exc.status,
                        code=exc.code,
                    ) from exc
        return job

    def _progress_event(self, job: Job) -> ProgressEvent:
        host = self.client.host
        if job.status == "queued":
            where = f" (position {job.queue_position})" if job.queue_position is not None else ""
            return ProgressEvent("queued", 0.05, f"Queued on {host}{where}")
        stage = job.stage or job.status
        fraction = 0.05 + 0.9 * min(max(job.progress, 0.0), 1.0)
        return ProgressEvent(stage, fraction, f"{host}: {stage} ({job.progress:.0%})")

    def _sleep(self, seconds: float, cancel: CancelToken) -> bool:
        """Sleep in short slices; True as soon as the user cancels."""
        end = time.monotonic() + max(seconds, 0.0)
        while True:
            if cancel.cancelled:
                return True
            left = end - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(0.05, left))

    def _cancel_on_server(self, job: Job) -> Job:
        try:
            outcome = self.cancel_on_server(job.id)
        except RemoteError as exc:
            raise Cancelled(
                f"Cancelled here, but the server {self.client.host} could not be told ({exc}). "
                "The job is still listed under Unfinished jobs; cancel it there."
            ) from exc
        raise Cancelled(outcome)

    def _forget(self, pending: PendingJob) -> None:
        self._forget_id(pending.job_id)

    def _forget_id(self, job_id: str) -> None:
        if self.pending is not None:
            self.pending.remove(self.client.endpoint.base_url, job_id)

