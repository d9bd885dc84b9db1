"""person registration carries its person's name tokens (issue 14)

The person's name search tokens, copied onto each person registration, backfilled by one
UPDATE … FROM, kept equal to the person's by two triggers (every writer: the ORM, Core INSERTs
of an import, COPY, SQL by hand), and indexed with the delegation in one GIN index
(btree_gin): a delegation's name search is one bitmap. The person's own GIN index goes: every
list searches persons through their registrations. PostgreSQL only: SQLite's name searches
compare the names (app.scoping.interface), its copies stay empty.

Revision ID: c14d0000000b
Revises: c15a00000004
Create Date: 2026-12-02 13:30:00.000000

"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = 'c14d0000000b'
down_revision = 'c15a00000004'
branch_labels = None
depends_on = None

# One statement for every row.
BACKFILL = """
UPDATE person_registration
SET name_search = person.name_search
FROM person
WHERE person.id = person_registration.person_id
"""
# A registration's copy is its person's whatever was written (a value set by hand gives way);
# a person's new tokens go to its registrations in the same statement's transaction.
TRIGGERS = [
    """CREATE FUNCTION person_registration_name_search() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        NEW.name_search := (SELECT name_search FROM person WHERE id = NEW.person_id);
        RETURN NEW;
    END $$""",
    """CREATE TRIGGER person_registration_name_search
    BEFORE INSERT OR UPDATE OF person_id, name_search ON person_registration
    FOR EACH ROW EXECUTE FUNCTION person_registration_name_search()""",
    """CREATE FUNCTION person_name_search_to_registrations() RETURNS trigger LANGUAGE plpgsql
    AS $$
    BEGIN
        UPDATE person_registration SET name_search = NEW.name_search
        WHERE person_id = NEW.id AND name_search IS DISTINCT FROM NEW.name_search;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER person_name_search_to_registrations
    AFTER UPDATE OF name_search ON person
    FOR EACH ROW WHEN (OLD.name_search IS DISTINCT FROM NEW.name_search)
    EXECUTE FUNCTION person_name_search_to_registrations()""",
]
DROP_TRIGGERS = [
    "DROP TRIGGER person_name_search_to_registrations ON person",
    "DROP FUNCTION person_name_search_to_registrations()",
    "DROP TRIGGER person_registration_name_search ON person_registration",
    "DROP FUNCTION person_registration_name_search()",
]


def upgrade():
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        # PostgreSQL's contrib (Debian: postgresql-contrib), a trusted extension: the
        # database's owner may create it. GIN operator classes for plain integer columns.
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
    tokens = postgresql.ARRAY(sa.Text()) if postgres else sa.JSON()
    with op.batch_alter_table('person_registration', schema=None) as batch_op:
        batch_op.add_column(sa.Column('name_search', tokens, nullable=True))
    if postgres:
        # Filled before the index and the triggers exist: one pass over the rows.
        op.execute(BACKFILL)
        for statement in TRIGGERS:
            op.execute(statement)
    with op.batch_alter_table('person_registration', schema=None) as batch_op:
        batch_op.create_index('ix_person_registration_name_search',
                              ['delegation_id', 'name_search'], unique=False,
                              postgresql_using='gin')
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.drop_index('ix_person_name_search')


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for statement in DROP_TRIGGERS:
            op.execute(statement)
    with op.batch_alter_table('person', schema=None) as batch_op:
        batch_op.create_index('ix_person_name_search', ['name_search'], unique=False,
                              postgresql_using='gin')
    with op.batch_alter_table('person_registration', schema=None) as batch_op:
        batch_op.drop_index('ix_person_registration_name_search')
        batch_op.drop_column('name_search')
