"""Paths every test area uses. Area-specific fixtures live in each sub-folder's conftest."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared").resolve()
IMAGES = SHARED / "images"
CONFORMANCE = SHARED / "conformance" / "partcrafter"
