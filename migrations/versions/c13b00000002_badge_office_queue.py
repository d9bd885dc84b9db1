"""badge office work queue and parcels (issue 13): reprint requests, queue indexes

Revision ID: c13b00000002
Revises: c13a00000001
Create Date: 2026-12-02 01:30:00.000000

"""
from alembic import op
import sqlalchemy as sa

from app.models import AwareDateTime

# revision identifiers, used by Alembic.
revision = 'c13b00000002'
down_revision = 'c13a00000001'
branch_labels = None
depends_on = None

TO_PACK = "shipment_id IS NULL AND status = 'produced' AND active"
REPRINT = "reprint_requested_at IS NOT NULL"


def upgrade():
    with op.batch_alter_table('badge', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reprint_requested_at', AwareDateTime(), nullable=True))
        batch_op.add_column(sa.Column('reprint_reason', sa.String(length=200), nullable=True))
        batch_op.create_index('ix_badge_to_pack', ['edition_id'], unique=False,
                              sqlite_where=sa.text(TO_PACK), postgresql_where=sa.text(TO_PACK))
        batch_op.create_index('ix_badge_reprint_requested', ['id'], unique=False,
                              sqlite_where=sa.text(REPRINT), postgresql_where=sa.text(REPRINT))


def downgrade():
    with op.batch_alter_table('badge', schema=None) as batch_op:
        batch_op.drop_index('ix_badge_reprint_requested')
        batch_op.drop_index('ix_badge_to_pack')
        batch_op.drop_column('reprint_reason')
        batch_op.drop_column('reprint_requested_at')
