"""Personal data at rest (issue 17): ID document numbers and mobile numbers sealed (AES-256-GCM
with the key id beside each ciphertext, app/pii.py), the search keys and the per-edition
document key made keyed hashes (HMAC-SHA256), and a unit's uniqueness of a person's
document held by its keyed hash.

The rows are sealed with the keys of the running configuration (PII_KEYS, PII_SEARCH_KEY;
development derives them from SECRET_KEY): set them before upgrading.

Revision ID: c17c0000000b
Revises: c17b0000000a
Create Date: 2026-12-02 17:00:00.000000

"""
import logging

import sqlalchemy as sa
from alembic import op
from app.pii import ring
from app.pii_rows import SEALED, reseal

# revision identifiers, used by Alembic.
revision = 'c17c0000000b'
down_revision = 'c17b0000000a'
branch_labels = None
depends_on = None

SEALED_LENGTH = 128


def _lengths(length: int, old: int) -> None:
    for table, columns in SEALED.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns:
                batch_op.alter_column(column, existing_type=sa.String(length=old),
                                      type_=sa.String(length=length))


def upgrade():
    _lengths(SEALED_LENGTH, 32)
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.drop_constraint('uq_person_unit_id_id_type_id_number', type_='unique')
    # Sealed with the running app's keys (app.pii.ring: PII_KEYS, PII_SEARCH_KEY).
    counts = reseal(op.get_bind(), plain=True)
    logging.getLogger("alembic.runtime.migration").info(
        "sealed: %s", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.create_unique_constraint('uq_person_unit_id_id_type_id_search_key',
                                          ['unit_id', 'id_type', 'id_search_key'])


def downgrade():
    """Opens every number again (the keys must still be set) and restores the plain keys."""
    keys = ring()
    bind = op.get_bind()
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.drop_constraint('uq_person_unit_id_id_type_id_search_key', type_='unique')
    for table, kinds in SEALED.items():
        rows = bind.execute(sa.text(f"SELECT id, {', '.join(kinds)} FROM {table}")).all()
        for row in rows:
            values = {c: (None if row._mapping[c] is None else keys.open(row._mapping[c], kind))
                      for c, kind in kinds.items()}
            bind.execute(sa.text(f"UPDATE {table} SET "
                                 + ", ".join(f"{c} = :{c}" for c in kinds) + " WHERE id = :id"),
                         {"id": row.id, **values})
    # The search keys of c14c: the normalised numbers themselves; id_key: type:number.
    from app.search_keys import normalised_id_number, normalised_mobile
    for row in bind.execute(sa.text("SELECT id, id_number, mobile FROM person")).all():
        bind.execute(sa.text("UPDATE person SET id_search_key = :i, mobile_search_key = :m "
                             "WHERE id = :id"),
                     {"id": row.id, "i": normalised_id_number(row.id_number) or None,
                      "m": normalised_mobile(row.mobile)})
    bind.execute(sa.text(
        "UPDATE person_registration SET id_key = (SELECT person.id_type || ':' || "
        "person.id_number FROM person WHERE person.id = person_registration.person_id)"))
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.create_unique_constraint('uq_person_unit_id_id_type_id_number',
                                          ['unit_id', 'id_type', 'id_number'])
    _lengths(32, SEALED_LENGTH)
