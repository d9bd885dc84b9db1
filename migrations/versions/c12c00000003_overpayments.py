"""overpayments (issue 12): money that arrived for an order already paid or cancelled,
recorded once per (channel, reference) and refunded by finance

Revision ID: c12c00000003
Revises: c12b00000002
Create Date: 2026-12-01 21:45:00.000000

"""
from alembic import op
import sqlalchemy as sa
import app.models

# revision identifiers, used by Alembic.
revision = 'c12c00000003'
down_revision = 'c12b00000002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('overpayment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=32), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=False),
    sa.Column('payment_id', sa.Integer(), nullable=True),
    sa.Column('channel', sa.Enum('alipay', 'wechat', 'unionpay', 'b2b', 'transfer', name='payment_channel', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('cause', sa.Enum('already_paid', 'order_cancelled', name='overpayment_cause', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('status', sa.Enum('received', 'refund_sent', 'refunded', 'refund_failed', name='overpayment_status', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('amount_fen', sa.BigInteger(), nullable=False),
    sa.Column('reference', sa.String(length=200), nullable=False),
    sa.Column('payer_name', sa.String(length=200), nullable=True),
    sa.Column('payer_account', sa.String(length=64), nullable=True),
    sa.Column('refund_reference', sa.String(length=200), nullable=True),
    sa.Column('refund_message', sa.String(length=500), nullable=True),
    sa.Column('refunded_at', app.models.AwareDateTime(), nullable=True),
    sa.Column('created_at', app.models.AwareDateTime(), nullable=False),
    sa.Column('updated_at', app.models.AwareDateTime(), nullable=False),
    sa.CheckConstraint('amount_fen > 0', name=op.f('ck_overpayment_amount_positive')),
    sa.ForeignKeyConstraint(['order_id'], ['badge_order.id'], name=op.f('fk_overpayment_order_id_badge_order')),
    sa.ForeignKeyConstraint(['payment_id'], ['payment.id'], name=op.f('fk_overpayment_payment_id_payment')),
    sa.ForeignKeyConstraint(['unit_id'], ['unit.id'], name=op.f('fk_overpayment_unit_id_unit')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_overpayment')),
    sa.UniqueConstraint('channel', 'reference', name=op.f('uq_overpayment_channel_reference')),
    sa.UniqueConstraint('number', name=op.f('uq_overpayment_number'))
    )
    op.create_index(op.f('ix_overpayment_order_id'), 'overpayment', ['order_id'], unique=False)
    op.create_index(op.f('ix_overpayment_payment_id'), 'overpayment', ['payment_id'], unique=False)
    op.create_index(op.f('ix_overpayment_unit_id'), 'overpayment', ['unit_id'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_overpayment_unit_id'), table_name='overpayment')
    op.drop_index(op.f('ix_overpayment_payment_id'), table_name='overpayment')
    op.drop_index(op.f('ix_overpayment_order_id'), table_name='overpayment')
    op.drop_table('overpayment')
