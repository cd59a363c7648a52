"""The Schemathesis CLI, every check on, against the served schema of a real server process.

Bounded (a few examples per operation, no stateful phase) so it fits in CI; a response
that breaks the contract the OpenAPI schema states makes the run, and this test, fail.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from server_test_support import ServerProcess

MAX_EXAMPLES = 25


# A schema cannot say "a PNG, JPEG or WEBP of at least 16x16 pixels that decodes": a schema-valid
# upload may rightly be refused as another format (415) or an invalid_image (422), both documented
# on the operation. Only there; every other check and operation keeps Schemathesis's defaults.
CONFIG = """
[[operations]]
include-path = "/v1/jobs"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "415", "422", "429"]
"""


def test_schemathesis_all_checks_pass(server: ServerProcess, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    key = server.new_key()  # its own holder: what the fuzzing restricts or erases touches no other test's key
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())",  # it has no __main__
            "--config-file",
            str(config),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--phases",
            "examples,coverage,fuzzing",  # the stateful phase is unbounded in time; each operation is fuzzed alone
            "--workers",
            "1",
            "--seed",
            "22",
            "--header",
            f"Authorization: Bearer {key}",
            "--request-timeout",
            "20",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=170,
        cwd=tmp_path,  # its report folder lands here
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert server.healthy()
