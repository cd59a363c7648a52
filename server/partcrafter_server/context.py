"""Everything a request or a worker needs, built once per server from its settings."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from . import holders

from .blobs import BlobStore, KeyRing
from .clock import Clock, system_clock
from .jobs import JobService
from .limits import RateLimiter
from .metrics import Metrics
from .pacing import Pace
from .retention import Sweeper
from .settings import Settings
from .store import Database


@dataclass
class ServerContext:
    settings: Settings
    clock: Clock
    db: Database
    keyring: KeyRing
    blobs: BlobStore
    metrics: Metrics
    service: JobService
    sweeper: Sweeper
    submit_limiter: RateLimiter
    request_limiter: RateLimiter
    pace: Pace
    engine_checks: dict[str, str | None] = field(default_factory=dict)  # engine -> why unavailable (None: fine)


def build_context(settings: Settings, clock: Clock = system_clock) -> ServerContext:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.data_dir, 0o700)  # keys hashes, wrapped keys, audit log: the server's user only
    db = Database(settings.db_path)
    keyring = KeyRing(settings.keys_path)
    blobs = BlobStore(settings.data_dir / "blobs", keyring, db)
    metrics = Metrics()
    metrics.uncounted = lambda owner: holders.objects_to_analytics(db, owner)
    service = JobService(settings, db, blobs, clock, metrics)
    sweeper = Sweeper(settings, db, blobs, service, clock, metrics)
    metrics.gauge("partcrafter_queue_depth", lambda: float(db.queued_count()))
    return ServerContext(
        settings=settings,
        clock=clock,
        db=db,
        keyring=keyring,
        blobs=blobs,
        metrics=metrics,
        service=service,
        sweeper=sweeper,
        submit_limiter=RateLimiter(settings.submit_rate_per_minute, clock),
        request_limiter=RateLimiter(settings.request_rate_per_minute, clock),
        pace=Pace(db, clock),
    )
