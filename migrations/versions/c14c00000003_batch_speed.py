"""batches (issue 14): a lock's persons found by their batch

Revision ID: c14c00000003
Revises: c14b00000002
Create Date: 2026-12-02 07:30:00.000000

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = 'c14c00000003'
down_revision = 'c14b00000002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('person_registration', schema=None) as batch_op:
        batch_op.create_index('ix_person_registration_lock_batch_id', ['lock_batch_id'],
                              unique=False)


def downgrade():
    with op.batch_alter_table('person_registration', schema=None) as batch_op:
        batch_op.drop_index('ix_person_registration_lock_batch_id')
