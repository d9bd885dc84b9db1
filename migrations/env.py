"""Alembic environment: the schema is every table on Flask-AppBuilder's Model.metadata.

FAB's own tables (ab_*) and ours share that metadata (Flask-Migrate's default would look at
Flask-SQLAlchemy's, which holds none of them). SQLite gets batch mode for ALTERs.
"""
import logging
from logging.config import fileConfig

from alembic import context
from flask import current_app
from flask_appbuilder import Model

import app.models  # noqa: F401  (registers every table on Model.metadata)

config = context.config
# Keep the app's loggers: the default would silence every logger that exists already.
fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")

target_metadata = Model.metadata


def get_engine():
    return current_app.extensions["migrate"].db.engine


def render_item(type_, obj, autogen_context):
    """Render our column types by their import path so migrations can import them."""
    if type_ == "type" and obj.__class__.__module__ == "app.models":
        autogen_context.imports.add("import app.models")
        return f"app.models.{obj.__class__.__name__}()"
    return False



def run_migrations_offline():
    context.configure(url=str(get_engine().url), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True, render_item=render_item)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    def process_revision_directives(context_, revision, directives):
        if getattr(config.cmd_opts, "autogenerate", False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info("No changes in schema detected.")

    conf_args = dict(current_app.extensions["migrate"].configure_args)
    conf_args.setdefault("process_revision_directives", process_revision_directives)
    conf_args.pop("render_as_batch", None)
    conf_args["compare_type"] = True
    engine = get_engine()
    with engine.connect() as connection:
        context.configure(
            connection=connection, target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite", render_item=render_item,
            **conf_args,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
