"""invoice requests the unit withdraws (issue 12): a new invoice status, withdrawn

Revision ID: c12e00000005
Revises: c12d00000004
Create Date: 2026-12-01 21:45:00.000000

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = 'c12e00000005'
down_revision = 'c12d00000004'
branch_labels = None
depends_on = None

OLD_STATUSES = ('requested', 'issued', 'mailed', 'void_requested', 'voided', 'rejected')
NEW_STATUSES = OLD_STATUSES + ('withdrawn',)


def _status_check(statuses):
    return "status IN (%s)" % ", ".join(f"'{v}'" for v in statuses)


def _recreate(statuses):
    # SQLite rebuilds the table for a changed CHECK; PostgreSQL alters it in place.
    with op.batch_alter_table('invoice', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_invoice_invoice_status'), type_='check')
        batch_op.create_check_constraint(op.f('ck_invoice_invoice_status'),
                                         _status_check(statuses))


def upgrade():
    _recreate(NEW_STATUSES)


def downgrade():
    # A withdrawn request reads as one finance rejected: neither is active.
    op.execute("UPDATE invoice SET status = 'rejected' WHERE status = 'withdrawn'")
    _recreate(OLD_STATUSES)
