"""A worker process that dies while starting is reported, reaped and its pipe closed."""

from __future__ import annotations

import multiprocessing as mp
from types import SimpleNamespace

import pytest

from partcrafter_server.dispatch import WorkerSlot


def test_a_worker_that_dies_on_start_is_cleaned_up() -> None:
    pool = SimpleNamespace(instance="test", settings=SimpleNamespace(engine_plugins=["partcrafter_no_such_plugin"]))
    slot = WorkerSlot(pool, 0, None)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="did not start"):
        slot._spawn()
    assert slot.proc is None and slot.conn is None
    assert mp.active_children() == []  # reaped, not left as a zombie
