"""Contract fuzzing (quick version): Schemathesis against the app's own /openapi.json.

Every route, valid and schema-violating requests, the fast fake model: no 5xx, and every answer
is documented (status, content type, headers, body schema). `make reliability` runs the same
checks with many more examples against the real model.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings

from benchmarks.reliability_contract import CONTRACT_CHECKS, load_schema
from tests.support.apps import fake_model_app

EXAMPLES_PER_OPERATION = 25

# Built at import: `parametrize()` needs the schema when the tests are collected. The app's
# lifespan starts on the first request and lasts for the session; the fake model costs nothing.
APP = fake_model_app(max_batch_wait_ms=0)
schema = load_schema(APP)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    database=None,  # no .hypothesis folder in the work tree
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_is_documented_and_not_a_server_error(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=CONTRACT_CHECKS)


def test_the_document_covers_every_route() -> None:
    """The fuzzing above is only as wide as the document: every API route must be in it."""
    documented = {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}
    assert documented == {
        ("GET", "/health"),
        ("GET", "/ready"),
        ("GET", "/model"),
        ("GET", "/metrics"),
        ("POST", "/caption"),
        ("POST", "/captions"),
    }
