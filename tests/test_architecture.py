"""How the code is put together: the layers of docs/architecture.md (a module imports only its
own layer and those below, lazy imports included; tests/test_sandbox_boundary.py holds the
sandbox's own boundary); Flask-AppBuilder's own hooks around a
record's add, edit and delete run on every generic form, and a view that writes through its own
path cannot declare hooks it would never run."""
from __future__ import annotations

import ast
import os

import pytest
import sqlalchemy as sa
from flask_babel import lazy_gettext as _l

from app import models as m
from app.extensions import db
from app.views.admin import ZoneView
from app.views.unit import AddressView, UnitDocumentView
from app.workflow.errors import WorkflowError
from tests.conftest import ROOT, text_of

HOOKS = ("pre_add", "post_add", "pre_update", "post_update", "pre_delete", "post_delete")


def zone_view(app) -> ZoneView:
    return next(v for v in app.appbuilder.baseviews if type(v) is ZoneView)


def zone_form(name_en: str) -> dict:
    area = db.session.scalar(sa.select(m.Zone.id).where(m.Zone.parent_id.is_(None)).limit(1))
    return {"parent": str(area), "name_zh": "测试专区", "name_en": name_en, "sort": "9",
            "active": "y"}


def test_fabs_hooks_run_around_add_edit_and_delete(app, login, world, monkeypatch):
    view = zone_view(app)
    calls = []
    for hook in HOOKS:
        monkeypatch.setattr(view, hook, lambda item, hook=hook: calls.append((hook, item.name_en)))
    admin = login("admin")
    assert admin.post("/admin/zones/add", data=zone_form("Test zone")).status_code == 302
    zone_id = db.session.scalar(sa.select(m.Zone.id).where(m.Zone.name_en == "Test zone"))
    assert admin.post(f"/admin/zones/edit/{zone_id}",
                      data=zone_form("Tested zone")).status_code == 302
    assert admin.post(f"/admin/zones/delete/{zone_id}").status_code == 302
    assert calls == [("pre_add", "Test zone"), ("post_add", "Test zone"),
                     ("pre_update", "Tested zone"), ("post_update", "Tested zone"),
                     ("pre_delete", "Tested zone"), ("post_delete", "Tested zone")]
    db.session.expire_all()
    assert db.session.get(m.Zone, zone_id) is None


def test_a_pre_hook_that_refuses_changes_nothing_and_says_why(app, login, world, monkeypatch):
    def refuse(item):
        raise WorkflowError(_l("Nothing was saved."), 400)

    view = zone_view(app)
    for hook in ("pre_add", "pre_update", "pre_delete"):
        monkeypatch.setattr(view, hook, refuse)
    post_calls = []
    for hook in ("post_add", "post_update", "post_delete"):
        monkeypatch.setattr(view, hook, lambda item, hook=hook: post_calls.append(hook))
    zone = db.session.scalars(m.Zone.choosable().order_by(m.Zone.id)).first()
    name_en = zone.name_en
    admin = login("admin")
    for url, data in (("/admin/zones/add", zone_form("Refused zone")),
                      (f"/admin/zones/edit/{zone.id}", zone_form("Refused zone")),
                      (f"/admin/zones/delete/{zone.id}", None)):
        response = admin.post(url, data=data)
        assert "Nothing was saved." in text_of(admin.get(response.headers["Location"])
                                                if response.status_code == 302 else response)
    db.session.expire_all()
    assert db.session.get(m.Zone, zone.id).name_en == name_en
    assert db.session.scalar(sa.select(sa.func.count()).where(
        m.Zone.name_en == "Refused zone")) == 0
    assert post_calls == []


@pytest.mark.parametrize("view, hook", [
    (AddressView, "pre_add"), (AddressView, "post_update"), (AddressView, "pre_delete"),
    (UnitDocumentView, "post_add"), (UnitDocumentView, "pre_update"),
])
def test_a_view_with_its_own_write_path_cannot_declare_fabs_hooks(view, hook):
    with pytest.raises(TypeError, match=hook):
        type("Careless", (view,), {hook: lambda self, item: None})


def test_a_view_on_the_generic_write_path_may_declare_fabs_hooks():
    for hook in HOOKS:
        type("Careful", (ZoneView,), {hook: lambda self, item: None})


# ----------------------------------------------------------------------- layers --------

# Lowest first. A module belongs to the first layer one of whose prefixes it starts with.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # workflow/errors.py (refusals) and workflow/editions.py (the current edition) are leaves
    # that the helpers read too.
    ("models and helpers", ("app.models", "app.clock", "app.extensions", "app.formatting",
                            "app.validation", "app.storage", "app.codes", "app.i18n",
                            "app.queue", "app.badge_tokens", "app.labels", "app.fab_strings",
                            "app.input_checks", "app.search_keys", "app.pii", "app.pii_rows",
                            "app.replica",
                            "app.workflow.errors", "app.workflow.editions")),
    ("scoping", ("app.scoping",)),
    ("gateways and documents", ("app.gateways", "app.documents")),
    ("workflow", ("app.workflow", "app.jobs", "app.tasks", "app.exports", "app.statistics",
                  "app.sweeper", "app.demo", "app.providers")),
    ("web", ("app.views", "app.api", "app.cli", "app.security_manager", "app.web_security",
             "app.errors", "app.templating", "app.sandbox", "app")),
]


def layer_of(module: str) -> int:
    for rank, (_name, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{module} is in no layer of docs/architecture.md")


def modules() -> dict[str, str]:
    found = {}
    for folder, _dirs, files in os.walk(os.path.join(ROOT, "app")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                found[rel.removesuffix(".__init__")] = path
    return found


def imports_of(path: str, module: str) -> set[str]:
    tree = ast.parse(open(path, encoding="utf-8").read())
    names = set()
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return {n for n in names if n == "app" or n.startswith("app.")}


def test_no_module_imports_a_higher_layer():
    """E.g. a background job never borrows a view, the scoping never reaches for workflow."""
    known = modules()
    upward = []
    for module, path in sorted(known.items()):
        own = layer_of(module)
        for imported in sorted(imports_of(path, module)):
            target = imported if imported in known else imported.rpartition(".")[0]
            if target not in known or target == "app":
                continue
            if layer_of(target) > own:
                upward.append(f"{module} ({LAYERS[own][0]}) imports {target} "
                              f"({LAYERS[layer_of(target)][0]})")
    assert upward == []
