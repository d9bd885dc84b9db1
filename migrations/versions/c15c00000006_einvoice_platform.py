"""E-invoices issued by the invoicing platform (issue 15): the platform that issued each one, the
order number sent to it, its serial, its OFD and XML files; a reversal the platform refused
(rejected) no longer blocks another one for the same invoice

Revision ID: c15c00000006
Revises: c15b00000005
Create Date: 2026-12-02 13:40:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'c15c00000006'
down_revision = 'c15b00000005'
branch_labels = None
depends_on = None

NOT_REJECTED = sa.text("status != 'rejected'")


def upgrade():
    with op.batch_alter_table('invoice', schema=None) as batch_op:
        batch_op.add_column(sa.Column('einvoice_platform', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('platform_order_no', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('platform_serial', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('ofd_key', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('xml_key', sa.String(length=200), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_invoice_platform_order_no'),
                                          ['platform_order_no'])
        batch_op.create_unique_constraint(batch_op.f('uq_invoice_ofd_key'), ['ofd_key'])
        batch_op.create_unique_constraint(batch_op.f('uq_invoice_xml_key'), ['xml_key'])
        batch_op.drop_constraint(batch_op.f('uq_invoice_reversal_of_id'), type_='unique')
        batch_op.create_index('uq_invoice_one_reversal', ['reversal_of_id'], unique=True,
                              sqlite_where=NOT_REJECTED, postgresql_where=NOT_REJECTED)


def downgrade():
    with op.batch_alter_table('invoice', schema=None) as batch_op:
        batch_op.drop_index('uq_invoice_one_reversal', sqlite_where=NOT_REJECTED,
                            postgresql_where=NOT_REJECTED)
        batch_op.create_unique_constraint(batch_op.f('uq_invoice_reversal_of_id'),
                                          ['reversal_of_id'])
        batch_op.drop_constraint(batch_op.f('uq_invoice_xml_key'), type_='unique')
        batch_op.drop_constraint(batch_op.f('uq_invoice_ofd_key'), type_='unique')
        batch_op.drop_constraint(batch_op.f('uq_invoice_platform_order_no'), type_='unique')
        batch_op.drop_column('xml_key')
        batch_op.drop_column('ofd_key')
        batch_op.drop_column('platform_serial')
        batch_op.drop_column('platform_order_no')
        batch_op.drop_column('einvoice_platform')
