"""Offline gates (issue 17): a badge's last change (gates sync the badges changed since their
last sync), and scans uploaded from offline gates (the scanner's id, unique: uploads are
idempotent)

Revision ID: c17b0000000a
Revises: c17a00000009
Create Date: 2026-12-02 13:30:00.000000

"""
import sqlalchemy as sa
from alembic import op

from app.models import AwareDateTime

# revision identifiers, used by Alembic.
revision = 'c17b0000000a'
down_revision = 'c17a00000009'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('badge', schema=None) as batch_op:
        batch_op.add_column(sa.Column('changed_at', AwareDateTime(), nullable=False,
                                      server_default=sa.func.now()))
    with op.batch_alter_table('gate_scan', schema=None) as batch_op:
        batch_op.add_column(sa.Column('client_scan_id', sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column('offline', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.create_unique_constraint(op.f('uq_gate_scan_client_scan_id'),
                                          ['client_scan_id'])


def downgrade():
    with op.batch_alter_table('gate_scan', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('uq_gate_scan_client_scan_id'), type_='unique')
        batch_op.drop_column('offline')
        batch_op.drop_column('client_scan_id')
    with op.batch_alter_table('badge', schema=None) as batch_op:
        batch_op.drop_column('changed_at')
