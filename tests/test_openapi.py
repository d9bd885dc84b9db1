"""The OpenAPI document describes the API, and the app keeps to it: schemathesis generates
valid and invalid requests for the app, persons and units operations and sends them to the app
in-process (WSGI, no network), as an app person and as a unit; no response is a server error,
every one conforms to the document, and invalid requests are refused.

schemathesis' own pytest integration (`schema.parametrize()`) does not run under pytest 9, so
each operation is a plain pytest case driving schemathesis' Hypothesis strategy."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import UNIT_A, Client
from tests.test_app_api import app_user, join_body

# positive_data_acceptance is left out on purpose: the document describes the shape of a
# request, and data of the right shape is still refused (400) when an ID number's check digit,
# an entry date or a password's strength is wrong.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, negative_data_rejection]


def openapi_document(client: Client) -> dict:
    response = client.get("/api/v1/_openapi", headers=client.api_login("admin"))
    assert response.status_code == 200
    return response.json


def test_openapi_document_describes_the_app_api(login, world):
    document = openapi_document(login(None))
    assert document["openapi"].startswith("3.")
    paths = document["paths"]

    def body_schema(path: str, method: str) -> str:
        return paths[path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]

    assert body_schema("/api/v1/app/signup", "post") == "#/components/schemas/SignupSchema"
    assert body_schema("/api/v1/app/join", "post") == "#/components/schemas/JoinSchema"
    assert body_schema("/api/v1/app/me", "put") == "#/components/schemas/PersonDataSchema"
    me = paths["/api/v1/app/me"]["get"]["responses"]["200"]["content"]["application/json"]
    assert me["schema"]["$ref"] == "#/components/schemas/AppPersonSchema"
    assert "security" not in paths["/api/v1/app/signup"]["post"]
    assert paths["/api/v1/app/join"]["post"]["security"] == [{"jwt": []}, {"api_key": []}]
    assert {"409", "429"} <= set(document["components"]["responses"])

    schemas = document["components"]["schemas"]
    assert set(schemas["JoinSchema"]["required"]) == {
        "unit_number", "name", "gender", "id_type", "id_number", "entry_dates"}
    assert schemas["JoinSchema"]["properties"]["gender"]["enum"] == ["male", "female"]
    assert schemas["SignupSchema"]["properties"]["password"]["writeOnly"] is True
    assert "status_label" in schemas["AppPersonSchema"]["required"]


def test_what_the_fuzzing_found_stays_fixed(login, world):
    client = login(None)
    headers = client.api_login(UNIT_A)
    # A negative page reached the database's OFFSET (500).
    response = client.get("/api/v1/persons/?q=(page:-1)", headers=headers)
    assert response.status_code == 400 and response.json["message"]
    # An id bigger than the id column reached the database (500).
    assert client.get("/api/v1/units/2000925803887496", headers=headers).status_code == 404
    assert login(UNIT_A).get("/unit/persons/show/2000925803887496").status_code == 404
    # The document now says what the API answers: integer ids, a tag that may be null.
    document = openapi_document(client)
    listing = client.get("/api/v1/persons/", headers=headers).json
    assert all(isinstance(pk, int) for pk in listing["ids"])
    assert any(row["tag"] is None for row in listing["result"])
    schemas = document["components"]["schemas"]
    assert None in schemas["PersonRegistrationApi.get_list"]["properties"]["tag"]["enum"]
    ids = document["paths"]["/api/v1/persons/"]["get"]["responses"]["200"]
    assert ids["content"]["application/json"]["schema"]["properties"]["ids"]["items"] == {
        "type": "integer"}


OPERATIONS = {
    "POST /api/v1/app/signup", "POST /api/v1/app/join", "GET /api/v1/app/me",
    "PUT /api/v1/app/me", "PUT /api/v1/app/me/photo",
    "GET /api/v1/persons/", "GET /api/v1/persons/{pk}", "GET /api/v1/persons/_info",
    "GET /api/v1/units/", "GET /api/v1/units/{pk}", "GET /api/v1/units/_info",
}
# The app operations answer a unit with 403 only; the unit is fuzzed on what it may read.
UNIT_OPERATIONS = sorted(op for op in OPERATIONS if "/app/" not in op)
EXAMPLES = 20


def load_schema(app) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_wsgi("/api/v1/_openapi", app,
                                            headers=Client(app).api_login("admin"))
    # The caller's token is sent explicitly; generated Authorization headers would only
    # test that forged tokens are refused, which tests/test_app_api.py does.
    schema.config.generation.update(with_security_parameters=False)
    # schemathesis mines constants from the modules loaded in the process, which differ with
    # the tests run before: without them the same requests are generated on every run.
    schema.config.analysis.constants.enabled = False
    return schema.include(path_regex=r"^/api/v1/(app|persons|units)/")


def person_headers(app) -> dict:
    """The JWT of an app person who joined unit A and awaits its decision."""
    client = Client(app)
    headers = app_user(client)
    assert client.http.post("/api/v1/app/join", json=join_body(),
                            headers=headers).status_code == 201
    return headers


def fuzz(app, label: str, headers: dict) -> None:
    """Valid, then invalid, requests for one operation; the same ones on every run."""
    method, path = label.split(" ", 1)
    operation = load_schema(app)[path][method]
    # An operation without parameters or body (GET /me) has nothing to make invalid.
    invalid = bool(operation.body or list(operation.iter_parameters()))
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)[:2 if invalid else 1]:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            case.call_and_validate(headers=headers, checks=CHECKS)

        run()


def test_every_app_person_and_unit_operation_is_fuzzed(app, world):
    labels = {f"{result.ok().method.upper()} {result.ok().path}"
              for result in load_schema(app).get_all_operations()}
    assert labels == OPERATIONS


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_api_keeps_to_its_document_for_an_app_person(app, world, label):
    fuzz(app, label, person_headers(app))


@pytest.mark.parametrize("label", UNIT_OPERATIONS)
def test_api_keeps_to_its_document_for_a_unit(app, world, label):
    fuzz(app, label, Client(app).api_login(UNIT_A))


def test_an_unreadable_query_is_a_bad_request_not_a_crash(login, world):
    client = login(None)
    headers = client.api_login("91310115MA1K4AB30U")
    for url in ("/api/v1/units/?q=2.2272775619125594e%2B295",
                "/api/v1/persons/1?q=2.2272775619125594e%2B295"):
        response = client.get(url, headers=headers)
        assert response.status_code == 400 and "message" in response.json
