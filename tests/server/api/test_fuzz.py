"""Schemathesis against the live server's OpenAPI schema: no 5xx, no schema violations.

Bounded examples per operation, so it runs in CI in well under a minute.
Each run prints how many examples were tried; the note quotes that count.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import live_server, make_settings

pytestmark = pytest.mark.slow
EXAMPLES_PER_OPERATION = 25
TRIED: dict[str, int] = {}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    with live_server(make_settings(tmp_path_factory.mktemp("fuzz"))) as base_url:
        yield schemathesis.openapi.from_url(f"{base_url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck)
)
def test_no_server_errors_and_responses_match_the_schema(case):
    TRIED[case.operation.label] = TRIED.get(case.operation.label, 0) + 1
    case.call_and_validate(
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ]
    )


def teardown_module(module):
    print(f"\nschemathesis examples tried: {sum(TRIED.values())} over {len(TRIED)} operations")
