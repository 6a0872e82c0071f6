"""Contract fuzzing with Schemathesis against the app's own OpenAPI document.

Every operation gets generated requests, valid ("positive") and schema-violating ("negative");
every answer must be below 500 and match what the document says: a documented status, content
type, headers and body schema. Shared by tests/reliability/test_contract.py (few examples, a
fake model) and `python -m benchmarks.reliability` (many examples, the real model).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from schemathesis.core.failures import FailureGroup

logger = logging.getLogger(__name__)

MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
# What the service promises: no 5xx, and answers as documented.
CONTRACT_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    unsupported_method,
]
# Stricter checks on how precise the document is (does valid input get 2xx, is invalid input
# refused). Reported by the long run, not enforced: JSON Schema cannot say that num_captions
# must not exceed beam_size, that max_length is bounded by the model, or that the bytes must be
# an image, so "valid" requests get 422/415; see docs/reliability.md for the other findings.
PRECISION_CHECKS = [positive_data_acceptance, negative_data_rejection]


def load_schema(app: Any) -> schemathesis.BaseSchema:
    """The app's /openapi.json, fetched in-process (this starts the app's lifespan once)."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema.config.generation.update(modes=list(MODES))
    # 413 (too many files, too large) refuses a request as surely as 400 or 422 does.
    rejection = schema.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "413"]
    return schema


@dataclass
class ContractStats:
    requests: Counter[str] = field(default_factory=Counter)  # "POST /caption 415"
    failures: list[str] = field(default_factory=list)  # contract violations (must stay empty)
    precision: Counter[str] = field(default_factory=Counter)  # precision-check findings
    precision_examples: dict[str, str] = field(default_factory=dict)
    without_cases: list[str] = field(default_factory=list)  # e.g. "GET /health [negative]"
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        by_status: Counter[str] = Counter()
        for key, count in self.requests.items():
            by_status[key.rsplit(" ", 1)[1]] += count
        return {
            "requests": sum(self.requests.values()),
            "by_status": dict(sorted(by_status.items())),
            "by_operation": dict(sorted(self.requests.items())),
            "contract_failures": self.failures,
            "precision_findings": dict(self.precision),
            "precision_examples": self.precision_examples,
            "without_cases": self.without_cases,
            "seconds": round(self.seconds, 1),
        }


def run_contract(
    app: Any, max_examples: int, headers: dict[str, str] | None = None
) -> ContractStats:
    """Fuzz every operation in both modes; contract failures are collected, not raised.
    `headers` go with every request (the API key, when the app has keys)."""
    stats = ContractStats()
    started = time.perf_counter()
    schema = load_schema(app)
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in MODES:
            _fuzz_operation(operation, mode, max_examples, stats, headers or {})
    stats.seconds = time.perf_counter() - started
    return stats


def _fuzz_operation(
    operation: Any,
    mode: schemathesis.GenerationMode,
    max_examples: int,
    stats: ContractStats,
    headers: dict[str, str],
) -> None:
    label = f"{operation.method.upper()} {operation.path}"

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=True,  # the same requests every run: the report is reproducible
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: schemathesis.Case) -> None:
        response = case.call(headers=headers)
        stats.requests[f"{label} {response.status_code}"] += 1
        try:
            case.validate_response(response, checks=CONTRACT_CHECKS)
        except FailureGroup as exc:
            stats.failures.append(f"{label} [{mode.value}]: {_first_line(exc)}")
        try:
            case.validate_response(response, checks=PRECISION_CHECKS)
        except FailureGroup as exc:
            key = f"{label} [{mode.value}]: {exc.exceptions[0].title}"
            stats.precision[key] += 1
            detail = " ".join(str(exc.exceptions[0]).split())
            component = (
                detail[detail.find("Invalid component") :] if "Invalid comp" in detail else ""
            )
            stats.precision_examples.setdefault(
                key,
                f"{response.status_code} {' '.join(response.text.split())[:160]} {component}",
            )

    logger.info("contract fuzzing %s (%s)", label, mode.value)
    try:
        fuzz()
    except Unsatisfiable:  # nothing to make invalid, e.g. GET /health has no parameters
        stats.without_cases.append(f"{label} [{mode.value}]")


def _first_line(exc: FailureGroup) -> str:
    return " | ".join(" ".join(str(failure).split())[:300] for failure in exc.exceptions)
