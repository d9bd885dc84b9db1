"""SMS providers and delivery receipts (issue 15): each SMS notice keeps its template kind and
parameters, the provider that took it, its message id there and the provider's code; a new
notification status, delivered

Revision ID: c15a00000004
Revises: c14c00000003
Create Date: 2026-12-02 07:30:00.000000

"""
import sqlalchemy as sa
from alembic import op

from app.models import AwareDateTime

# revision identifiers, used by Alembic.
revision = 'c15a00000004'
down_revision = 'c14c00000003'
branch_labels = None
depends_on = None

OLD_STATUSES = ('queued', 'sent', 'failed')
NEW_STATUSES = ('queued', 'sent', 'delivered', 'failed')
AWAITING = "status = 'sent' AND provider_message_id IS NOT NULL"


def _status_check(statuses):
    return "status IN (%s)" % ", ".join(f"'{v}'" for v in statuses)


def upgrade():
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sms_template', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('sms_params', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('provider', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('provider_message_id', sa.String(length=64),
                                      nullable=True))
        batch_op.add_column(sa.Column('provider_code', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('receipt_at', AwareDateTime(), nullable=True))
        batch_op.add_column(sa.Column('attempted_at', AwareDateTime(), nullable=True))
        batch_op.drop_constraint(op.f('ck_notification_notification_status'), type_='check')
        batch_op.create_check_constraint(op.f('ck_notification_notification_status'),
                                         _status_check(NEW_STATUSES))
        batch_op.create_index('ix_notification_awaiting_receipt', ['sent_at'], unique=False,
                              sqlite_where=sa.text(AWAITING),
                              postgresql_where=sa.text(AWAITING))
        batch_op.create_index('ix_notification_provider_sent', ['provider', 'sent_at'],
                              unique=False)
        batch_op.create_index('ix_notification_failed', ['attempted_at'], unique=False,
                              sqlite_where=sa.text("status = 'failed'"),
                              postgresql_where=sa.text("status = 'failed'"))


def downgrade():
    # A delivery report is a detail of "sent": the older schema knows only that.
    op.execute("UPDATE notification SET status = 'sent' WHERE status = 'delivered'")
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_index('ix_notification_failed')
        batch_op.drop_index('ix_notification_provider_sent')
        batch_op.drop_index('ix_notification_awaiting_receipt')
        batch_op.drop_constraint(op.f('ck_notification_notification_status'), type_='check')
        batch_op.create_check_constraint(op.f('ck_notification_notification_status'),
                                         _status_check(OLD_STATUSES))
        for column in ('attempted_at', 'receipt_at', 'provider_code', 'provider_message_id',
                       'provider', 'sms_params', 'sms_template'):
            batch_op.drop_column(column)
