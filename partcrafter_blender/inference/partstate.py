"""What a result keeps so that some of its parts can be regenerated later: a sidecar
file next to nothing else, in the extension's user folder, named in the .blend.

A sidecar is one .npz (numpy arrays only, no pickle): the engine's arrays (PartCrafter:
the final part latents, the image condition and the image; relief: the image and its
part labels) and a small JSON record. Its SHA-256 is stored with the result, so a file
that is missing or has changed is refused with a message instead of being trusted.
Pure numpy; no bpy, no torch.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EngineFailed

SUFFIX = ".npz"
_META = "meta"  # the JSON record, as bytes in a uint8 array
STATE_VERSION = 1


class RegenerationDataError(EngineFailed):
    """The sidecar a regeneration needs is missing, changed or unreadable."""


def save_state(folder: str | Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> tuple[str, str]:
    """Write a new sidecar in `folder` (owner-only permissions); returns (path, sha256)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    record = json.dumps({"version": STATE_VERSION, **meta}, sort_keys=True).encode("utf-8")
    np.savez(buffer, **arrays, **{_META: np.frombuffer(record, dtype=np.uint8)})
    data = buffer.getvalue()
    path = folder / f"{uuid.uuid4().hex}{SUFFIX}"
    partial = path.with_suffix(".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(partial, path)
    return str(path), hashlib.sha256(data).hexdigest()


def load_state(path: str | Path, sha256: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and record of the sidecar at `path`, checked against `sha256`."""
    if not path or not sha256:
        raise RegenerationDataError(
            "This result has no regeneration data (it was made before regeneration existed, imported from a file, "
            "or made on a server). Generate it again to regenerate its parts."
        )
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise RegenerationDataError(
            f"The regeneration data of this result ({Path(path).name}) is missing: it was erased in the add-on "
            "preferences, or the .blend was made on another machine. Generate the result again to regenerate its parts."
        ) from None
    except OSError as exc:
        raise RegenerationDataError(f"Cannot read the regeneration data {path}: {exc.strerror or exc}") from exc
    if hashlib.sha256(data).hexdigest() != sha256:
        raise RegenerationDataError(
            f"The regeneration data of this result ({Path(path).name}) has changed since the result was made "
            "(its checksum does not match), so it is not used. Generate the result again to regenerate its parts."
        )
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files if key != _META}
        meta = json.loads(bytes(npz[_META]).decode("utf-8"))
    return arrays, meta


def erase_states(folder: str | Path) -> int:
    """Delete every sidecar in `folder`; returns how many there were."""
    count = 0
    for path in Path(folder).glob(f"*{SUFFIX}"):
        path.unlink(missing_ok=True)
        count += 1
    return count
