"""Shared by the PartCrafter engine tests: where the conformance data lives, and one test per case.

The conformance data (shared/conformance/partcrafter, next to the repository) is the
specification; every case listed in a section's cases.json becomes a test parameter.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFORMANCE = (REPO / ".." / "shared" / "conformance" / "partcrafter").resolve()

# fixture name -> (section folder, key in its cases.json whose entries are the cases)
CASE_FIXTURES = {
    "dit_case": ("dit", "cases"),
    "scheduler_case": ("scheduler", "cases"),
    "scheduler_schedule": ("scheduler", "schedules"),
    "preprocess_case": ("preprocess", "cases"),
    "vae_case": ("vae", "cases"),
}


def case_names(section: str, key: str = "cases") -> list[str]:
    return sorted(json.loads((CONFORMANCE / section / "cases.json").read_text(encoding="utf-8"))[key])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for fixture, (section, key) in CASE_FIXTURES.items():
        if fixture in metafunc.fixturenames:
            metafunc.parametrize(fixture, case_names(section, key))


@pytest.fixture(scope="session")
def conformance() -> Path:
    assert CONFORMANCE.is_dir(), f"conformance data not found at {CONFORMANCE}"
    return CONFORMANCE
