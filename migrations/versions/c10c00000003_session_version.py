"""session version per user: logout and password change end sessions

Revision ID: c10c00000003
Revises: c10b00000002
Create Date: 2026-12-01 19:15:00.000000

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = 'c10c00000003'
down_revision = 'c10b00000002'
branch_labels = None
depends_on = None


def upgrade():
    # batch: SQLite cannot add a NOT NULL column with ALTER TABLE alone.
    with op.batch_alter_table('ab_user') as batch_op:
        batch_op.add_column(sa.Column('session_version', sa.Integer(), server_default='0',
                                      nullable=False))


def downgrade():
    with op.batch_alter_table('ab_user') as batch_op:
        batch_op.drop_column('session_version')
