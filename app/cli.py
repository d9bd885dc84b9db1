"""CLI: `flask ciie init` (permissions and roles), `flask ciie demo`, `flask ciie worker`,
`flask ciie sweep`, `flask ciie badge-keys generate|rotate|list`, `flask ciie rotate-keys`,
`flask ciie providers check`."""
from __future__ import annotations

import re
import time

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from app.extensions import db

ciie = AppGroup("ciie", help="CIIE professional-visitor system commands.")


def sync_roles(reset: bool = False) -> dict[str, int]:
    """Create every permission of every view, then the roles of config CIIE_ROLES.

    Permissions a role gains from config are added; with `reset`, the role is set to exactly
    the config (undoing edits made in the UI). The admin role gets every permission.
    """
    appbuilder = current_app.appbuilder
    sm = appbuilder.sm
    # FAB grants each new permission to the admin role, so that role must exist first.
    admin = sm.find_role(sm.auth_role_admin) or sm.add_role(sm.auth_role_admin)
    sm.find_role(sm.auth_role_public) or sm.add_role(sm.auth_role_public)
    appbuilder.add_permissions(update_perms=True)
    pvms = db.session.query(sm.permissionview_model).all()
    counts = {}
    for name, patterns in current_app.config["CIIE_ROLES"].items():
        role = sm.find_role(name) or sm.add_role(name)
        wanted = [pvm for pvm in pvms
                  if any(re.match(v, pvm.view_menu.name) and re.match(p, pvm.permission.name)
                         for v, p in patterns)]
        if reset:
            role.permissions = wanted
        else:
            have = {pvm.id for pvm in role.permissions}
            role.permissions = list(role.permissions) + [p for p in wanted if p.id not in have]
        counts[name] = len(role.permissions)
    admin.permissions = pvms
    counts[admin.name] = len(pvms)
    db.session.commit()
    return counts


@ciie.command("init")
@click.option("--reset-roles", is_flag=True, help="Set each role to exactly the config.")
def init_command(reset_roles: bool) -> None:
    """Create permissions and roles (run after `flask db upgrade`)."""
    counts = sync_roles(reset=reset_roles)
    for name, n in sorted(counts.items()):
        click.echo(f"role {name}: {n} permissions")


@ciie.command("demo")
def demo_command() -> None:
    """Load the demo: 5th edition, delegations, units in several states, one login per role."""
    from app.demo import DEMO_PASSWORD, load_demo

    sync_roles()
    click.echo(f"Demo data loaded. Logins (password for all: {DEMO_PASSWORD}):")
    for role, username in load_demo():
        click.echo(f"  {role:15} {username}")


@ciie.command("worker")
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
def worker_command(burst: bool) -> None:
    """Run an rq worker for this app's queue (needs REDIS_URL), with rq's scheduler: it fires
    the retries of failed sends and of refunds the provider has not settled (one worker at a
    time holds the scheduler's lock; the others just work)."""
    from rq import SimpleWorker

    from app.extensions import queue

    if queue.queue is None:
        raise click.ClickException("REDIS_URL is not set: jobs run inline, no worker needed.")
    worker = SimpleWorker([queue.queue], connection=queue.redis)
    worker.work(burst=burst, with_scheduler=True)


@ciie.command("sweep")
@click.option("--every", type=int, default=0,
              help="Sweep again every this many seconds (default: once, for a timer).")
def sweep_command(every: int) -> None:
    """Enqueue the work still waiting in the database (Redis was down when it was saved) and
    mark failed the tasks whose worker died (needs REDIS_URL)."""
    from app.extensions import queue
    from app.queue import QueueUnavailable
    from app.sweeper import sweep

    if queue.queue is None:
        raise click.ClickException("REDIS_URL is not set: jobs run inline, nothing to sweep.")
    while True:
        try:
            counts = sweep()
        except QueueUnavailable as exc:
            db.session.rollback()
            if not every:
                raise click.ClickException(f"Redis does not answer: {exc}") from exc
            click.echo(f"Redis does not answer, will try again: {exc}", err=True)
        else:
            click.echo(", ".join(f"{name}: {n}" for name, n in counts.items()))
        if not every:
            return
        db.session.remove()
        time.sleep(every)


badge_keys = AppGroup("badge-keys", help="The Ed25519 keys that sign badge QR codes.")
ciie.add_command(badge_keys)


