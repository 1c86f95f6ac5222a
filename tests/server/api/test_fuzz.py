"""Schemathesis against the live server's OpenAPI schema: no 5xx, no schema violations.

Every operation gets a bounded number of generated examples, so this runs in CI
in well under a minute; the test prints how many examples it tried. (Driven
through Hypothesis directly: schemathesis' pytest plugin does not support
the pytest release we run.)
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.helpers import live_server, make_settings

pytestmark = pytest.mark.slow
EXAMPLES_PER_OPERATION = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _fuzz(operation, tried: dict[str, int]) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case):
        tried[operation.label] = tried.get(operation.label, 0) + 1
        case.call_and_validate(checks=CHECKS)

    run()


def test_generated_requests_never_get_5xx_and_responses_match_the_schema(tmp_path, capsys):
    tried: dict[str, int] = {}
    with live_server(make_settings(tmp_path)) as base_url:
        schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 10
        for operation in operations:
            _fuzz(operation, tried)
    with capsys.disabled():
        print(f"\nschemathesis: {sum(tried.values())} examples over {len(tried)} operations")
    assert len(tried) == len(operations)
