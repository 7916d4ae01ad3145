"""Schemathesis over the live `/openapi.json`: every operation, with auth, a fixed example budget.

Generated requests (valid and invalid ones) must never produce a 5xx, and
every response must match what the schema documents: status codes, content
types, headers and bodies. The budget is small and derandomized, so the run
is repeatable and takes well under a minute.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from gateway_support import Gateway
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
#: Examples per operation and mode: a fast budget in the suite, more from scripts/fuzz.
EXAMPLES_PER_OPERATION = int(os.environ.get("PANTHEON_FUZZ_EXAMPLES", "25"))


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_live_api_conforms_to_its_openapi_document(
    stack_env: dict[str, str], mode: GenerationMode
) -> None:
    gw = Gateway.from_env(stack_env)
    schema = schemathesis.openapi.from_url(f"{gw.url}/openapi.json", verify=gw.ca_file, timeout=10)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 8
    for operation in operations:
        raw = operation.definition.raw
        if mode is GenerationMode.NEGATIVE and not (raw.get("parameters") or raw.get("requestBody")):
            continue  # nothing to make invalid (health and metrics routes)

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def conforms(case: Any) -> None:
            # A valid key on every call, so generated requests get past auth.
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {gw.key}"}
            case.call_and_validate(base_url=gw.url, checks=CHECKS, verify=gw.ca_file, timeout=30)

        conforms()


def test_a_search_window_of_centuries_is_a_client_error(stack_env: dict[str, str]) -> None:
    with Gateway.from_env(stack_env).client() as http:
        response = http.get("/v1/objects", params={"data_type": "sensor.x", "since": "0207-05-13T15:40:07Z"})
    assert response.status_code == 400
