"""The payment sandbox is a development package: no production module imports it, and an app
started with PAYMENT_SANDBOX off neither loads it nor answers on its URLs."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = ("app", "bench", "migrations", "scripts", "config.py", "run.py")

# Run in a fresh interpreter: this one has long imported the sandbox for other tests.
PROBE = """
import json, sys
from app import create_app
from app.gateways.payments import GatewayError, gateway_for
app = create_app("test", PAYMENT_SANDBOX=sys.argv[1] == "on", REDIS_URL=None,
                 SQLALCHEMY_DATABASE_URI=sys.argv[2],
                 RATELIMIT_STORAGE_URI="memory://", UPLOAD_FOLDER=sys.argv[3],
                 PAYMENT_SANDBOX_DIR=sys.argv[4])
client = app.test_client()
with app.app_context():
    try:
        built = type(gateway_for("alipay")).__name__
    except GatewayError:
        built = None
print(json.dumps({
    "loaded": sorted(name for name in sys.modules if name.split(".")[:2] == ["app", "sandbox"]),
    "views": [type(view).__name__ for view in app.appbuilder.baseviews],
    "qr": client.get("/sandbox/pay/qr/alipay/P2022000001").status_code,
    "bank": client.get("/sandbox/pay/bank").status_code,
    "bank_pay": client.post("/sandbox/pay/bank/P2022000001").status_code,
    "gateway": built,
}))
"""


def production_modules() -> list[Path]:
    """Every Python file but the sandbox's and the tests'."""
    files = []
    for top in PRODUCTION:
        path = ROOT / top
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return [f for f in files if ROOT / "app" / "sandbox" not in f.parents]


def imported_modules(path: Path):
    """Every module an import statement in the file names, relative imports resolved."""
    # A module's relative imports start from its folder (an __init__.py's is its package).
    package = ".".join(path.parent.relative_to(ROOT).parts)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def test_no_production_module_imports_the_sandbox():
    scanned, offenders = 0, []
    for path in production_modules():
        scanned += 1
        offenders += [f"{path.relative_to(ROOT)}: {name}" for name in imported_modules(path)
                      if name == "app.sandbox" or name.startswith("app.sandbox.")]
    assert scanned > 50  # the walk did find the app
    assert offenders == []


def probe(app, tmp_path, sandbox: str) -> dict:
    """What a fresh app on the tests' (migrated) database shows with the sandbox on or off."""
    answer = subprocess.run(
        [sys.executable, "-c", PROBE, sandbox, app.config["SQLALCHEMY_DATABASE_URI"],
         str(tmp_path / "uploads"), str(tmp_path / "payment-sandbox")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(answer.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("sandbox", ["off", "on"])
def test_the_sandbox_exists_only_when_it_is_configured(app, tmp_path, sandbox):
    seen = probe(app, tmp_path, sandbox)
    if sandbox == "off":
        assert seen["loaded"] == [] and "PaymentSandboxView" not in seen["views"]
        assert (seen["qr"], seen["bank"], seen["bank_pay"]) == (404, 404, 404)
        # The real provider, which has no settings here.
        assert seen["gateway"] is None
    else:
        # The control: the same probe sees the sandbox when it is on.
        assert "app.sandbox" in seen["loaded"] and "PaymentSandboxView" in seen["views"]
        assert seen["bank"] == 400  # the bank page, refusing a request without parameters
        assert seen["gateway"] == "AlipayGateway"
