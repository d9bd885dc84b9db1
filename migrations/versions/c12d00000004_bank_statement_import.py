"""bank statement import (issue 12): bank profiles, import records with their report, lines
deduplicated across files, overpaid lines, how a line was matched

Revision ID: c12d00000004
Revises: c12c00000003
Create Date: 2026-12-01 21:45:00.000000

"""
from alembic import op
import sqlalchemy as sa
import app.models

# revision identifiers, used by Alembic.
revision = 'c12d00000004'
down_revision = 'c12c00000003'
branch_labels = None
depends_on = None

# The major banks' enterprise internet-banking layouts (tests/data/statements-SOURCES.md says
# where each comes from); admins adjust them under Administration.
from app.workflow.statements import DEFAULT_PROFILES, GENERIC_DATES, PROFILE_FIELDS  # noqa: E402


def upgrade():
    profile = op.create_table(
        'bank_statement_profile',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('code', sa.String(length=16), nullable=False),
        sa.Column('name_zh', sa.String(length=100), nullable=False),
        sa.Column('name_en', sa.String(length=100), nullable=False),
        sa.Column('date_headers', sa.String(length=500), nullable=False),
        sa.Column('credit_headers', sa.String(length=500), nullable=True),
        sa.Column('debit_headers', sa.String(length=500), nullable=True),
        sa.Column('amount_headers', sa.String(length=500), nullable=True),
        sa.Column('direction_headers', sa.String(length=500), nullable=True),
        sa.Column('credit_marks', sa.String(length=200), nullable=True),
        sa.Column('payer_name_headers', sa.String(length=500), nullable=True),
        sa.Column('payer_account_headers', sa.String(length=500), nullable=True),
        sa.Column('memo_headers', sa.String(length=500), nullable=True),
        sa.Column('serial_headers', sa.String(length=500), nullable=True),
        sa.Column('balance_headers', sa.String(length=500), nullable=True),
        sa.Column('date_formats', sa.String(length=200), nullable=False),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.CheckConstraint('credit_headers IS NOT NULL OR amount_headers IS NOT NULL',
                           name=op.f('ck_bank_statement_profile_credit_or_amount')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_bank_statement_profile')),
        sa.UniqueConstraint('code', name=op.f('uq_bank_statement_profile_code')),
    )
    op.bulk_insert(profile, [{**{c: None for c in PROFILE_FIELDS}, **p,
                              "date_formats": GENERIC_DATES, "active": True}
                             for p in DEFAULT_PROFILES])
    op.create_table(
        'bank_statement_import',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('file_name', sa.String(length=200), nullable=False),
        sa.Column('file_hash', sa.String(length=64), nullable=False),
        sa.Column('profile_id', sa.Integer(), nullable=True),
        sa.Column('imported_at', app.models.AwareDateTime(), nullable=False),
        sa.Column('imported_by_id', sa.Integer(), nullable=True),
        sa.Column('rows_read', sa.Integer(), nullable=False),
        sa.Column('imported', sa.Integer(), nullable=False),
        sa.Column('matched', sa.Integer(), nullable=False),
        sa.Column('unmatched', sa.Integer(), nullable=False),
        sa.Column('skipped', sa.Integer(), nullable=False),
        sa.Column('duplicates', sa.Integer(), nullable=False),
        sa.Column('report', sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(['imported_by_id'], ['ab_user.id'],
                                name=op.f('fk_bank_statement_import_imported_by_id_ab_user')),
        sa.ForeignKeyConstraint(['profile_id'], ['bank_statement_profile.id'],
                                name=op.f('fk_bank_statement_import_profile_id_bank_statement_profile')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_bank_statement_import')),
    )
    with op.batch_alter_table('bank_statement_line', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dedupe_key', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('serial', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('import_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('match_method', sa.Enum(
            'order_number', 'payer_amount', 'hand', name='statement_match_method',
            native_enum=False, create_constraint=True, length=32), nullable=True))
        batch_op.add_column(sa.Column('order_id', sa.Integer(), nullable=True))
    # Lines imported before keep the key they had: their file and row.
    op.execute("UPDATE bank_statement_line SET dedupe_key = "
               "'legacy:' || substr(file_hash, 1, 40) || ':' || line_no")
    with op.batch_alter_table('bank_statement_line', schema=None) as batch_op:
        batch_op.alter_column('dedupe_key', existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(op.f('uq_bank_statement_line_dedupe_key'),
                                          ['dedupe_key'])
        batch_op.create_index(op.f('ix_bank_statement_line_import_id'), ['import_id'],
                              unique=False)
        batch_op.create_index(op.f('ix_bank_statement_line_order_id'), ['order_id'],
                              unique=False)
        batch_op.create_foreign_key(
            op.f('fk_bank_statement_line_import_id_bank_statement_import'),
            'bank_statement_import', ['import_id'], ['id'])
        batch_op.create_foreign_key(op.f('fk_bank_statement_line_order_id_badge_order'),
                                    'badge_order', ['order_id'], ['id'])
        batch_op.drop_constraint(op.f('ck_bank_statement_line_statement_line_status'),
                                 type_='check')
        batch_op.create_check_constraint(
            op.f('ck_bank_statement_line_statement_line_status'),
            "status IN ('unmatched', 'matched', 'overpaid')")


def downgrade():
    op.execute("UPDATE bank_statement_line SET status = 'unmatched' WHERE status = 'overpaid'")
    with op.batch_alter_table('bank_statement_line', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_bank_statement_line_statement_line_status'),
                                 type_='check')
        batch_op.create_check_constraint(
            op.f('ck_bank_statement_line_statement_line_status'),
            "status IN ('unmatched', 'matched')")
        batch_op.drop_constraint(op.f('fk_bank_statement_line_order_id_badge_order'),
                                 type_='foreignkey')
        batch_op.drop_constraint(
            op.f('fk_bank_statement_line_import_id_bank_statement_import'), type_='foreignkey')
        batch_op.drop_index(op.f('ix_bank_statement_line_order_id'))
        batch_op.drop_index(op.f('ix_bank_statement_line_import_id'))
        batch_op.drop_constraint(op.f('uq_bank_statement_line_dedupe_key'), type_='unique')
        batch_op.drop_column('order_id')
        batch_op.drop_column('match_method')
        batch_op.drop_column('import_id')
        batch_op.drop_column('serial')
        batch_op.drop_column('dedupe_key')
    op.drop_table('bank_statement_import')
    op.drop_table('bank_statement_profile')
