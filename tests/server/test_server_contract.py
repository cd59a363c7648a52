"""The Schemathesis CLI, every check on, against the served schema of a real server process.

Bounded (a few examples per operation, no stateful phase) so it fits in CI; a response
that breaks the contract the OpenAPI schema states makes the run, and this test, fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from server_test_support import POLICY, Client, ServerProcess

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


def test_wrong_method_lists_every_method_of_the_path(client: Client) -> None:
    for path, allowed in (("/v1/me", "DELETE, GET, PATCH"), ("/v1/jobs/some-id", "DELETE, GET")):
        r = client.http.options(path)
        assert (r.status_code, r.headers.get("Allow"), r.json()["code"]) == (405, allowed, "method_not_allowed")


def test_me_flags_are_strict_booleans(client: Client) -> None:
    for body in ({"analytics_objection": 0}, {"processing_restricted": None}, {"analytics_objection": "true"}):
        r = client.http.patch("/v1/me", json=body)
        assert r.status_code == 400, (body, r.text)
    me = client.http.get("/v1/me").json()
    assert (me["processing_restricted"], me["analytics_objection"]) == (False, False)


def test_an_unknown_upload_field_is_refused_by_name(client: Client, sample_png: bytes) -> None:
    data = {"params": json.dumps({}), "policy_version": POLICY, "comment": "hi"}
    r = client.http.post("/v1/jobs", files={"image": ("a.png", sample_png, "image/png")}, data=data)
    assert r.status_code == 400 and "'comment'" in r.json()["detail"], r.text
    schema = client.http.get("/openapi.json").json()["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]
    assert schema["multipart/form-data"]["schema"]["additionalProperties"] is False


def test_an_idempotency_key_outside_its_documented_pattern_is_refused(client: Client, sample_png: bytes) -> None:
    r = client.submit(sample_png, headers={"Idempotency-Key": "has a space"})
    assert r.status_code == 400 and "Idempotency-Key" in r.json()["detail"], r.text