@badge_keys.command("generate")
def generate_badge_key_command() -> None:
    """Make the first signing key in BADGE_SIGNING_KEYS_DIR (refused if one signs already)."""
    from app.badge_tokens import generate_key, load_keys

    folder = current_app.config["BADGE_SIGNING_KEYS_DIR"]
    ring = load_keys(folder)
    if ring.signing_key is not None:
        raise click.ClickException(f"{folder} has a signing key already ({ring.signing_kid}); "
                                   "use `flask ciie badge-keys rotate` for a new one.")
    click.echo(f"badge signing key {generate_key(folder)} made in {folder}")


@badge_keys.command("rotate")
def rotate_badge_key_command() -> None:
    """Make a new signing key: new codes are signed with it, and the earlier keys stay
    published, so printed codes keep verifying. Gates learn the new key at their next sync."""
    from app.badge_tokens import generate_key, load_keys

    folder = current_app.config["BADGE_SIGNING_KEYS_DIR"]
    before = load_keys(folder).signing_kid
    click.echo(f"badge signing key {generate_key(folder)} signs from now on "
               f"(was {before or 'none'}) in {folder}")


@badge_keys.command("list")
def list_badge_keys_command() -> None:
    """The published keys, which one signs and which still have their private key here."""
    from pathlib import Path

    from app.badge_tokens import load_keys

    folder = current_app.config["BADGE_SIGNING_KEYS_DIR"]
    ring = load_keys(folder)
    for kid in ring.public:
        private = (Path(folder) / f"{kid}.key").exists()
        click.echo(f"{kid}  {'signing' if kid == ring.signing_kid else 'published'}"
                   f"{'' if private else '  (private key removed)'}")


@ciie.command("rotate-keys")
@click.option("--batch", default=2000, show_default=True, help="Rows per transaction.")
def rotate_keys_command(batch: int) -> None:
    """Seal every stored ID and mobile number with the current key (PII_KEY_ID) and compute
    the keyed hashes again with PII_SEARCH_KEY. Commits each batch: a stopped run loses
    nothing and a second run carries on; run it until it reports nothing rewritten, then an
    old key may leave PII_KEYS."""
    from app.pii import ring
    from app.pii_rows import reseal
    from app.scoping.actor import SYSTEM
    from app.workflow.audit import record

    keys = ring()
    with db.engine.connect() as connection:
        counts = reseal(connection, batch=batch, commit=connection.commit)
    record(SYSTEM, "pii_keys", 0, "rotate", detail={"key": keys.current, **counts})
    db.session.commit()
    total = sum(counts.values())
    click.echo(f"sealed with key {keys.current}: "
               + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) if total
                  else "nothing out of date"))


providers = AppGroup("providers", help="The outside services: which, in which mode, how they fare.")
ciie.add_command(providers)


@providers.command("check")
def providers_check_command() -> None:
    """Print each provider with its mode, last success and failure (Beijing time) and the
    failed calls waiting for a retry; exit 1 when one is misconfigured (a setting missing, a
    sandbox in production) or a production provider's last call failed."""
    from flask_babel import force_locale

    from app.formatting import fmt_datetime
    from app.providers import MODE_LABELS, WAITING_LABELS, problems, provider_reports

    with force_locale("en"):
        rows = provider_reports()
        table = [("service", "provider", "mode", "last success", "last failure", "waiting",
                  "problems")]
        trouble = False
        for row in rows:
            found = problems(row, current_app.config)
            trouble = trouble or bool(found)
            failure = fmt_datetime(row.last_failure_at)
            if row.last_failure:
                failure += f" {row.last_failure[:80]}"
            waiting = ", ".join(f"{n} {WAITING_LABELS[kind]}"
                                for kind, n in row.waiting.items() if n)
            table.append((str(row.service), f"{row.provider} {row.detail}".strip(),
                          str(MODE_LABELS[row.mode]), fmt_datetime(row.last_success_at) or "-",
                          failure or "-", waiting or "0", "; ".join(found) or "ok"))
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        cells = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        click.echo("  ".join(cells).rstrip())
    db.session.rollback()
    if trouble:
        raise SystemExit(1)


def register_cli(app: Flask) -> None:
    app.cli.add_command(ciie)
