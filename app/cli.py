"""CLI: `flask ciie init` (permissions and roles), `flask ciie demo`, `flask ciie worker`,
`flask ciie sweep`."""
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


def register_cli(app: Flask) -> None:
    app.cli.add_command(ciie)
