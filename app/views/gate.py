"""The gate's pages: the online scan page (`/gate/`), and the offline gate (`/gate/offline`), an
installable page that verifies badge codes itself with the published Ed25519 keys, syncs
(`/gate/sync`) and uploads its scan log (`/gate/scans`) when the network is there. Gate staff
reach these and nothing else."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from flask import current_app, jsonify, request, send_file, url_for
from flask_appbuilder import BaseView, expose
from flask_appbuilder.security.decorators import has_access, has_access_api, permission_name
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import generate_csrf
from marshmallow import Schema, ValidationError, fields, validate

from app import models as m
from app.scoping.actor import current_actor
from app.workflow import gate

GATE_STATIC = Path(__file__).resolve().parent.parent / "static" / "ciie" / "gate"
MAX_UPLOAD = 500
UPLOAD_FIELDS = {
    "scans": _l("Scans"),
    "id": _l("Scan id"),
    "token": _l("Badge code"),
    "result": _l("Result"),
    "scanned_at": _l("Scanned at"),
    "gate": _l("Gate"),
}


# No control characters, and no lone UTF-16 surrogate (a JSON escape can send one; the
# database cannot store it).
PRINTABLE = validate.Regexp(r"^[^\x00-\x1f\x7f\ud800-\udfff]*$")


class OfflineScanSchema(Schema):
    id = fields.UUID(required=True)
    token = fields.String(required=True, validate=validate.Length(max=500))
    result = fields.Enum(m.ScanResult, required=True)
    scanned_at = fields.AwareDateTime(required=True)
    gate = fields.String(load_default=None, allow_none=True,
                         validate=[validate.Length(max=50), PRINTABLE])


class UploadSchema(Schema):
    scans = fields.List(fields.Nested(OfflineScanSchema), required=True,
                        validate=validate.Length(min=1, max=MAX_UPLOAD))


def _refused_field(messages: dict) -> str:
    """The innermost field a marshmallow error names (scans → 3 → scanned_at)."""
    name = ""
    while isinstance(messages, dict) and messages:
        key = next(iter(messages))
        if isinstance(key, str):
            name = key
        messages = messages[key]
    return str(UPLOAD_FIELDS.get(name, name))


def _refusal(message: str, status: int = 400):
    response = jsonify(message=message)
    response.status_code = status
    return response


class GateView(BaseView):
    """The scan pages of gate staff."""

    route_base = "/gate"
    default_view = "scan"
    class_permission_name = "GateCheck"

    @expose("/", methods=["GET", "POST"])
    @has_access
    @permission_name("scan")
    def scan(self):
        """Paste or scan a badge's code, see at a glance whether to let in (asks the server)."""
        outcome = None
        place = request.values.get("gate", "")
        if request.method == "POST":
            outcome = gate.scan(current_actor(), request.form.get("token"), place)
        return self.render_template("ciie/gate.html", outcome=outcome, place=place)

    @expose("/offline")
    @has_access
    @permission_name("scan")
    def offline(self):
        """The offline gate: the page, its script and its data are kept by the browser."""
        verdicts = {result.value: {"label": str(result.label),
                                   "message": str(gate.MESSAGES[result])}
                    for result in m.ScanResult}
        return self.render_template("ciie/gate_offline.html", verdicts=verdicts)

    @expose("/sync")
    @has_access_api
    @permission_name("scan")
    def sync(self):
        """Keys, deactivated and cancelled badges, and the badges changed since `since`."""
        since = request.args.get("since")
        if since:
            try:
                since = datetime.fromisoformat(since)
            except ValueError:
                since = None
            if since is None or since.tzinfo is None:
                return _refusal(_("Check \"%(field)s\": it is missing or not valid.",
                                  field="since"))
        state = gate.gate_sync(since or None)
        return jsonify({**state, "csrf_token": generate_csrf()})

    @expose("/scans", methods=["POST"])
    @has_access_api
    @permission_name("scan")
    def upload_scans(self):
        """The scans an offline gate logged; sending one twice logs it once."""
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _refusal(_("The request body must be a JSON object."))
        try:
            values = UploadSchema().load(body)
        except ValidationError as exc:
            return _refusal(_("Check \"%(field)s\": it is missing or not valid.",
                              field=_refused_field(exc.messages)))
        scans = [gate.OfflineScan(scan["id"], scan["token"], scan["result"],
                                  scan["scanned_at"], scan["gate"])
                 for scan in values["scans"]]
        return jsonify(gate.record_offline_scans(current_actor(), scans))

    @expose("/sw.js")
    def service_worker(self):
        """The offline gate's service worker, served from /gate/ so that its scope covers the
        page (it holds nothing but code)."""
        response = send_file(GATE_STATIC / "sw.js", mimetype="text/javascript",
                             max_age=0)
        response.headers["Cache-Control"] = "no-cache"
        return response

    @expose("/manifest.webmanifest")
    def manifest(self):
        """What makes the offline gate installable (browsers fetch it without the session)."""
        icons = [{"src": url_for("static", filename=f"ciie/gate/icon-{size}.png"),
                  "sizes": f"{size}x{size}", "type": "image/png"} for size in (192, 512)]
        response = jsonify({
            "name": _("CIIE offline gate"), "short_name": _("Gate"),
            "start_url": url_for("GateView.offline"), "scope": url_for("GateView.scan"),
            "display": "standalone", "background_color": "#ffffff",
            "theme_color": "#1f5fa8", "icons": icons,
            "lang": current_app.appbuilder.bm.get_locale()})
        response.mimetype = "application/manifest+json"
        return response
