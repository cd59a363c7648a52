"""Paths every test area uses. Area-specific fixtures live in each sub-folder's conftest."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared").resolve()
IMAGES = SHARED / "images"
CONFORMANCE = SHARED / "conformance" / "partcrafter"

# Helpers shared by several test areas (e.g. tls_cert) import by plain name.
sys.path.insert(0, str(Path(__file__).resolve().parent))
