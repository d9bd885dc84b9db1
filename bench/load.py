"""Throughput: the app served by gunicorn on loopback, loaded by `wrk` (Debian's package).

The load generator is wrk, not Python threads: on the 2-core machine the generator shares the
cores with gunicorn and PostgreSQL, and Python threads with `requests` took much of them (about
a core for 30 requests a second); wrk's C event loop spends a few percent for the same. Every
function takes base URLs, so another setup (several app processes, a read replica) reuses
`serve` (extra environment) and `load` (several bases) as they are.
"""
from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from typing import Iterator
from urllib.parse import urlsplit

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# One key for every server started here: a session cookie from one base is valid on all.
SECRET_KEY = "benchmark-secret-key-of-32-bytes!!"

# One wrk thread per base URL; each sends its requests to its base's address. "bad" is a
# global of each thread's Lua state, read back in done().
WRK_SCRIPT = """
local bases = {%(bases)s}
local threads = {}
function setup(thread)
  local base = bases[(#threads %% #bases) + 1]
  thread.addr = wrk.lookup(base[1], base[2])[1]
  table.insert(threads, thread)
end
function init(args) bad = 0 end
function response(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end
function done(summary, latency, requests)
  local not_200 = 0
  for _, t in ipairs(threads) do not_200 = not_200 + t:get("bad") end
  local e = summary.errors
  io.write(string.format(
    'WRK-JSON {"requests": %%d, "seconds": %%.6f, "p50_ms": %%.3f, "p95_ms": %%.3f, ' ..
    '"not_200": %%d, "socket_errors": %%d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(95) / 1000, not_200, e.connect + e.read + e.write + e.timeout))
end
"""


@contextmanager
def serve(database_url: str, workers: int = 2, port: int | None = None,
          env: dict[str, str] | None = None) -> Iterator[str]:
    """gunicorn (`workers` sync workers) serving the app on loopback: yields its base URL."""
    from tests.conftest import free_port

    port = port or free_port()
    server_env = dict(os.environ, CIIE_CONFIG="development", DATABASE_URL=database_url,
                      SECRET_KEY=SECRET_KEY, RATELIMIT_STORAGE_URI="memory://",
                      MAIL_BACKEND="log", PYTHONPATH=ROOT, **(env or {}))
    if not env or "REDIS_URL" not in env:
        server_env.pop("REDIS_URL", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}",
         "run:app"], cwd=ROOT, env=server_env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                if requests.get(base + "/login/", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if server.poll() is not None or time.time() > deadline:
                raise RuntimeError("gunicorn did not start")
            time.sleep(0.3)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def login_cookie(base: str, username: str) -> str:
    """The Cookie header of a session logged in as `username` (demo password)."""
    from app.demo import DEMO_PASSWORD

    session = requests.Session()
    page = session.get(base + "/login/", timeout=30).text
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    response = session.post(base + "/login/", allow_redirects=False, timeout=30, data={
        "username": username, "password": DEMO_PASSWORD, "csrf_token": token})
    if response.status_code != 302:
        raise RuntimeError(f"login of {username} failed: {response.status_code}")
    return "; ".join(f"{name}={value}" for name, value in session.cookies.items())


def load(bases: list[str], path: str, cookie: str, clients: int = 8,
         seconds: float = 8.0, warm_up: float = 1.0) -> dict:
    """`clients` connections (spread evenly over the bases) asking for `path` for `seconds`,
    after `warm_up` seconds whose figures are dropped (each worker's first requests compile
    templates and fill caches). Returns requests a second, median and p95 latency in ms and
    the count of answers other than 200 (a lost login would answer 302), and the share of one
    core the generator itself used (`generator_cpu`)."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    addresses = [urlsplit(base) for base in bases]
    script = WRK_SCRIPT % {"bases": ", ".join(
        f'{{"{a.hostname}", "{a.port or 80}"}}' for a in addresses)}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
        file.write(script)
    try:
        if warm_up:
            _wrk(file.name, bases[0] + path, cookie, len(bases), clients, warm_up)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = _wrk(file.name, bases[0] + path, cookie, len(bases), clients, seconds)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        os.remove(file.name)
    result["req_s"] = result["requests"] / result["seconds"]
    result["generator_cpu"] = (after.ru_utime + after.ru_stime - before.ru_utime
                               - before.ru_stime) / result["seconds"]
    return result


def _wrk(script: str, url: str, cookie: str, threads: int, clients: int,
         seconds: float) -> dict:
    clients = max(clients, threads)
    output = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(clients), "-d", f"{seconds:g}s",
         "--timeout", "30s", "-s", script, "-H", f"Cookie: {cookie}", url],
        capture_output=True, text=True, check=True).stdout
    line = next(x for x in output.splitlines() if x.startswith("WRK-JSON "))
    return json.loads(line.removeprefix("WRK-JSON "))
