"""identity documents (issue 12): residence permits for Hong Kong, Macau and Taiwan residents

Revision ID: c12a00000001
Revises: c10c00000003
Create Date: 2026-12-01 21:45:00.000000

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = 'c12a00000001'
down_revision = 'c10c00000003'
branch_labels = None
depends_on = None

OLD_ID_TYPES = ('mainland_id', 'hk_macau_permit', 'taiwan_permit', 'passport',
                'foreign_permanent_id')
NEW_ID_TYPES = OLD_ID_TYPES + ('hmt_residence_permit',)


def _id_type_check(values):
    return "id_type IN (%s)" % ", ".join(f"'{v}'" for v in values)


def _recreate_check(values):
    # SQLite rebuilds the table for a changed CHECK; PostgreSQL alters it in place.
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_person_id_type'), type_='check')
        batch_op.create_check_constraint(op.f('ck_person_id_type'), _id_type_check(values))


def upgrade():
    _recreate_check(NEW_ID_TYPES)


def downgrade():
    held = op.get_bind().scalar(sa.text(
        "SELECT count(*) FROM person WHERE id_type = 'hmt_residence_permit'"))
    if held:
        # No older document type can hold these numbers: keep the persons, stop here.
        raise RuntimeError(f"{held} person(s) hold a residence permit for Hong Kong, Macau "
                           "and Taiwan residents; the older schema cannot store them.")
    _recreate_check(OLD_ID_TYPES)
