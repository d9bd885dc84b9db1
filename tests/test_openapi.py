"""The OpenAPI document: every API user reads it, and it lists what that user may call (and the
public operations), never what its roles may not; refusals are in the user's language; it says
what the API answers (`q` is rison in this API's own form, the refusals each operation gives,
the menu as it answers). tests/test_schemathesis.py checks the API against it."""
from __future__ import annotations

import schemathesis

from tests.conftest import UNIT_A, Client
from tests.test_app_api import app_user, join_body

EN = {"Accept-Language": "en"}
PUBLIC = {"POST /api/v1/security/login", "POST /api/v1/security/refresh",
          "POST /api/v1/app/signup", "GET /api/{version}/_openapi"}


def document(client: Client, headers: dict) -> dict:
    response = client.get("/api/v1/_openapi", headers=headers)
    assert response.status_code == 200, response.json
    return response.json


def operations(spec: dict) -> set[str]:
    return {f"{method.upper()} {path}" for path, item in spec["paths"].items()
            for method in item}


def test_every_api_user_reads_the_operations_it_may_call(app, world):
    client = Client(app)
    unit = operations(document(client, client.api_login(UNIT_A)))
    assert {"GET /api/v1/orders/", "GET /api/v1/invoices/{pk}/pdf", "GET /api/v1/refunds/",
            "GET /api/v1/persons/", "GET /api/v1/units/"} | PUBLIC <= unit
    assert not {op for op in unit if "/app/" in op and op != "POST /api/v1/app/signup"}
    assert "POST /api/v1/gate/scan" not in unit and "GET /api/v1/menu/" not in unit

    person = operations(document(client, app_user(client)))
    assert {"POST /api/v1/app/join", "GET /api/v1/app/me", "PUT /api/v1/app/me",
            "GET /api/v1/persons/"} | PUBLIC <= person
    assert not {op for op in person if "/orders/" in op or "/invoices/" in op}

    gate = operations(document(client, client.api_login("gate")))
    assert gate == PUBLIC | {"POST /api/v1/gate/scan"}
    finance = operations(document(client, client.api_login("finance")))
    assert "GET /api/v1/orders/{pk}" in finance and "GET /api/v1/persons/" not in finance
    admin = operations(document(client, client.api_login("admin")))
    assert unit | person | gate | finance | {"GET /api/v1/menu/"} <= admin
    # A browser session reads it too (the Swagger page of admins uses it).
    assert Client(app, UNIT_A).get("/api/v1/_openapi").status_code == 200
    assert Client(app, "admin").get("/swagger/v1").status_code == 200


def test_document_refusals_are_in_the_users_language(app, world):
    client = Client(app)
    anonymous = client.get("/api/v1/_openapi")
    assert anonymous.status_code == 401 and anonymous.json == {"message": "请先登录。"}
    assert client.get("/api/v1/_openapi", headers=EN).json == {"message": "Please log in."}
    headers = client.api_login(UNIT_A)
    unknown = client.get("/api/v9/_openapi", headers={**headers, **EN})
    assert unknown.status_code == 404
    assert unknown.json == {"message": "Not found, or not yours to see."}


def test_document_describes_the_app_api(app, world):
    client = Client(app)
    spec = document(client, app_user(client))
    paths = spec["paths"]

    def body_schema(path: str, method: str) -> str:
        return paths[path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]

    assert body_schema("/api/v1/app/signup", "post") == "#/components/schemas/SignupSchema"
    assert body_schema("/api/v1/app/join", "post") == "#/components/schemas/JoinSchema"
    assert body_schema("/api/v1/app/me", "put") == "#/components/schemas/PersonDataSchema"
    me = paths["/api/v1/app/me"]["get"]["responses"]["200"]["content"]["application/json"]
    assert me["schema"]["$ref"] == "#/components/schemas/AppPersonSchema"
    assert "security" not in paths["/api/v1/app/signup"]["post"]
    assert paths["/api/v1/app/join"]["post"]["security"] == [{"jwt": []}, {"api_key": []}]

    schemas = spec["components"]["schemas"]
    assert set(schemas["JoinSchema"]["required"]) == {
        "unit_number", "name", "gender", "id_type", "id_number", "entry_dates"}
    assert schemas["JoinSchema"]["properties"]["gender"]["enum"] == ["male", "female"]
    assert schemas["SignupSchema"]["properties"]["password"]["writeOnly"] is True
    assert "status_label" in schemas["AppPersonSchema"]["required"]


