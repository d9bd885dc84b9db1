"""person registration carries its delegation (issue 14)

The unit registration's delegation and sub-delegation, copied onto each person registration,
held equal by composite foreign keys (ON UPDATE CASCADE), backfilled by one UPDATE … FROM and
indexed for the delegations' lists.

Revision ID: c14a00000001
Revises: c13d00000004
Create Date: 2026-12-02 07:30:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'c14a00000001'
down_revision = 'c13d00000004'
branch_labels = None
depends_on = None

# One statement for every row (SQLite has UPDATE … FROM since 3.33).
BACKFILL = """
UPDATE person_registration
SET delegation_id = unit_registration.delegation_id,
    sub_delegation_id = unit_registration.sub_delegation_id
FROM unit_registration
WHERE unit_registration.id = person_registration.unit_registration_id
"""


def _sqlite_keys(on: bool) -> None:
    """SQLite adds a key by copying the table, and dropping the old copy of a table that others
    refer to breaks their keys while they are on: off for the copy, checked after."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    bind.exec_driver_sql(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    if on:
        broken = bind.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"foreign keys broken by the copy: {broken[:5]}")


def upgrade():
    _sqlite_keys(on=False)
    with op.batch_alter_table('unit_registration', schema=None) as batch_op:
        batch_op.create_unique_constraint('uq_unit_registration_id_delegation_id',
                                          ['id', 'delegation_id'])
        batch_op.create_unique_constraint('uq_unit_registration_id_sub_delegation_id',
                                          ['id', 'sub_delegation_id'])
    with op.batch_alter_table('person_registration', schema=None) as batch_op:
        batch_op.add_column(sa.Column('delegation_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('sub_delegation_id', sa.Integer(), nullable=True))
    # Filled before the keys and indexes exist: one pass over the rows, no index upkeep.
    op.execute(BACKFILL)
    with op.batch_alter_table('person_registration', schema=None) as batch_op:
        batch_op.create_foreign_key('fk_person_registration_unit_delegation',
                                    'unit_registration', ['unit_registration_id', 'delegation_id'],
                                    ['id', 'delegation_id'], onupdate='CASCADE')
        batch_op.create_foreign_key('fk_person_registration_unit_sub_delegation',
                                    'unit_registration',
                                    ['unit_registration_id', 'sub_delegation_id'],
                                    ['id', 'sub_delegation_id'], onupdate='CASCADE')
        batch_op.create_index('ix_person_registration_delegation',
                              ['delegation_id', 'edition_id', 'status', 'tag',
                               'sub_delegation_id', 'id'], unique=False)
        batch_op.create_index('ix_person_registration_sub_delegation',
                              ['sub_delegation_id', 'edition_id', 'status', 'tag', 'id'],
                              unique=False)
    _sqlite_keys(on=True)


def downgrade():
    _sqlite_keys(on=False)
    with op.batch_alter_table('person_registration', schema=None) as batch_op:
        batch_op.drop_index('ix_person_registration_sub_delegation')
        batch_op.drop_index('ix_person_registration_delegation')
        batch_op.drop_constraint('fk_person_registration_unit_sub_delegation',
                                 type_='foreignkey')
        batch_op.drop_constraint('fk_person_registration_unit_delegation', type_='foreignkey')
        batch_op.drop_column('sub_delegation_id')
        batch_op.drop_column('delegation_id')
    with op.batch_alter_table('unit_registration', schema=None) as batch_op:
        batch_op.drop_constraint('uq_unit_registration_id_sub_delegation_id', type_='unique')
        batch_op.drop_constraint('uq_unit_registration_id_delegation_id', type_='unique')
    _sqlite_keys(on=True)
