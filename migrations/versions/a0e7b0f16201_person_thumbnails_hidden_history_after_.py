"""person thumbnails, hidden history after fresh re-registration

Revision ID: a0e7b0f16201
Revises: 378683112015
Create Date: 2026-11-25 07:15:20.258407

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a0e7b0f16201'
down_revision = '378683112015'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('person') as batch:
        batch.add_column(sa.Column('thumb_key', sa.String(length=200), nullable=True))
        batch.create_unique_constraint(op.f('uq_person_thumb_key'), ['thumb_key'])
    with op.batch_alter_table('unit_registration') as batch:
        batch.add_column(sa.Column('history_hidden', sa.Boolean(), nullable=False,
                                   server_default=sa.false()))


def downgrade():
    with op.batch_alter_table('unit_registration') as batch:
        batch.drop_column('history_hidden')
    with op.batch_alter_table('person') as batch:
        batch.drop_constraint(op.f('uq_person_thumb_key'), type_='unique')
        batch.drop_column('thumb_key')
