"""Schemathesis against the served OpenAPI schema of a real server process.

Driven through Hypothesis directly (one `@given` per operation) rather than the
schemathesis pytest plugin, whose collection hook does not support this pytest.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from server_test_support import ServerProcess

OPERATIONS = [
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs/{job_id}"),
    ("POST", "/v1/jobs/{job_id}/cancel"),
    ("DELETE", "/v1/jobs/{job_id}"),
    ("GET", "/v1/jobs/{job_id}/result"),
    ("GET", "/v1/me"),
    ("GET", "/v1/me/export"),
    ("PATCH", "/v1/me"),
    ("DELETE", "/v1/me"),
    ("GET", "/v1/policy"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
]


@pytest.fixture(scope="module")
def api_schema(server: ServerProcess):
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


def test_schema_lists_every_operation(api_schema) -> None:
    found = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert found == set(OPERATIONS)


@pytest.mark.parametrize("method,path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_conforms_to_schema(api_schema, server: ServerProcess, server_keys: list[str], method: str, path: str) -> None:
    operation = api_schema[path][method]
    auth = {"Authorization": f"Bearer {server_keys[2]}"}

    # A schema cannot say "a PNG of at least 16x16 with a foreground", so schema-valid
    # uploads may rightly be refused (415/422): that one check is off for submissions.
    excluded = [schemathesis.checks.positive_data_acceptance] if path == "/v1/jobs" else []

    @given(case=operation.as_strategy())
    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
    def check(case) -> None:
        case.call_and_validate(headers=auth, excluded_checks=excluded)

    check()
    assert server.healthy()
    if method == "PATCH":  # the fuzzed choices must not restrict the shared key for later tests
        import httpx

        reset = {"processing_restricted": False, "analytics_objection": False}
        assert httpx.patch(f"{server.url}/v1/me", json=reset, headers=auth).status_code == 200
