"""Schemathesis against the model server's own OpenAPI schema: no generated request gets a 5xx.

Every documented operation is called in-process (ASGI) with generated input, both input that fits
the schema and input that does not, on a server with a real champion in a real MLflow registry.
Admin routes answer 401/403 without the token; that is a refusal, not a failure.
"""

from __future__ import annotations

import json
from collections import Counter

import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from mlops_core.adapters.catalog import DatasetCatalog

EXAMPLES = 60  # per operation and mode: the whole run stays well under a minute


def test_no_generated_request_gets_a_server_error(server: FastAPI) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", server)
    operations = [result.ok() for result in schema.get_all_operations()]
    documented = {(op.method.upper(), op.path) for op in operations}
    assert {("POST", "/predict"), ("POST", "/feedback"), ("POST", "/admin/refresh")} <= documented
    assert server.state.follower.snapshot.challenger is not None, "both variants are exercised"
    statuses: Counter[tuple[str, int]] = Counter()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        for operation in operations:

            @hsettings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case: schemathesis.Case) -> None:
                response = case.call()
                statuses[(case.path, response.status_code)] += 1
                case.validate_response(response, checks=[not_a_server_error])

            try:
                call()
            except Unsatisfiable:
                # An operation without parameters or body (GET /health) has no invalid input.
                if mode is GenerationMode.POSITIVE:
                    raise
    assert not any(status >= 500 for _, status in statuses), statuses
    # The run did reach the model: some generated requests were well-formed enough to predict.
    assert statuses[("/health", 200)] > 0
    assert any(path == "/admin/refresh" and status in (401, 403) for path, status in statuses)


SURROGATE_KEYS = ["\ud800", "user-\udfff", "\udc80\ud800"]  # lone halves JSON can escape

# Values a hostile or sloppy client puts in a record: JSON allows all of them.
hostile_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([10**400, -(10**400), 2**63, -(2**63) - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),  # lone surrogates included
    st.sampled_from(["", "\x00", *SURROGATE_KEYS, "🙂" * 50, "x" * 5_000]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def test_hostile_values_in_well_formed_records_are_a_422_or_an_answer(server: FastAPI) -> None:
    """Schemathesis cannot know the spec's features; here every feature is present, so the
    values themselves (huge integers, NaN, surrogates, wrong types) reach the checks and the
    model, and the routing key reaches the router."""
    spec = DatasetCatalog(server.state.settings).get("credit").spec
    good = {f: (1.0 if f in spec.numeric else "car") for f in spec.features}
    with TestClient(server) as client:

        @hsettings(max_examples=150, deadline=None, derandomize=True, database=None)
        @given(
            changes=st.dictionaries(st.sampled_from(list(spec.features)), hostile_values),
            extra=st.dictionaries(st.text(max_size=10), hostile_values, max_size=3),
            key=st.one_of(st.none(), st.text(max_size=300), st.sampled_from(SURROGATE_KEYS)),
            many=st.booleans(),
        )
        def call(changes: dict, extra: dict, key: str | None, many: bool) -> None:
            record = {**extra, **good, **changes}
            body: dict = {"records": [good, record]} if many else {"record": record}
            if key is not None:
                body["routing_key"] = key
            # json.dumps escapes lone surrogates and writes NaN: the bytes a hostile client sends.
            answer = client.post(
                "/predict", content=json.dumps(body), headers={"content-type": "application/json"}
            )
            assert answer.status_code in (200, 413, 422), (answer.status_code, answer.text)
            if answer.status_code == 422:
                detail = answer.json()["detail"]
                assert detail and all(d["loc"] and d["msg"] for d in detail)
            elif answer.status_code == 200:
                assert len(answer.json()["predictions"]) == (2 if many else 1)

        call()
