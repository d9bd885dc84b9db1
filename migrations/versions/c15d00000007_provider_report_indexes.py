"""the operator's view of the outside services (issue 15): indexes for each provider's last
success and for the calls waiting with it (app/providers.py)

Revision ID: c15d00000007
Revises: c15c00000006
Create Date: 2026-12-02 13:30:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'c15d00000007'
down_revision = 'c15c00000006'
branch_labels = None
depends_on = None

EMAIL = "channel = 'email'"
AT_PROVIDER = "status IN ('sent', 'failed')"
E_REQUESTED = "kind = 'e_normal' AND status = 'requested'"


def upgrade():
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.create_index('ix_notification_email_sent', ['sent_at'], unique=False,
                              sqlite_where=sa.text(EMAIL), postgresql_where=sa.text(EMAIL))
    with op.batch_alter_table('payment', schema=None) as batch_op:
        batch_op.create_index('ix_payment_channel_confirmed', ['channel', 'confirmed_at'],
                              unique=False)
    with op.batch_alter_table('refund', schema=None) as batch_op:
        batch_op.create_index('ix_refund_at_provider', ['status'], unique=False,
                              sqlite_where=sa.text(AT_PROVIDER),
                              postgresql_where=sa.text(AT_PROVIDER))
    with op.batch_alter_table('invoice', schema=None) as batch_op:
        batch_op.create_index('ix_invoice_kind_issued', ['kind', 'issued_at'], unique=False)
        batch_op.create_index('ix_invoice_e_requested', ['id'], unique=False,
                              sqlite_where=sa.text(E_REQUESTED),
                              postgresql_where=sa.text(E_REQUESTED))


def downgrade():
    with op.batch_alter_table('invoice', schema=None) as batch_op:
        batch_op.drop_index('ix_invoice_e_requested')
        batch_op.drop_index('ix_invoice_kind_issued')
    with op.batch_alter_table('refund', schema=None) as batch_op:
        batch_op.drop_index('ix_refund_at_provider')
    with op.batch_alter_table('payment', schema=None) as batch_op:
        batch_op.drop_index('ix_payment_channel_confirmed')
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_index('ix_notification_email_sent')
