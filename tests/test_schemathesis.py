"""The API keeps to its OpenAPI document: schemathesis reads the document each caller is given
(a unit, an app person), generates valid and invalid requests for every operation in it and
sends them to the app in-process (WSGI); every check schemathesis has must pass, with zero
failures, on a bounded number of examples.

schemathesis' own pytest integration (`schema.parametrize()`) does not run under pytest 9, so
each operation is a plain pytest case driving schemathesis' Hypothesis strategy."""
from __future__ import annotations

import prison
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks

from tests.conftest import UNIT_A, Client
from tests.test_app_api import app_user, join_body

EXAMPLES = 15
load_all_checks()
ALL_CHECKS = CHECKS.get_all()


def person_headers(app) -> dict:
    """The JWT of an app person who joined unit A and awaits its decision."""
    client = Client(app)
    headers = app_user(client)
    assert client.http.post("/api/v1/app/join", json=join_body(),
                            headers=headers).status_code == 201
    return headers


def load_schema(app, headers: dict) -> schemathesis.BaseSchema:
    """The document as `headers`' caller reads it, with the checks configured as the API's
    contract says."""
    schema = schemathesis.openapi.from_wsgi("/api/v1/_openapi", app, headers=headers)
    # The caller's token is sent explicitly; generated Authorization headers would only test
    # that forged tokens are refused, which tests/test_app_api.py does.
    schema.config.generation.update(with_security_parameters=False)
    # schemathesis mines constants from the modules loaded in the process, which differ with
    # the tests run before: without them the same requests are generated on every run.
    schema.config.analysis.constants.enabled = False
    # A request of the documented form may still break a rule no schema can hold (an ID
    # number's check digit, an exhibition day, a password's strength): the API answers 422
    # for it, never 400, which stays the answer to a request not of the documented form.
    acceptance = schema.config.checks.positive_data_acceptance
    acceptance.expected_statuses = [*acceptance.expected_statuses, "422"]

    @schema.hook("map_query")
    def rison_query(_context, query):
        # The document says `q` is rison (application/x-rison), which schemathesis cannot
        # encode by itself.
        if query and query.get("q") is not None:
            query["q"] = prison.dumps(query["q"])
        return query

    return schema


def fuzz(app, headers: dict, label: str) -> None:
    """Valid, then invalid, requests for one operation; the same ones on every run."""
    method, path = label.split(" ", 1)
    operation = load_schema(app, headers)[path][method]
    # An operation without parameters or body (GET /me) has nothing to make invalid.
    invalid = bool(operation.body or list(operation.iter_parameters()))
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)[:2 if invalid else 1]:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            case.call_and_validate(headers=headers, checks=ALL_CHECKS)

        run()


UNIT_OPERATIONS = sorted(
    f"{method} /api/v1/{path}" for method, path in [
        ("GET", "persons/"), ("GET", "persons/{pk}"), ("GET", "persons/_info"),
        ("GET", "units/"), ("GET", "units/{pk}"), ("GET", "units/_info"),
        ("GET", "orders/"), ("GET", "orders/{pk}"), ("GET", "orders/_info"),
        ("GET", "invoices/"), ("GET", "invoices/{pk}"), ("GET", "invoices/_info"),
        ("GET", "invoices/{pk}/pdf"),
        ("GET", "refunds/"), ("GET", "refunds/{pk}"), ("GET", "refunds/_info"),
        ("POST", "app/signup"), ("POST", "security/login"), ("POST", "security/refresh"),
    ]) + ["GET /api/{version}/_openapi"]
PERSON_OPERATIONS = sorted(
    [op for op in UNIT_OPERATIONS if op.split("/")[3] not in ("orders", "invoices", "refunds")]
    + ["POST /api/v1/app/join", "GET /api/v1/app/me", "PUT /api/v1/app/me",
       "PUT /api/v1/app/me/photo"])


def labels(app, headers: dict) -> set[str]:
    return {f"{result.ok().method.upper()} {result.ok().path}"
            for result in load_schema(app, headers).get_all_operations()}


def test_each_caller_is_fuzzed_on_every_operation_its_document_lists(app, world):
    assert labels(app, Client(app).api_login(UNIT_A)) == set(UNIT_OPERATIONS)
    assert labels(app, person_headers(app)) == set(PERSON_OPERATIONS)


@pytest.mark.parametrize("label", UNIT_OPERATIONS)
def test_api_keeps_to_its_document_for_a_unit(app, world, label):
    fuzz(app, Client(app).api_login(UNIT_A), label)


@pytest.mark.parametrize("label", PERSON_OPERATIONS)
def test_api_keeps_to_its_document_for_an_app_person(app, world, label):
    fuzz(app, person_headers(app), label)
