"""Schemathesis against the API's own OpenAPI document: every operation, with data
the schema allows and data it does not, as a session with every permission. No
answer may be a server error, and every answer must be one the document describes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from tests.api.conftest import ApiWorld, open_world

from mangostore.api import ApiSettings

#: Examples per operation: enough to reach every route's refusals, few enough for
#: the whole run to stay short.
EXAMPLES = 6


@pytest.fixture
def fuzzed() -> Iterator[ApiWorld]:
    """The API with limits a fuzzer does not trip over (a burst it cannot spend)."""
    yield from open_world(ApiSettings(session_burst=1_000_000, stream_max_s=1))


def test_every_operation_answers_as_documented(fuzzed: ApiWorld) -> None:
    headers = fuzzed.headers(fuzzed.ann)
    fuzzed.db.projects.create(user_id=fuzzed.ann.id, name="site", path="/site")
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed.client.app)
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    operations = [result.ok() for result in schema.get_all_operations()]
    statuses: Counter[int] = Counter()
    assert len(operations) >= 30
    for operation in operations:
        if operation.path == "/v1/logout":
            continue  # it would end the session the other operations use

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            if case.path == "/v1/notifications/stream" and case.query is not None:
                case.query["timeout_s"] = 1
            response = case.call_and_validate(headers=headers, checks=checks)
            statuses[response.status_code] += 1

        run()
    # The run reached the routes: accepted input and refused input both came back.
    assert statuses[200] + statuses[201] > 0
    assert statuses[422] > 0
