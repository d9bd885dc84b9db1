"""UnionPay ACP 5.1.0 (issue 15): the txnTime of the first request sent under each of our
numbers, so that a retried refund asks what became of the first one (app/gateways/payments/acp.py)

Revision ID: c15b00000005
Revises: c14d0000000b
Create Date: 2026-12-02 14:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'c15b00000005'
down_revision = 'c14d0000000b'
branch_labels = None
depends_on = None

CHANNELS = ('alipay', 'wechat', 'unionpay', 'b2b', 'transfer')


def upgrade():
    op.create_table(
        'acp_request',
        sa.Column('channel', sa.Enum(*CHANNELS, name='payment_channel', native_enum=False,
                                     create_constraint=True, length=32), nullable=False),
        sa.Column('order_id', sa.String(length=40), nullable=False),
        sa.Column('txn_time', sa.String(length=14), nullable=False),
        sa.PrimaryKeyConstraint('channel', 'order_id'),
    )


def downgrade():
    op.drop_table('acp_request')
