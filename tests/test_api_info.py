"""`GET /api/v1/<resource>/_info` describes each column with its description, or nothing:
FAB translated the empty string, and gettext("") is the catalogue's header ("Project-Id-Version:
… Last-Translator: FULL NAME …"), which every column then carried (issue 13, API)."""
from __future__ import annotations

import json

from tests.conftest import Client


def all_strings(value) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in all_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in all_strings(v)]
    return [value] if isinstance(value, str) else []


def test_info_carries_no_catalogue_header(app, world):
    client = Client(app)
    headers = client.api_login("admin")
    spec = client.get("/api/v1/_openapi", headers=headers).get_json()
    infos = sorted(path for path in spec["paths"] if path.endswith("/_info"))
    assert infos
    for path in infos:
        for language in ("zh", "en"):
            response = client.get(path, headers={**headers, "Accept-Language": language})
            assert response.status_code == 200, path
            body = response.get_json()
            texts = all_strings(body)
            assert not [t for t in texts if "Project-Id-Version" in t or "FULL NAME" in t], (
                path, language, json.dumps(body, ensure_ascii=False)[:300])
