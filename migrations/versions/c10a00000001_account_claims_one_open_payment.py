"""account claims (registering afresh held for review), one open payment per order

Revision ID: c10a00000001
Revises: 5b1e2c7d9a40
Create Date: 2026-12-01 19:15:00.000000

"""
from alembic import op
import sqlalchemy as sa

from app.models import AwareDateTime

# revision identifiers, used by Alembic.
revision = 'c10a00000001'
down_revision = '5b1e2c7d9a40'
branch_labels = None
depends_on = None

OLD_PAYMENT_STATUSES = ('created', 'pending', 'confirmed', 'failed', 'rejected')
NEW_PAYMENT_STATUSES = OLD_PAYMENT_STATUSES + ('withdrawn',)


def _status_check(values):
    return "status IN (%s)" % ", ".join(f"'{v}'" for v in values)


def upgrade():
    op.create_table(
        'account_claim',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('unit_id', sa.Integer(), nullable=False),
        sa.Column('edition_id', sa.Integer(), nullable=False),
        sa.Column('status', sa.Enum('pending', 'approved', 'rejected', 'withdrawn',
                                    name='claim_status', native_enum=False,
                                    create_constraint=True, length=32), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('name_en', sa.String(length=200), nullable=True),
        sa.Column('region', sa.Enum('domestic', 'overseas', name='region', native_enum=False,
                                    create_constraint=True, length=32), nullable=False),
        sa.Column('category', sa.Enum('enterprise', 'government_agency', 'public_institution',
                                      'social_organisation', 'government_department', 'other',
                                      name='unit_category', native_enum=False,
                                      create_constraint=True, length=32), nullable=False),
        sa.Column('delegation_id', sa.Integer(), nullable=True),
        sa.Column('sub_delegation_id', sa.Integer(), nullable=True),
        sa.Column('referral_code_id', sa.Integer(), nullable=True),
        sa.Column('mobile', sa.String(length=32), nullable=False),
        sa.Column('email', sa.String(length=254), nullable=False),
        sa.Column('password_hash', sa.String(length=256), nullable=False),
        sa.Column('language', sa.String(length=5), nullable=False),
        sa.Column('created_at', AwareDateTime(), nullable=False),
        sa.Column('decided_at', AwareDateTime(), nullable=True),
        sa.Column('decided_by_id', sa.Integer(), nullable=True),
        sa.Column('reason', sa.String(length=1000), nullable=True),
        sa.ForeignKeyConstraint(['decided_by_id'], ['ab_user.id'],
                                name=op.f('fk_account_claim_decided_by_id_ab_user')),
        sa.ForeignKeyConstraint(['delegation_id'], ['delegation.id'],
                                name=op.f('fk_account_claim_delegation_id_delegation')),
        sa.ForeignKeyConstraint(['edition_id'], ['edition.id'],
                                name=op.f('fk_account_claim_edition_id_edition')),
        sa.ForeignKeyConstraint(['referral_code_id'], ['referral_code.id'],
                                name=op.f('fk_account_claim_referral_code_id_referral_code')),
        sa.ForeignKeyConstraint(['sub_delegation_id'], ['delegation.id'],
                                name=op.f('fk_account_claim_sub_delegation_id_delegation')),
        sa.ForeignKeyConstraint(['unit_id'], ['unit.id'],
                                name=op.f('fk_account_claim_unit_id_unit')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_account_claim')),
    )
    with op.batch_alter_table('account_claim', schema=None) as batch_op:
        batch_op.create_index('ix_account_claim_scope', ['delegation_id', 'status'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_account_claim_unit_id'), ['unit_id'], unique=False)
        batch_op.create_index('uq_account_claim_one_pending', ['unit_id'], unique=True,
                              sqlite_where=sa.text("status = 'pending'"),
                              postgresql_where=sa.text("status = 'pending'"))

    # Payments may be withdrawn (a transfer declaration taken back, an online attempt replaced).
    # SQLite rebuilds the table for a changed CHECK; PostgreSQL alters it in place.
    with op.batch_alter_table('payment', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_payment_payment_status'), type_='check')
        batch_op.create_check_constraint(op.f('ck_payment_payment_status'),
                                         _status_check(NEW_PAYMENT_STATUSES))
    # Earlier code could leave several open attempts per order: keep the newest open.
    op.execute("""
        UPDATE payment SET status = 'withdrawn'
        WHERE status IN ('created', 'pending') AND EXISTS (
            SELECT 1 FROM payment AS newer
            WHERE newer.order_id = payment.order_id AND newer.id > payment.id
              AND newer.status IN ('created', 'pending'))
    """)
    with op.batch_alter_table('payment', schema=None) as batch_op:
        batch_op.create_index('uq_payment_one_open', ['order_id'], unique=True,
                              sqlite_where=sa.text("status IN ('created', 'pending')"),
                              postgresql_where=sa.text("status IN ('created', 'pending')"))


def downgrade():
    with op.batch_alter_table('payment', schema=None) as batch_op:
        batch_op.drop_index('uq_payment_one_open')
    op.execute("UPDATE payment SET status = 'failed' WHERE status = 'withdrawn'")
    with op.batch_alter_table('payment', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_payment_payment_status'), type_='check')
        batch_op.create_check_constraint(op.f('ck_payment_payment_status'),
                                         _status_check(OLD_PAYMENT_STATUSES))
    with op.batch_alter_table('account_claim', schema=None) as batch_op:
        batch_op.drop_index('uq_account_claim_one_pending')
        batch_op.drop_index(batch_op.f('ix_account_claim_unit_id'))
        batch_op.drop_index('ix_account_claim_scope')
    op.drop_table('account_claim')
