"""The local consent ledger: an append-only JSON-lines file, one decision per line.

Each line: time (UTC ISO-8601), host, server (base URL), policy version, decision
("accepted", "declined" or "uploaded"), the SHA-256, pixel size and byte size
of the image that was (or would have been) sent, and the SHA-256 of the original
file it was made from (`image_sha256`, as each part object's
`partcrafter_image_sha256`; the sent PNG's hash is its `partcrafter_upload_sha256`). "uploaded" lines record uploads
made under a standing consent, so the ledger shows everything that left the machine.
Lines are only ever appended and fsync'ed; an unreadable line (e.g. cut by a crash)
is skipped rather than trusted.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

LEDGER_FILE = "consent_ledger.jsonl"
DECISIONS = ("accepted", "declined", "uploaded", "withdrawn")


@dataclass(frozen=True)
class ConsentEntry:
    time: str
    host: str
    server: str
    policy_version: str
    decision: str
    sha256: str
    width: int
    height: int
    bytes: int
    via: str  # "dialog", "ask-every-time dialog", "--consent-upload", "operator property", ...
    image_sha256: str = ""  # the original file's SHA-256 (empty in lines written before it was recorded)


class ImageFacts(Protocol):
    """What the ledger records about an image (an UploadImage, the consent dialog)."""

    sha256: str
    width: int
    height: int
    size: int


class ConsentLedger:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory) / LEDGER_FILE

    def record(
        self,
        *,
        host: str,
        server: str,
        policy_version: str,
        decision: str,
        sha256: str = "",
        width: int = 0,
        height: int = 0,
        size: int = 0,
        via: str = "dialog",
        image_sha256: str = "",
    ) -> ConsentEntry:
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}")
        entry = ConsentEntry(
            time=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            host=host,
            server=server,
            policy_version=policy_version,
            decision=decision,
            sha256=sha256,
            width=width,
            height=height,
            bytes=size,
            via=via,
            image_sha256=image_sha256,
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(entry.__dict__, sort_keys=True) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        return entry

    def record_image(
        self, decision: str, host: str, server: str, policy_version: str, image: ImageFacts, via: str,
        image_sha256: str = "",
    ) -> ConsentEntry:
        """A decision about one image (the one about to be sent, or shown in the dialog);
        `image_sha256` is the original file's."""
        return self.record(
            host=host,
            server=server,
            policy_version=policy_version,
            decision=decision,
            sha256=image.sha256,
            width=image.width,
            height=image.height,
            size=image.size,
            via=via,
            image_sha256=image_sha256,
        )

    def entries(self) -> list[ConsentEntry]:
        if not self.path.is_file():
            return []
        out: list[ConsentEntry] = []
        with open(self.path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    out.append(ConsentEntry(**json.loads(line)))
                except (ValueError, TypeError):
                    continue  # a torn or foreign line is not a consent
        return out

    def latest_decision(self, server: str, policy_version: str) -> str | None:
        """The last accept/decline/withdraw for this server and policy version."""
        for entry in reversed(self.entries()):
            if entry.server == server and entry.policy_version == policy_version and entry.decision != "uploaded":
                return entry.decision
        return None

    def needs_consent(self, server: str, policy_version: str, ask_every_time: bool) -> bool:
        """True unless a standing acceptance covers this server and policy version."""
        if ask_every_time:
            return True
        return self.latest_decision(server, policy_version) != "accepted"
