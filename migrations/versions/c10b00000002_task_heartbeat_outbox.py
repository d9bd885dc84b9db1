"""task heartbeat and the outbox of queued jobs

Revision ID: c10b00000002
Revises: c10a00000001
Create Date: 2026-12-01 19:15:00.000000

"""
from alembic import op
import sqlalchemy as sa

from app.models import AwareDateTime

# revision identifiers, used by Alembic.
revision = 'c10b00000002'
down_revision = 'c10a00000001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('background_task', schema=None) as batch_op:
        batch_op.add_column(sa.Column('heartbeat_at', AwareDateTime(), nullable=True))
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.create_index('ix_notification_queued', ['id'], unique=False,
                              sqlite_where=sa.text("status = 'queued'"),
                              postgresql_where=sa.text("status = 'queued'"))


def downgrade():
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_index('ix_notification_queued')
    with op.batch_alter_table('background_task', schema=None) as batch_op:
        batch_op.drop_column('heartbeat_at')
