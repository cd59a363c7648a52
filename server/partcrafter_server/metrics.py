"""Prometheus text metrics: aggregate counters only.

Labels are drawn from closed sets (route templates, status words, problem codes), so
no key id, job id, address or file name can ever become a label value. A key holder
who objects to the analytics is not counted at all: callers pass the owner, and
`uncounted(owner)` (wired to the holder's choice) drops the increment.
"""

from __future__ import annotations

import threading
from typing import Callable

_HELP = {
    "partcrafter_http_requests_total": "HTTP requests by route template and status code.",
    "partcrafter_jobs_submitted_total": "Jobs accepted.",
    "partcrafter_jobs_finished_total": "Jobs that reached a final state, by state.",
    "partcrafter_uploads_refused_total": "Uploads refused at intake, by problem code.",
    "partcrafter_blobs_shredded_total": "Encrypted blobs erased (key destroyed, then file).",
    "partcrafter_worker_losses_total": "Worker processes lost while holding a job.",
    "partcrafter_worker_restarts_total": "Worker processes started to replace a lost one.",
    "partcrafter_sweeps_total": "Retention sweeps run.",
    "partcrafter_queue_depth": "Jobs waiting for a worker.",
    "partcrafter_workers": "Worker processes configured.",
}


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._gauges: dict[str, Callable[[], float]] = {}
        self.uncounted: Callable[[str], bool] = lambda _owner: False

    def inc(self, name: str, value: float = 1, labels: dict[str, str] | None = None, owner: str | None = None) -> None:
        if owner is not None and self.uncounted(owner):
            return
        key = (name, tuple(sorted((labels or {}).items())))
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + value

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        self._gauges[name] = read

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            counters = sorted(self._counters.items())
        seen: set[str] = set()
        for (name, labels), value in counters:
            if name not in seen:
                seen.add(name)
                lines += [f"# HELP {name} {_HELP.get(name, name)}", f"# TYPE {name} counter"]
            label_text = ",".join(f'{k}="{v}"' for k, v in labels)
            lines.append(f"{name}{{{label_text}}} {value:g}" if label_text else f"{name} {value:g}")
        for name, read in sorted(self._gauges.items()):
            lines += [f"# HELP {name} {_HELP.get(name, name)}", f"# TYPE {name} gauge", f"{name} {read():g}"]
        return "\n".join(lines) + "\n"
