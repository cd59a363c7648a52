"""Paths every test area uses. Area-specific fixtures live in each sub-folder's conftest."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared").resolve()
IMAGES = SHARED / "images"
CONFORMANCE = SHARED / "conformance" / "partcrafter"

# Helpers shared by several test areas (e.g. tls_cert) import by plain name.
sys.path.insert(0, str(Path(__file__).resolve().parent))


# Our code must use nothing that Blender (or a library) deprecates: Blender 5.x announces its 6.0
# removals as DeprecationWarnings (e.g. Material.use_nodes). An "error" filter is not enough, because an
# exception raised inside Blender's C code can be swallowed, so every recorded warning whose code line is
# in the add-on package fails the run at the end, listed.
_PACKAGE = REPO / "partcrafter_blender"
_DEPRECATED: list[str] = []


def pytest_warning_recorded(warning_message: warnings.WarningMessage, when: str, nodeid: str, location) -> None:
    if issubclass(warning_message.category, DeprecationWarning) and Path(warning_message.filename).is_relative_to(_PACKAGE):
        _DEPRECATED.append(f"{nodeid or when}: {warning_message.filename}:{warning_message.lineno}: {warning_message.message}")


def pytest_terminal_summary(terminalreporter) -> None:
    if _DEPRECATED:
        terminalreporter.section("deprecated API used by partcrafter_blender", red=True)
        for line in dict.fromkeys(_DEPRECATED):
            terminalreporter.line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _DEPRECATED and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
