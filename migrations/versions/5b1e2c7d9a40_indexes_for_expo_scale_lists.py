"""indexes for expo-scale lists: the review queue in waiting order, delegation scopes

Revision ID: 5b1e2c7d9a40
Revises: 3c03275cf9d6
Create Date: 2026-12-01 11:50:00.000000

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = '5b1e2c7d9a40'
down_revision = '3c03275cf9d6'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('person_registration', schema=None) as batch_op:
        batch_op.drop_index('ix_person_registration_edition_status')
        batch_op.create_index('ix_person_registration_queue',
                              ['edition_id', 'status', 'status_changed_at', 'id'], unique=False)
    with op.batch_alter_table('unit_registration', schema=None) as batch_op:
        batch_op.create_index('ix_unit_registration_delegation', ['delegation_id'], unique=False)
        batch_op.create_index('ix_unit_registration_sub_delegation', ['sub_delegation_id'],
                              unique=False)


def downgrade():
    with op.batch_alter_table('unit_registration', schema=None) as batch_op:
        batch_op.drop_index('ix_unit_registration_sub_delegation')
        batch_op.drop_index('ix_unit_registration_delegation')
    with op.batch_alter_table('person_registration', schema=None) as batch_op:
        batch_op.drop_index('ix_person_registration_queue')
        batch_op.create_index('ix_person_registration_edition_status', ['edition_id', 'status'],
                              unique=False)
