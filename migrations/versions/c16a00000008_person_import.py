"""Persons from a spreadsheet (issue 16): each applied import of a unit, its file's hash (the
same file again is recognised), its counts, who and when, and the refused rows' workbook

Revision ID: c16a00000008
Revises: c15d00000007
Create Date: 2026-12-02 13:40:00.000000

"""
import sqlalchemy as sa
from alembic import op

from app.models import AwareDateTime

# revision identifiers, used by Alembic.
revision = 'c16a00000008'
down_revision = 'c15d00000007'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'person_import',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('unit_id', sa.Integer(), nullable=False),
        sa.Column('edition_id', sa.Integer(), nullable=False),
        sa.Column('file_name', sa.String(length=200), nullable=False),
        sa.Column('file_hash', sa.String(length=64), nullable=False),
        sa.Column('task_id', sa.Integer(), nullable=True),
        sa.Column('rows_read', sa.Integer(), nullable=False),
        sa.Column('added', sa.Integer(), nullable=False),
        sa.Column('updated', sa.Integer(), nullable=False),
        sa.Column('unchanged', sa.Integer(), nullable=False),
        sa.Column('refused', sa.Integer(), nullable=False),
        sa.Column('submit', sa.Boolean(), nullable=False),
        sa.Column('submitted', sa.Integer(), nullable=False),
        sa.Column('refused_file_key', sa.String(length=200), nullable=True),
        sa.Column('imported_at', AwareDateTime(), nullable=False),
        sa.Column('imported_by_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['edition_id'], ['edition.id'],
                                name=op.f('fk_person_import_edition_id_edition')),
        sa.ForeignKeyConstraint(['imported_by_id'], ['ab_user.id'],
                                name=op.f('fk_person_import_imported_by_id_ab_user')),
        sa.ForeignKeyConstraint(['task_id'], ['background_task.id'],
                                name=op.f('fk_person_import_task_id_background_task')),
        sa.ForeignKeyConstraint(['unit_id'], ['unit.id'],
                                name=op.f('fk_person_import_unit_id_unit')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_person_import')),
        sa.UniqueConstraint('refused_file_key',
                            name=op.f('uq_person_import_refused_file_key')),
    )
    with op.batch_alter_table('person_import', schema=None) as batch_op:
        batch_op.create_index('ix_person_import_unit_hash', ['unit_id', 'file_hash'],
                              unique=False)


def downgrade():
    with op.batch_alter_table('person_import', schema=None) as batch_op:
        batch_op.drop_index('ix_person_import_unit_hash')
    op.drop_table('person_import')