def test_document_says_what_the_api_answers(app, world):
    client = Client(app)
    spec = document(client, client.api_login(UNIT_A))
    paths, components = spec["paths"], spec["components"]
    # `q` is rison, in the form this list takes: its own filters, operators and columns.
    [q] = paths["/api/v1/orders/"]["get"]["parameters"]
    assert list(q["content"]) == ["application/x-rison"] and "Rison" in q["description"]
    ref = q["content"]["application/x-rison"]["schema"]["$ref"].rsplit("/", 1)[-1]
    query = components["schemas"][ref]
    assert query["additionalProperties"] is False
    assert query["properties"]["order_column"]["enum"] == ["id", "status", "created_at"]
    status_filter = query["properties"]["filters"]["items"]["oneOf"][0]["properties"]
    assert status_filter["col"]["enum"] == ["status"]
    assert status_filter["value"]["enum"] == ["pending", "paid", "cancelled"]
    # Refusals: 401 and 403 where a token is needed, 422 where a rule beyond the document
    # refuses, 429 on the rate-limited logins; each a translated text.
    for path, item in paths.items():
        for method, operation in item.items():
            if operation.get("security") and path != "/api/{version}/_openapi":
                assert {"401", "403"} <= set(operation["responses"]), (method, path)
    assert "422" in paths["/api/v1/orders/"]["get"]["responses"]
    assert "429" in paths["/api/v1/security/login"]["post"]["responses"]
    assert "429" in paths["/api/v1/app/signup"]["post"]["responses"]
    for code in ("400", "401", "403", "404", "409", "422", "429", "500"):
        message = components["responses"][code]["content"]["application/json"]["schema"]
        assert message["properties"]["message"]["type"] == "string"
        assert message["required"] == ["message"]
    # Persons' entry dates are dates.
    persons = components["schemas"]["PersonRegistrationApi.get_list"]["properties"]
    assert persons["entry_dates"] == {
        "type": "array", "items": {"type": "string", "format": "date"},
        "readOnly": True, "description": "Exhibition days the person may enter (ISO dates)."}
    assert "entry_days" not in persons


def test_the_menu_answers_as_documented(app, world):
    headers = Client(app).api_login("admin")
    schema = schemathesis.openapi.from_wsgi("/api/v1/_openapi", app, headers=headers)
    operation = schema["/api/v1/menu/"]["GET"]
    response = Client(app).get("/api/v1/menu/", headers=headers)
    assert "-" in str(response.json["result"])   # separators, which FAB documented as objects
    operation.validate_response(response)


def test_malformed_login_is_a_translated_400_naming_the_field(app, world):
    client = Client(app)
    for body, field in (({"username": 1, "password": "x", "provider": "db"}, "Login"),
                        ({"username": "admin", "provider": "db"}, "Password"),
                        ({"username": "admin", "password": "x", "provider": "ldap"},
                         "Login provider")):
        response = client.http.post("/api/v1/security/login", json=body, headers=EN)
        assert response.status_code == 400
        assert response.json == {"message": f"Check \"{field}\": it is missing or not valid."}
    zh = client.http.post("/api/v1/security/login", json={"username": "admin"})
    assert zh.status_code == 400 and zh.json["message"].startswith("请检查")


def test_what_the_fuzzing_found_stays_fixed(login, world):
    client = login(None)
    headers = client.api_login(UNIT_A)
    # A negative page reached the database's OFFSET (500).
    response = client.get("/api/v1/persons/?q=(page:-1)", headers={**headers, **EN})
    assert response.status_code == 400
    assert response.json["message"] == ("Check the query (q): \"page\" is not one this list "
                                        "takes, or not in its form.")
    # A filter value its column does not take names the column.
    response = client.get("/api/v1/persons/?q=(filters:!((col:status,opr:eq,value:x)))",
                          headers={**headers, **EN})
    assert response.status_code == 400
    assert response.json["message"] == "Check \"Status\": \"x\" is not one of its values."
    # An id bigger than the id column reached the database (500).
    assert client.get("/api/v1/units/2000925803887496", headers=headers).status_code == 404
    assert login(UNIT_A).get("/unit/persons/show/2000925803887496").status_code == 404
    # The document says what the API answers: integer ids, a tag that may be null.
    listing = client.get("/api/v1/persons/", headers=headers).json
    assert all(isinstance(pk, int) for pk in listing["ids"])
    assert any(row["tag"] is None for row in listing["result"])
    spec = document(client, headers)
    schemas = spec["components"]["schemas"]
    assert None in schemas["PersonRegistrationApi.get_list"]["properties"]["tag"]["enum"]
    ids = spec["paths"]["/api/v1/persons/"]["get"]["responses"]["200"]
    assert ids["content"]["application/json"]["schema"]["properties"]["ids"]["items"] == {
        "type": "integer"}
    # Signing up with empty fields answered 500.
    empty = client.http.post("/api/v1/app/signup", headers=EN, json={
        "first_name": "", "last_name": "", "password": "", "username": ""})
    assert empty.status_code == 400 and "\"Login\"" in empty.json["message"]
    # A person whose data breaks a rule the document cannot hold gets a 422, not a 400.
    person = app_user(client)
    bad_digit = client.http.post("/api/v1/app/join", headers={**person, **EN},
                                 json=join_body(id_number="310115199501011230"))
    assert bad_digit.status_code == 422
    assert "mainland ID card number is not valid" in bad_digit.json["message"]


def test_an_unreadable_query_is_a_bad_request_not_a_crash(login, world):
    client = login(None)
    headers = client.api_login(UNIT_A)
    for url in ("/api/v1/units/?q=2.2272775619125594e%2B295",
                "/api/v1/persons/1?q=2.2272775619125594e%2B295"):
        response = client.get(url, headers=headers)
        assert response.status_code == 400 and "message" in response.json
