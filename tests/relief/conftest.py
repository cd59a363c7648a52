"""Relief engine tests: make the area's helper module importable, share a figure."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from relief_support import Figure, block_figure  # noqa: E402


@pytest.fixture(scope="session")
def figure() -> Figure:
    return block_figure()
